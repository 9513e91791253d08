"""Library errors as a dbt user should read them: dbt's words instead of CLI flags, the provider named.

The library's messages say how to fix a cause from the CLI (`--base-url`, `--max-cost-usd`, "re-run
the same command"). Inside dbt those flags do not exist: the same knob is a plugin setting, a model
config or a `--vars` entry. The UDF returns the rewritten message, and the materialization raises it
as a dbt error, so it is not buried under DuckDB's "Python exception occurred while executing the UDF".
"""

from __future__ import annotations

import os

from warehouse_batch.errors import ConfigError, JobError, ProviderError, WarehouseBatchError
from warehouse_batch.providers.openai import redact_url

#: (CLI wording, dbt wording), applied in order: longer phrases first.
_REWRITES = (
    ("with --base-url http", "with OPENAI_BASE_URL=http"),
    ("--base-url / $OPENAI_BASE_URL", "the plugin setting base_url / $OPENAI_BASE_URL"),
    ("--base-url", "the plugin setting base_url"),
    ("Raise --max-cost-usd", "Raise the model's max_cost_usd"),
    ("Raise --max-requests", "Raise the model's max_requests"),
    ("--daily-budget-usd", "the plugin setting daily_budget_usd"),
    ("--prices FILE", "the plugin setting prices"),
    ("--no-cache", "--vars '{llm_batch_no_cache: true}'"),
    ("re-run the same command to resume", "run dbt again to resume"),
    ("`run --sample N`", "`warehouse-batch run --sample N`"),
)


def for_dbt(exc: Exception, base_url: str | None, *, plugin: bool = True) -> dict[str, str]:
    """{"error": message, "kind": config | provider | error} for the materialization to raise.

    plugin=False: `warehouse-batch dbt build` (dbt-postgres), whose settings are its own CLI flags,
    so only the model-config and dbt wordings apply."""
    message = str(exc)
    if not isinstance(exc, WarehouseBatchError):  # a bug or a DuckDB error: keep what it was
        message = f"{type(exc).__name__}: {message}"
    for cli, dbt in _REWRITES:
        if plugin or "plugin setting" not in dbt:
            message = message.replace(cli, dbt)
    if isinstance(exc, (ConfigError, ProviderError)):
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        message += f" [provider: {redact_url(url) if url else 'the SDK default (OpenAI); no base URL set'}]"
    kind = "config" if isinstance(exc, (JobError, ConfigError)) else "provider" if isinstance(exc, ProviderError) \
        else "error"
    return {"error": message, "kind": kind}
