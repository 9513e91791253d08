"""Read the SQL files that live in the repository's `sql/` folder (shipped as `warehouse_batch.sql`)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def read_sql(name: str) -> str:
    """The text of `sql/<name>`, e.g. `read_sql("duckdb/publish.sql")`."""
    return resources.files("warehouse_batch.sql").joinpath(name).read_text(encoding="utf-8")


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every numbered migration, in order."""
    folder = resources.files("warehouse_batch.sql").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql") and entry.name[:4].isdigit():
            found.append((int(entry.name[:4]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(versions) != len(set(versions)):
        raise RuntimeError(f"two migrations share a number in sql/migrations: {[n for _, n, _ in found]}")
    return found


def postgres_migration(name: str) -> str | None:
    """The PostgreSQL text of migration `name` where its DuckDB SQL does not run there as
    transpiled (`sql/migrations/postgres/<name>`), else None."""
    entry = resources.files("warehouse_batch.sql").joinpath("migrations", "postgres", name)
    return entry.read_text(encoding="utf-8") if entry.is_file() else None
