"""The model config keys dbt itself defines, so an llm_batch model's other keys can be checked."""

from __future__ import annotations

import dataclasses
from typing import Any


def dbt_config_keys(adapter_config: Any) -> frozenset[str]:
    """dbt-core's model config keys and those of the adapter's config class (with their dashed
    aliases): everything else in an llm_batch model's config must be one of its own options."""
    from dbt.artifacts.resources import ModelConfig

    keys: set[str] = set()
    for kind in (ModelConfig, adapter_config):
        for f in dataclasses.fields(kind):
            keys.add(f.name)
            keys.add(f.metadata.get("alias") or f.name)
    return frozenset(keys - {"_extra"})
