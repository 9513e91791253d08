"""A small multipart/form-data parser.

Starlette's `request.form()` needs the optional `python-multipart` package, which
is not a dependency of this project; the upload form is simple (a few text fields
and one file), so a boundary split over the buffered body is enough and keeps a
200 MB upload to a single copy of the file bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from email.message import Message


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


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


def parse(body: bytes, content_type: str) -> list[Part]:
    delimiter = b"--" + boundary_of(content_type)
    parts: list[Part] = []
    pos = body.find(delimiter)
    if pos < 0:
        raise MultipartError("Multipart boundary not found in body")
    pos += len(delimiter)
    while True:
        if body.startswith(b"--", pos):  # closing delimiter
            break
        if body.startswith(b"\r\n", pos):
            pos += 2
        header_end = body.find(b"\r\n\r\n", pos)
        if header_end < 0:
            raise MultipartError("Malformed multipart part headers")
        headers = _headers(body[pos:header_end])
        data_start = header_end + 4
        nxt = body.find(b"\r\n" + delimiter, data_start)
        if nxt < 0:
            raise MultipartError("Unterminated multipart part")
        disposition = Message()
        disposition["content-disposition"] = headers.get("content-disposition", "")
        name = disposition.get_param("name", header="content-disposition")
        filename = disposition.get_param("filename", header="content-disposition")
        if isinstance(name, str):
            parts.append(Part(name, filename if isinstance(filename, str) else None,
                              headers.get("content-type"), body[data_start:nxt]))
        pos = nxt + 2 + len(delimiter)
    return parts


def _headers(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip().lower()] = v.strip()
    return out
