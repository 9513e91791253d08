"""Batch providers: the `BatchProvider` interface and the one factory every entry point uses.

The CLI, the Python API, the dbt plugin and the demo all get their provider from `make_provider`,
lazily (only when a call to the provider is about to happen), so `plan` and `status` never need a key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from warehouse_batch.errors import ConfigError
from warehouse_batch.providers.base import TERMINAL_STATUSES, BatchInfo, BatchProvider
from warehouse_batch.providers.openai import OpenAIBatchProvider

PROVIDERS: dict[str, Callable[..., BatchProvider]] = {"openai": OpenAIBatchProvider}


@dataclass(frozen=True)
class ProviderSettings:
    """How to reach the provider. The API key is never a setting: it comes from the environment."""

    name: str = "openai"
    base_url: str | None = None  # default $OPENAI_BASE_URL, else the provider's own
    http_timeout: float | None = None  # seconds per API call (default 120)
    api_key: str | None = None  # tests and the demo only; users set $OPENAI_API_KEY

    def make(self) -> BatchProvider:
        return make_provider(self)


def make_provider(settings: ProviderSettings) -> BatchProvider:
    """The provider the settings name, ready for calls (ConfigError when the key or URL is missing/wrong)."""
    try:
        factory = PROVIDERS[settings.name]
    except KeyError:
        raise ConfigError(f"unknown provider {settings.name!r}; known: {', '.join(PROVIDERS)}") from None
    extra = {"timeout": settings.http_timeout} if settings.http_timeout else {}
    return factory(base_url=settings.base_url, api_key=settings.api_key, **extra)


__all__ = ["PROVIDERS", "TERMINAL_STATUSES", "BatchInfo", "BatchProvider", "OpenAIBatchProvider", "ProviderSettings",
           "make_provider"]
