"""Configuration of the emulator (all times are *emulated* seconds).

Defaults are production's rules (authentication, OpenAI's batch models only, 30-day output
retention, embedding-input limits); faults that production shows only sometimes
(quota refusals, spurious "Cannot find file") are off until a rate or limit is set.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .flavors import FLAVORS
from .models import OPENAI_PRESET, expand

TOKEN_LIMIT_STYLES = ("async", "fail-fast")
FILE_NOT_FOUND_STYLES = ("async", "sync")
OUTPUT_RETENTION = 30 * 86400  # production deletes result files 30 days after the batch ends


@dataclass
class EmulatorConfig:
    validation_delay: float = 0.0  # emulated seconds between create and in_progress/failed
    request_time: float = 0.0  # emulated seconds per request; requests run one after another
    finalize_delay: float = 0.0  # emulated seconds spent in finalizing
    cancel_delay: float = 0.0  # emulated seconds spent in cancelling
    time_scale: float = 1.0  # emulated seconds per real second
    completion_window_seconds: int = 86400  # expires_at = created_at + this (Azure: never expires)
    shuffle_output: bool = False  # deterministic shuffle of output/error line order
    max_requests_per_file: int | None = None  # None = the flavor's (OpenAI 50,000, Azure 100,000)
    max_file_bytes: int = 200 * 1024 * 1024
    enqueued_token_limit: int | None = None  # per model; tokens = ceil(len(json body)/4)
    # async: create succeeds, the batch fails with token_limit_exceeded (OpenAI, most Azure regions);
    # fail-fast: create answers HTTP 400 token_limit_exceeded (Azure's fail-fast regions).
    token_limit_style: str = "async"
    # OpenAI's batch models (models.OPENAI_MODELS, with their dated snapshots and fine-tunes), as
    # production refuses others; ("*",) or None = any model (e.g. Azure deployments with own names).
    supported_models: tuple[str, ...] | None = (OPENAI_PRESET,)
    # Fraction of batch creations (by hash of seed, file, attempt) told the existing input file
    # cannot be found, as production does right after uploads; the next attempt always passes.
    file_not_found_rate: float = 0.0
    file_not_found_style: str = "async"  # async: batch goes failed; sync: create answers HTTP 400
    output_retention: int = OUTPUT_RETENTION  # result files expire this long after creation
    max_embedding_inputs_per_batch: int = 50_000  # across all requests of a /v1/embeddings batch
    max_embedding_inputs_per_request: int = 2048  # one embeddings request over this fails its line
    require_auth: bool = True  # /v1/* needs `Authorization: Bearer <key>` (Azure: or `api-key`)
    api_key: str | None = None  # when set, only this exact key is accepted
    flavor: str = "openai"  # "azure" also serves /openai/v1/... and /openai/...?api-version=
    state_dir: str | None = None  # persist files and batches here; reloaded on start
    # POST a signed event here when a batch ends (webhooks.py); the secret is `whsec_<base64 key>`.
    webhook_url: str | None = None
    webhook_secret: str | None = None
    seed: int = 0
    # Fractions of requests (chosen by hash of custom_id + seed) that misbehave.
    error_rate: float = 0.0
    refusal_rate: float = 0.0
    truncate_rate: float = 0.0
    invalid_json_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.supported_models is not None:
            self.supported_models = expand(tuple(self.supported_models))
        for name, allowed in (("flavor", FLAVORS), ("token_limit_style", TOKEN_LIMIT_STYLES),
                              ("file_not_found_style", FILE_NOT_FOUND_STYLES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if not 0.0 <= self.file_not_found_rate <= 1.0:
            raise ValueError("file_not_found_rate must be between 0 and 1")

    def updated(self, **fields: Any) -> "EmulatorConfig":
        """A copy with `fields` replaced; unknown names raise so typos are not silent."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(fields) - names
        if unknown:
            raise ValueError(f"unknown EmulatorConfig fields: {sorted(unknown)}")
        return dataclasses.replace(self, **fields)  # runs __post_init__: bad values raise

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["supported_models"] is not None:
            d["supported_models"] = list(d["supported_models"])
        return d
