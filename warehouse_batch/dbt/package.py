"""Where the dbt package (`dbt_warehouse_batch/`, the llm_batch materialization and its macros) is.

It ships inside the Python package as `warehouse_batch.dbt_package`, so any project can reference
the copy matching the installed library: `packages.yml` → `- local: <this path>`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from warehouse_batch.errors import ConfigError


def package_path() -> Path:
    """The installed dbt package's folder (the one holding its dbt_project.yml)."""
    path = Path(str(resources.files("warehouse_batch.dbt_package")))
    if not (path / "dbt_project.yml").is_file():
        raise ConfigError(f"the dbt package is not installed at {path} (no dbt_project.yml); reinstall warehouse-batch")
    return path


def packages_yml() -> str:
    """A packages.yml that installs it."""
    return f"packages:\n  - local: {package_path()}\n"
