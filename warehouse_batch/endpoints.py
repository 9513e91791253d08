"""The Batch API endpoints, one declarative record each: everything that differs between them.

A record says which query columns hold the input, how the request body is shaped, which request
parameters exist (with their checks), where a structured-output schema goes in the body, what the
answer adds to the output table, what a request costs when it sets no output ceiling, and the
batch limits the endpoint has. Adding an endpoint touches this file only (plus, for a new request
shape or answer kind, the one function that builds it: `bodies.build` / `answers.answer_sql`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from warehouse_batch.errors import JobError
from warehouse_batch.params import Param

_TEMPERATURE = Param("number", 0, 2)
_TOP_P = Param("number", 0, 1)
_PENALTY = Param("number", -2, 2)
_POSITIVE = Param("integer", 1)
_EFFORT = Param("enum", values=("none", "minimal", "low", "medium", "high", "xhigh"))
#: Chat message roles (ChatCompletionRequestMessage; `function` is deprecated but valid).
_CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
#: Roles of a message item of /v1/responses input (EasyInputMessage).
_RESPONSES_ROLES = ("system", "developer", "user", "assistant")
_COMMON = {
    "user": Param("string"), "metadata": Param("object"), "store": Param("boolean"), "service_tier": Param("string"),
    "prompt_cache_key": Param("string"), "safety_identifier": Param("string"),
}
#: Request parameters that cap output tokens, whichever endpoint names which.
MAX_OUTPUT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@dataclass(frozen=True)
class Endpoint:
    """One Batch API endpoint."""

    path: str
    #: Query columns that may hold the input; `body` (a whole request body) is always accepted too.
    inputs: tuple[str, ...]
    #: How the body is built: chat (messages), responses (instructions + input), completions (prompt),
    #: input (embeddings, moderations: a text or a list of texts).
    shape: str
    #: Request parameters besides the keys warehouse_batch builds itself.
    params: Mapping[str, Param]
    #: What the answer adds to the output table: text (content, or a schema's typed columns),
    #: embedding (a FLOAT[] vector) or moderation (flagged + one BOOLEAN per category).
    answer: str
    #: Body key of a structured-output response format; None: output_schema is refused.
    schema_key: str | None = None
    #: The endpoint takes a system prompt (job option `system` / a `system` column).
    takes_system: bool = False
    default_model: str | None = None
    #: Output tokens a request that sets no ceiling is estimated at (0: output is not billed).
    default_output_tokens: int = 256
    #: Body keys that differ from the parameter name (reasoning_effort nests on /v1/responses).
    nested_params: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    #: A wrong parameter name that has a right one here.
    renames: Mapping[str, str] = field(default_factory=dict)
    #: `input` may also be token ids (INTEGER[] / INTEGER[][]), not only text.
    token_inputs: bool = False
    #: `input` may be a list of multimodal items (moderations: text and image parts).
    item_inputs: bool = False
    #: Roles a message may have; () when the endpoint takes no messages.
    message_roles: tuple[str, ...] = ()
    #: Messages may be mixed with other input items named by `type` (responses: function_call_output…).
    typed_items: bool = False
    #: Inputs (list items) one request / one batch may hold; None: no limit beyond the file's.
    max_inputs_per_request: int | None = None
    max_inputs_per_batch: int | None = None

    def body_key(self, param: str) -> str:
        return self.nested_params.get(param, (param, ""))[0]


REGISTRY: dict[str, Endpoint] = {
    e.path: e
    for e in (
        Endpoint(
            "/v1/chat/completions", inputs=("prompt", "messages"), shape="chat", answer="text",
            schema_key="response_format", takes_system=True, message_roles=_CHAT_ROLES,
            params={
                **_COMMON,
                "temperature": _TEMPERATURE, "top_p": _TOP_P, "max_tokens": _POSITIVE,
                "max_completion_tokens": _POSITIVE, "seed": Param("integer"), "reasoning_effort": _EFFORT,
                "frequency_penalty": _PENALTY, "presence_penalty": _PENALTY, "n": Param("integer", 1, 1),
                "stop": Param("stop"), "logprobs": Param("boolean"), "top_logprobs": Param("integer", 0, 20),
                "logit_bias": Param("object"), "response_format": Param("object"), "tools": Param("array"),
                "tool_choice": Param("any"), "parallel_tool_calls": Param("boolean"),
                "verbosity": Param("enum", values=("low", "medium", "high")), "prediction": Param("object"),
                "modalities": Param("array"), "audio": Param("object"), "web_search_options": Param("object"),
            },
            renames={"max_output_tokens": "max_completion_tokens"},
        ),
        Endpoint(
            "/v1/responses", inputs=("prompt", "messages"), shape="responses", answer="text", schema_key="text",
            takes_system=True, message_roles=_RESPONSES_ROLES, typed_items=True,
            params={
                **_COMMON,
                "temperature": _TEMPERATURE, "top_p": _TOP_P, "max_output_tokens": _POSITIVE,
                "reasoning": Param("object"), "reasoning_effort": _EFFORT, "text": Param("object"),
                "tools": Param("array"), "tool_choice": Param("any"), "parallel_tool_calls": Param("boolean"),
                "truncation": Param("enum", values=("auto", "disabled")), "include": Param("array"),
                "top_logprobs": Param("integer", 0, 20), "max_tool_calls": _POSITIVE,
            },
            nested_params={"reasoning_effort": ("reasoning", "effort")},
            renames={"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens",
                     "response_format": "output_schema (or params.text)"},
        ),
        Endpoint(
            "/v1/completions", inputs=("prompt",), shape="completions", answer="text",
            params={
                "temperature": _TEMPERATURE, "top_p": _TOP_P, "max_tokens": _POSITIVE, "seed": Param("integer"),
                "n": Param("integer", 1, 1), "best_of": Param("integer", 1, 1), "stop": Param("stop"),
                "echo": Param("boolean"), "logprobs": Param("integer", 0, 5), "suffix": Param("string"),
                "frequency_penalty": _PENALTY, "presence_penalty": _PENALTY, "logit_bias": Param("object"),
                "user": Param("string"),
            },
        ),
        Endpoint(
            "/v1/embeddings", inputs=("input", "prompt"), shape="input", answer="embedding", default_output_tokens=0,
            token_inputs=True,
            params={
                "dimensions": _POSITIVE, "user": Param("string"),
                # Vectors are loaded as FLOAT[] in SQL; base64 text would have to be decoded row by row.
                "encoding_format": Param("enum", values=("float",)),
            },
            max_inputs_per_request=2048, max_inputs_per_batch=50_000,
        ),
        Endpoint(
            "/v1/moderations", inputs=("input", "prompt"), shape="input", answer="moderation",
            default_model="omni-moderation-latest", default_output_tokens=0, params={}, item_inputs=True,
        ),
    )
}
PATHS = tuple(REGISTRY)
DEFAULT = "/v1/chat/completions"
#: Endpoints whose answers can follow an output schema.
STRUCTURED = tuple(p for p, e in REGISTRY.items() if e.schema_key)


def get(path: str) -> Endpoint:
    """The record of an endpoint path; JobError naming the supported ones otherwise."""
    try:
        return REGISTRY[path]
    except KeyError:
        raise JobError(f"option 'endpoint' {path!r} is not supported. Use one of: {', '.join(PATHS)}") from None


__all__ = ["DEFAULT", "Endpoint", "MAX_OUTPUT_KEYS", "PATHS", "REGISTRY", "STRUCTURED", "get"]
