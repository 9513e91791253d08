"""What differs between OpenAI and Azure OpenAI's Batch API, as data (production-contract.md).

Routing of Azure's paths lives in azure.py; this module only holds the rules the engine,
validation and the create/upload handlers consult, so each of them stays flavor-agnostic.
"""
from __future__ import annotations

from dataclasses import dataclass

FLAVORS = ("openai", "azure")


@dataclass(frozen=True)
class Flavor:
    name: str
    batch_endpoints: tuple[str, ...]
    max_requests_per_file: int
    min_expires_after: int  # seconds, expires_after / output_expires_after lower bound
    batches_expire: bool  # Azure runs a job until done or cancelled, whatever the window
    always_error_file: bool  # Azure writes a (0-byte) error file for every finished batch
    # Input batch files a resource may hold: without expires_after / with it (None = no cap).
    file_cap: int | None
    file_cap_with_expiry: int | None


MAX_EXPIRES_AFTER = 2_592_000  # 30 days, both flavors

OPENAI = Flavor(
    name="openai",
    batch_endpoints=("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations"),
    max_requests_per_file=50_000,
    min_expires_after=3600,
    batches_expire=True,
    always_error_file=False,
    file_cap=None,
    file_cap_with_expiry=None,
)

# Azure global batch: chat completions and responses only (embeddings are refused, the FAQ says);
# 100,000 requests per file; expiry 14–30 days; 500 input files per resource, 10,000 with expiry.
AZURE = Flavor(
    name="azure",
    batch_endpoints=("/v1/chat/completions", "/v1/responses"),
    max_requests_per_file=100_000,
    min_expires_after=1_209_600,
    batches_expire=False,
    always_error_file=True,
    file_cap=500,
    file_cap_with_expiry=10_000,
)


def flavor(name: str) -> Flavor:
    return AZURE if name == "azure" else OPENAI


def canonical_endpoint(endpoint: str, name: str) -> str:
    """Azure accepts `/chat/completions` (no `/v1`) on create and on lines; the rest of the
    emulator speaks `/v1/...`."""
    if name == "azure" and endpoint.startswith("/") and not endpoint.startswith("/v1/"):
        return "/v1" + endpoint
    return endpoint
