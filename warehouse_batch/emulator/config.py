"""Configuration of the emulator (all times are *emulated* seconds)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class EmulatorConfig:
    validation_delay: float = 0.0  # emulated seconds between create and in_progress/failed
    request_time: float = 0.0  # emulated seconds per request; requests run one after another
    finalize_delay: float = 0.0  # emulated seconds spent in finalizing
    cancel_delay: float = 0.0  # emulated seconds spent in cancelling
    time_scale: float = 1.0  # emulated seconds per real second
    completion_window_seconds: int = 86400  # expires_at = created_at + this
    shuffle_output: bool = False  # deterministic shuffle of output/error line order
    max_requests_per_file: int = 50000
    max_file_bytes: int = 200 * 1024 * 1024
    enqueued_token_limit: int | None = None  # per model; tokens = ceil(len(json body)/4)
    supported_models: tuple[str, ...] | None = None  # None = any model accepted
    state_dir: str | None = None  # persist files and batches here; reloaded on start
    seed: int = 0
    # Fractions of requests (chosen by hash of custom_id + seed) that misbehave.
    error_rate: float = 0.0
    refusal_rate: float = 0.0
    truncate_rate: float = 0.0
    invalid_json_rate: float = 0.0

    def updated(self, **fields: Any) -> "EmulatorConfig":
        """A copy with `fields` replaced; unknown names raise so typos are not silent."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(fields) - names
        if unknown:
            raise ValueError(f"unknown EmulatorConfig fields: {sorted(unknown)}")
        if fields.get("supported_models") is not None:
            fields["supported_models"] = tuple(fields["supported_models"])
        return dataclasses.replace(self, **fields)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["supported_models"] is not None:
            d["supported_models"] = list(d["supported_models"])
        return d
