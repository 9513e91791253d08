"""Azure OpenAI global batch, through the official `openai` SDK's own Azure configuration.

Two APIs, chosen by whether an API version is configured:

* the v1 API (no `OPENAI_API_VERSION`): `OpenAI(base_url="https://<resource>.openai.azure.com/openai/v1/")`,
  Microsoft's own sample;
* the `api-version` API (`OPENAI_API_VERSION=2024-10-21`, or a preview): `AzureOpenAI(azure_endpoint=…)`.

The resource comes from `AZURE_OPENAI_ENDPOINT` (or `--base-url`), the key from
`AZURE_OPENAI_API_KEY`; without a key, Entra ID through `azure-identity` (the `azure` extra):
`DefaultAzureCredential` and a bearer-token provider the SDK calls before each request, so tokens
are refreshed as they expire. A job's `model` is the *deployment name*; `price_model` names the
model behind it for cost estimates. Azure batch serves chat completions and responses only, allows
100,000 requests per file, file expiry of 14–30 days, and asks for 60 s between status checks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import openai

from warehouse_batch.errors import ConfigError
from warehouse_batch.providers.base import ProviderRules
from warehouse_batch.providers.openai import OpenAIBatchProvider, check_url

#: The scope Entra ID tokens for Azure OpenAI are issued for.
COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"


def entra_token_provider(credential: Any = None) -> Callable[[], str]:
    """A callable returning a fresh Entra ID bearer token (azure-identity caches and refreshes it)."""
    try:
        from azure.identity import DefaultAzureCredential, get_bearer_token_provider
    except ImportError:
        raise ConfigError(
            "no Azure OpenAI key: set AZURE_OPENAI_API_KEY, or install the `azure` extra "
            "(pip install 'warehouse-batch[azure]') to sign in with Entra ID (az login, a managed identity…)"
        ) from None
    return get_bearer_token_provider(credential or DefaultAzureCredential(), COGNITIVE_SCOPE)


class AzureBatchProvider(OpenAIBatchProvider):
    """Azure OpenAI Files + Batch (global or data-zone batch deployments)."""

    name = "azure"
    rules = ProviderRules(
        endpoints=("/v1/chat/completions", "/v1/responses"),
        endpoints_note="Azure OpenAI batch serves chat completions and responses only (embeddings are not supported)",
        max_requests_per_file=100_000,
        min_file_expiry=14 * 86400,
        min_poll_interval=60.0,
    )
    key_hint = "check AZURE_OPENAI_API_KEY (or the Entra ID identity's role on the resource)"

    def _make_client(self, *, base_url: str | None, api_key: str | None, timeout: float, max_retries: int,
                     api_version: str | None = None, credential: Any = None,
                     token_provider: Callable[[], str] | None = None, **options: Any) -> openai.OpenAI:
        if options:
            raise ConfigError(f"the azure provider takes no option(s) {', '.join(sorted(options))}")
        env_endpoint = os.environ.get("AZURE_OPENAI_ENDPOINT")
        if base_url and env_endpoint and base_url == os.environ.get("OPENAI_BASE_URL"):
            base_url = None  # OpenAI's variable (the CLI's --base-url default) does not point at Azure
        endpoint = base_url or env_endpoint
        if not endpoint:
            raise ConfigError(
                "no Azure OpenAI endpoint: set AZURE_OPENAI_ENDPOINT=https://<resource>.openai.azure.com "
                "(or pass --base-url)"
            )
        check_url(endpoint)
        api_key = api_key or os.environ.get("AZURE_OPENAI_API_KEY")
        if not api_key and token_provider is None:
            token_provider = entra_token_provider(credential)
        api_version = api_version or os.environ.get("OPENAI_API_VERSION")
        if api_version:
            return openai.AzureOpenAI(
                azure_endpoint=_resource(endpoint), api_version=api_version, api_key=api_key or None,
                azure_ad_token_provider=None if api_key else token_provider, timeout=timeout, max_retries=max_retries,
            )
        return openai.OpenAI(base_url=_v1_base(endpoint), api_key=api_key or token_provider,
                             timeout=timeout, max_retries=max_retries)

    def batch_endpoint(self, endpoint: str) -> str:
        # Azure's samples create batches for "/chat/completions"; request lines may keep "/v1".
        return endpoint.removeprefix("/v1")


def _resource(endpoint: str) -> str:
    """The resource URL (`https://<resource>.openai.azure.com`) from whatever form was given."""
    for suffix in ("/openai/v1/", "/openai/v1", "/openai/", "/openai"):
        if endpoint.endswith(suffix):
            return endpoint[: -len(suffix)]
    return endpoint.rstrip("/")


def _v1_base(endpoint: str) -> str:
    return _resource(endpoint) + "/openai/v1/"


__all__ = ["AzureBatchProvider", "COGNITIVE_SCOPE", "entra_token_provider"]
