"""A small streaming multipart/form-data parser.

Starlette's `request.form()` needs the optional `python-multipart` package, which is not a
dependency of this project. The upload form is simple (a few text fields and one file), so a
boundary search over the arriving chunks is enough: the file part goes to a sink as it arrives
(`files.Spool`: memory, then disk), text fields are kept (they are small), and a 200 MB upload
is never held in memory.
"""
from __future__ import annotations

from email.message import Message
from typing import Protocol

FIELD_LIMIT = 64 * 1024  # bytes of one text field


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...


class MultipartError(ValueError):
    pass


def boundary_of(content_type: str) -> bytes:
    msg = Message()
    msg["content-type"] = content_type
    if msg.get_content_type() != "multipart/form-data":
        raise MultipartError("Expected multipart/form-data")
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise MultipartError("Missing multipart boundary")
    return boundary.encode("latin-1")


class FormParser:
    """Feed the body in chunks (`feed`), then `finish()`. The part named `file` is written to the
    sink that `file_sink()` returns; its filename is `filename` (None if none was given)."""

    def __init__(self, content_type: str, file_sink: "SinkFactory") -> None:
        # Every delimiter but the first is preceded by CRLF: start the buffer with one so the
        # first is found the same way.
        self._delim = b"\r\n--" + boundary_of(content_type)
        self._buf = bytearray(b"\r\n")
        self._state = "preamble"  # preamble → after → headers → data → after … → done
        self._file_sink = file_sink
        self._sink: Sink | None = None  # the file part's
        self._field: bytearray | None = None  # a text field's bytes
        self._name = ""
        self.fields: dict[str, str] = {}
        self.has_file = False
        self.filename: str | None = None

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        while self._step():
            pass

    def _step(self) -> bool:
        """Consume what the buffer allows; True if another step may make progress."""
        buf, delim = self._buf, self._delim
        if self._state == "preamble":
            at = buf.find(delim)
            if at < 0:
                del buf[: max(0, len(buf) - len(delim) + 1)]
                return False
            del buf[: at + len(delim)]
            self._state = "after"
            return True
        if self._state == "after":
            if len(buf) < 2:
                return False
            if buf.startswith(b"--"):
                self._state = "done"
                buf.clear()
                return False
            if buf.startswith(b"\r\n"):
                del buf[:2]
            self._state = "headers"
            return True
        if self._state == "headers":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > FIELD_LIMIT:
                    raise MultipartError("Malformed multipart part headers")
                return False
            self._start_part(bytes(buf[:end]))
            del buf[: end + 4]
            self._state = "data"
            return True
        if self._state == "data":
            at = buf.find(delim)
            if at < 0:
                keep = len(delim) - 1  # a delimiter may straddle this chunk and the next
                if len(buf) > keep:
                    self._write(bytes(buf[: len(buf) - keep]))
                    del buf[: len(buf) - keep]
                return False
            self._write(bytes(buf[:at]))
            del buf[: at + len(delim)]
            self._end_part()
            self._state = "after"
            return True
        buf.clear()  # done: ignore the epilogue
        return False

    def _start_part(self, raw: bytes) -> None:
        headers: dict[str, str] = {}
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        disposition = Message()
        disposition["content-disposition"] = headers.get("content-disposition", "")
        name = disposition.get_param("name", header="content-disposition")
        filename = disposition.get_param("filename", header="content-disposition")
        self._name = name if isinstance(name, str) else ""
        if self._name == "file" and not self.has_file:
            self.has_file = True
            self.filename = filename if isinstance(filename, str) else None
            self._sink = self._file_sink()
        elif filename is None and self._name:
            self._field = bytearray()
        # other file parts are read and dropped

    def _write(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink.write(data)
        elif self._field is not None:
            if len(self._field) + len(data) > FIELD_LIMIT:
                raise MultipartError(f"Form field {self._name!r} is too long")
            self._field += data

    def _end_part(self) -> None:
        if self._field is not None:
            self.fields[self._name] = self._field.decode("utf-8", "replace")
        self._sink = self._field = None

    def finish(self) -> None:
        if self._state == "preamble":
            raise MultipartError("Multipart boundary not found in body")
        if self._state == "headers":
            raise MultipartError("Malformed multipart part headers")
        if self._state == "data":
            raise MultipartError("Unterminated multipart part")
        # "after" without the closing "--" is accepted, as the buffered parser did.


class SinkFactory(Protocol):
    def __call__(self) -> Sink: ...
