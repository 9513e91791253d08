"""Run a validated batch through the responder once, up front, into result files on disk.

The responder is pure, so every answer can be computed up front, by the engine's background
worker right after the batch is created, in one pass over the input (each line parsed once, and
answered while it is read). The engine's clock then only decides how many of these precomputed
results are visible. Nothing per request stays in memory: the result lines go to a file in
processing order, and an index file holds, for every k, the byte offset of line k and the
failed / input-token / output-token counts of the first k requests. Polls read one index record
(O(1)); the output and error files are written once, by streaming, when the batch ends.
"""
from __future__ import annotations

import json
import os
import random
import secrets
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from . import ids
from .config import EmulatorConfig
from .errors import APIError
from .files import CHUNK
from .responder import respond, usage_of
from .validation import EMBEDDINGS, Input, batch_error, check_embedding_request, validate

UNRUN_MESSAGES = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}
# One index record per k = 0..n: offset of result line k, then failed, input and output tokens
# of the first k requests (prefix sums), as int64.
_FIELDS = 4
_RECORD = 8 * _FIELDS


@dataclass
class Prepared:
    errors: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    tokens: int = 0
    received_lines: int = 0  # non-blank input lines, for counters
    received_ids: list[str] = field(default_factory=list)  # custom ids seen, for counters
    n: int = 0  # requests
    results: Path | None = None  # result lines in processing order (None: nothing ran, e.g. invalid)
    index: Path | None = None  # n + 1 records of _FIELDS int64

    def _record(self, k: int) -> tuple[int, ...]:
        if self.index is None:
            return (0,) * _FIELDS
        fd = os.open(self.index, os.O_RDONLY)
        try:
            rec = array("q", os.pread(fd, _RECORD, k * _RECORD))
        finally:
            os.close(fd)
        return tuple(rec)

    def counts(self, k: int) -> dict[str, int]:
        failed = self._record(k)[1]
        return {"total": self.n, "completed": k - failed, "failed": failed}

    def usage(self, k: int) -> dict[str, Any]:
        _, _, inp, out = self._record(k)
        return {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": inp + out,
        }

    def result_files(self, k: int, unrun_code: str, work_dir: Path) -> tuple[Path | None, Path | None]:
        """(output file, error file) when the first k requests ran; the rest get `unrun_code` lines.
        None for a file without lines. The files are new, under `work_dir`: the caller owns them."""
        if self.results is None or self.index is None:
            return None, None
        index = array("q")
        with open(self.index, "rb") as handle:
            index.frombytes(handle.read())  # per batch: n ≤ the per-file request limit
        failed = index[1::_FIELDS]
        if k == self.n and failed[k] == 0:
            # Everything ran and succeeded: the results file is the output file as it is.
            out = work_dir / f"{self.results.name}.out"
            os.replace(self.results, out)
            self.results = None
            return out, None
        out_path, err_path = work_dir / f"{self.results.name}.out", work_dir / f"{self.results.name}.err"
        message = UNRUN_MESSAGES.get(unrun_code, unrun_code)
        wrote_out = wrote_err = False
        with open(self.results, "rb") as lines, open(out_path, "wb") as out, open(err_path, "wb") as err:
            for i, line in enumerate(lines):
                if i < k:
                    ok = failed[i + 1] == failed[i]
                    (out if ok else err).write(line)
                    wrote_out, wrote_err = wrote_out or ok, wrote_err or not ok
                else:
                    custom_id = json.loads(line)["custom_id"]
                    err.write(_dumps({"id": ids.batch_request_id(), "custom_id": custom_id, "response": None,
                                      "error": {"code": unrun_code, "message": message}}) + b"\n")
                    wrote_err = True
        if not wrote_out:
            out_path.unlink()
        if not wrote_err:
            err_path.unlink()
        return (out_path if wrote_out else None), (err_path if wrote_err else None)

    def discard(self) -> None:
        """Delete the precomputed results (the batch ended, or the emulator was reset)."""
        for path in (self.results, self.index):
            if path is not None:
                path.unlink(missing_ok=True)
        self.results = self.index = None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def cannot_find(file_id: str) -> str:
    return f"Cannot find file {file_id}, or organization org-emulator does not have access to it."


def missing_file(file_id: str) -> Prepared:
    return Prepared(errors=[batch_error("invalid_request", cannot_find(file_id), None, "file_id")])


def _answer(endpoint: str, body: dict[str, Any], custom_id: str, config: EmulatorConfig) -> tuple[int, dict[str, Any]]:
    """The responder's answer, unless the request breaks a per-request limit (it then ran and failed)."""
    if endpoint == EMBEDDINGS:
        try:
            check_embedding_request(body, config)
        except APIError as exc:
            return exc.status, exc.body()
    return respond(endpoint, body, custom_id, config)


class _Answers:
    """Answers requests as validation reads them: result lines to a file in input order, and per
    request its line length, success and token counts (small arrays: one batch at a time)."""

    def __init__(self, path: Path, endpoint: str, config: EmulatorConfig) -> None:
        self.path = path
        self.endpoint = endpoint
        self.config = config
        self.handle: BinaryIO = open(path, "wb")
        self.sizes = array("q")
        self.failed = bytearray()
        self.input_tokens = array("q")
        self.output_tokens = array("q")

    def __call__(self, custom_id: str, body: dict[str, Any]) -> None:
        status, resp = _answer(self.endpoint, body, custom_id, self.config)
        is_ok = 200 <= status < 300
        inp, outp = usage_of(self.endpoint, resp) if is_ok else (0, 0)
        line = _dumps({
            "id": ids.batch_request_id(),
            "custom_id": custom_id,
            "response": {"status_code": status, "request_id": secrets.token_hex(16), "body": resp},
            "error": None,
        }) + b"\n"
        self.handle.write(line)
        self.sizes.append(len(line))
        self.failed.append(0 if is_ok else 1)
        self.input_tokens.append(inp)
        self.output_tokens.append(outp)


def prepare(content: Input, endpoint: str, batch_id: str, config: EmulatorConfig, work_dir: Path) -> Prepared:
    """Validate the input and answer every request into files under `work_dir` (see the module doc)."""
    answers = _Answers(work_dir / f"{batch_id}.answers", endpoint, config)
    try:
        v = validate(content, endpoint, config, on_request=answers)
    except BaseException:
        answers.handle.close()
        answers.path.unlink(missing_ok=True)
        raise
    answers.handle.close()
    prep = Prepared(errors=v.errors, model=v.model, tokens=v.tokens, received_lines=v.n_lines, received_ids=v.seen_ids)
    if v.errors:
        answers.path.unlink(missing_ok=True)
        return prep
    n = len(answers.sizes)
    order = list(range(n))
    if config.shuffle_output:
        # Deterministic per batch, so clients that rely on input order are caught.
        random.Random(f"{config.seed}:{batch_id}").shuffle(order)
        prep.results = _reorder(answers, order, work_dir / f"{batch_id}.results")
    else:
        prep.results = answers.path
    index = array("q", [0] * (_FIELDS * (n + 1)))
    offset = failed = inp = outp = 0
    for k, i in enumerate(order):
        offset += answers.sizes[i]
        failed += answers.failed[i]
        inp += answers.input_tokens[i]
        outp += answers.output_tokens[i]
        index[_FIELDS * (k + 1):_FIELDS * (k + 2)] = array("q", (offset, failed, inp, outp))
    prep.index = work_dir / f"{batch_id}.index"
    with open(prep.index, "wb") as handle:
        index.tofile(handle)
    prep.n = n
    return prep


def _reorder(answers: _Answers, order: list[int], dest: Path) -> Path:
    """The answers file with its lines in `order` (reads each line at its offset)."""
    starts = array("q", [0])
    for size in answers.sizes:
        starts.append(starts[-1] + size)
    buffered: list[bytes] = []
    held = 0
    with open(answers.path, "rb") as src, open(dest, "wb") as out:
        fd = src.fileno()
        for i in order:
            line = os.pread(fd, answers.sizes[i], starts[i])
            buffered.append(line)
            held += len(line)
            if held >= CHUNK:
                out.write(b"".join(buffered))
                buffered, held = [], 0
        out.write(b"".join(buffered))
    answers.path.unlink()
    return dest
