"""Which models the emulated Batch API accepts: production refuses unknown ones per line."""
from __future__ import annotations

import re

# Models OpenAI serves through the Batch API (base names; dated snapshots and fine-tunes of them
# are accepted too). `supported_models=("@openai",)` / `--models @openai` selects this list.
OPENAI_MODELS: tuple[str, ...] = (
    "gpt-3.5-turbo", "gpt-4", "gpt-4-turbo", "gpt-4o", "gpt-4o-mini",
    "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5", "gpt-5-mini", "gpt-5-nano",
    "o1", "o1-mini", "o3", "o3-mini", "o4-mini",
    "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002",
    "omni-moderation", "omni-moderation-latest", "text-moderation-latest",
    "babbage-002", "davinci-002", "gpt-3.5-turbo-instruct",
)
ANY_MODEL = "*"  # --models '*' turns the allow-list off
OPENAI_PRESET = "@openai"

_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def expand(names: tuple[str, ...]) -> tuple[str, ...]:
    """The allow-list with the `@openai` preset replaced by OPENAI_MODELS."""
    out: list[str] = []
    for name in names:
        out.extend(OPENAI_MODELS if name == OPENAI_PRESET else (name,))
    return tuple(dict.fromkeys(out))


def is_supported(model: str, supported: tuple[str, ...] | None) -> bool:
    """`model` is listed, or the base of its dated snapshot (gpt-4o-mini-2024-07-18) or of its
    fine-tune (ft:gpt-4o-mini:org:suffix:id) is."""
    if supported is None or ANY_MODEL in supported:
        return True
    if model.startswith("ft:"):
        model = model.split(":")[1]
    return model in supported or _SNAPSHOT.sub("", model) in supported
