"""Batch providers: the `BatchProvider` interface and the one factory every entry point uses.

The CLI, the Python API, the dbt plugin and the demo all get their provider from `make_provider`,
lazily (only when a call to the provider is about to happen), so `plan` and `status` never need a key.
A job names its provider (`provider: azure`); what each provider accepts is data (`rules`) checked
by `check_job` when the job is defined, before anything is sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from warehouse_batch.errors import ConfigError, JobError
from warehouse_batch.providers.azure import AzureBatchProvider
from warehouse_batch.providers.base import TERMINAL_STATUSES, BatchInfo, BatchProvider, ProviderRules
from warehouse_batch.providers.openai import OpenAIBatchProvider

if TYPE_CHECKING:
    from warehouse_batch.jobs import Job

PROVIDERS: dict[str, Callable[..., BatchProvider]] = {"openai": OpenAIBatchProvider, "azure": AzureBatchProvider}


@dataclass(frozen=True)
class ProviderSettings:
    """How to reach the provider. The API key is never a setting: it comes from the environment."""

    name: str = "openai"
    base_url: str | None = None  # default $OPENAI_BASE_URL (Azure: $AZURE_OPENAI_ENDPOINT), else the provider's own
    http_timeout: float | None = None  # seconds per API call (default 120)
    api_key: str | None = None  # tests and the demo only; users set $OPENAI_API_KEY / $AZURE_OPENAI_API_KEY
    #: Seconds between status checks of a batch (None: the provider's own; Azure 60). Tests lower it.
    min_poll_interval: float | None = None
    #: Provider-specific keyword arguments (Azure: api_version, credential, token_provider).
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def make(self) -> BatchProvider:
        return make_provider(self)

    def named(self, name: str) -> ProviderSettings:
        """The same settings for another provider (a job's `provider` option)."""
        return self if name == self.name else dataclasses.replace(self, name=name)


def make_provider(settings: ProviderSettings) -> BatchProvider:
    """The provider the settings name, ready for calls (ConfigError when the key or URL is missing/wrong)."""
    factory = _factory(settings.name, ConfigError)
    extra: dict[str, Any] = dict(settings.options)
    if settings.http_timeout:
        extra["timeout"] = settings.http_timeout
    if settings.min_poll_interval is not None:
        extra["min_poll_interval"] = settings.min_poll_interval
    return factory(base_url=settings.base_url, api_key=settings.api_key, **extra)


def _factory(name: str, error: type[Exception]) -> Any:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise error(f"unknown provider {name!r}; known: {', '.join(PROVIDERS)}") from None


def rules_of(name: str) -> ProviderRules:
    return _factory(name, JobError).rules


def check_job(job: Job) -> None:
    """Refuse, when the job is defined, what its provider would refuse after upload."""
    rules = rules_of(job.provider)
    if rules.endpoints is not None and job.endpoint not in rules.endpoints:
        raise JobError(
            f"provider {job.provider!r} cannot run endpoint {job.endpoint}: {rules.endpoints_note or 'not supported'}. "
            f"Use one of {', '.join(rules.endpoints)}, or another provider"
        )
    if job.max_requests_per_shard is not None and job.max_requests_per_shard > rules.max_requests_per_file:
        raise JobError(f"max_requests_per_shard must be at most {rules.max_requests_per_file:,} for provider "
                       f"{job.provider!r}, got {job.max_requests_per_shard:,}")
    for key in ("input_expires_after", "output_expires_after"):
        if getattr(job, key) < rules.min_file_expiry:
            raise JobError(f"option '{key}' must be at least {rules.min_file_expiry:,} seconds "
                           f"({rules.min_file_expiry // 86400} days) for provider {job.provider!r}, "
                           f"got {getattr(job, key):,}")


def max_requests_per_file(job: Job) -> int:
    """Lines per shard: the job's own limit, else its provider's."""
    return job.max_requests_per_shard or rules_of(job.provider).max_requests_per_file


__all__ = ["PROVIDERS", "TERMINAL_STATUSES", "AzureBatchProvider", "BatchInfo", "BatchProvider", "OpenAIBatchProvider",
           "ProviderRules", "ProviderSettings", "check_job", "make_provider", "max_requests_per_file", "rules_of"]
