"""The file store: FileObjects plus their bytes, in memory and optionally on disk."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ids
from .errors import APIError, not_found


@dataclass
class FileRecord:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    seq: int  # creation order; created_at has one-second resolution
    expires_at: int | None = None
    explicit_expiry: bool = False  # uploaded with expires_after (Azure counts those separately)
    data: bytes | None = field(default=None, repr=False)  # None when only on disk

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",  # files.wait_for_processing() polls until this
            "status_details": None,
        }


class FileStore:
    """Not thread-safe by itself: the engine calls it under its lock."""

    def __init__(self, state_dir: str | None) -> None:
        self._dir = Path(state_dir, "files") if state_dir else None
        self._files: dict[str, FileRecord] = {}
        self._seq = 0
        self._next_expiry: int | None = None  # earliest expires_at, so purging is O(1) until then
        if self._dir:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._load()

    def _load(self) -> None:
        assert self._dir
        for meta_path in sorted(self._dir.glob("*.json")):
            meta = json.loads(meta_path.read_text())
            rec = FileRecord(**meta)
            self._files[rec.id] = rec
            self._seq = max(self._seq, rec.seq)
            self._note_expiry(rec.expires_at)

    def _note_expiry(self, expires_at: int | None) -> None:
        if expires_at is not None and (self._next_expiry is None or expires_at < self._next_expiry):
            self._next_expiry = expires_at

    def _data_path(self, file_id: str) -> Path:
        assert self._dir
        return self._dir / f"{file_id}.data"

    def add(self, filename: str, purpose: str, data: bytes, now: int, expires_at: int | None = None,
            explicit_expiry: bool = False) -> FileRecord:
        self._seq += 1
        rec = FileRecord(ids.file_id(), filename, purpose, len(data), now, self._seq, expires_at, explicit_expiry, data)
        self._note_expiry(expires_at)
        if self._dir:
            # Data first, metadata last, so a crash never leaves metadata without bytes.
            self._data_path(rec.id).write_bytes(data)
            meta = {k: v for k, v in rec.__dict__.items() if k != "data"}
            tmp = self._dir / f"{rec.id}.json.tmp"
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, self._dir / f"{rec.id}.json")
            rec.data = None  # keep big files on disk only
        self._files[rec.id] = rec
        return rec

    def get(self, file_id: str, now: int) -> FileRecord:
        rec = self._files.get(file_id)
        if rec is None or (rec.expires_at is not None and rec.expires_at <= now):
            raise not_found("File", file_id)
        return rec

    def exists(self, file_id: str, now: int) -> bool:
        try:
            self.get(file_id, now)
            return True
        except APIError:
            return False

    def content(self, rec: FileRecord) -> bytes:
        if rec.data is not None:
            return rec.data
        return self._data_path(rec.id).read_bytes()

    def delete(self, file_id: str, now: int) -> None:
        self._remove(self.get(file_id, now))

    def _remove(self, rec: FileRecord) -> None:
        del self._files[rec.id]
        if self._dir:
            (self._dir / f"{rec.id}.json").unlink(missing_ok=True)
            self._data_path(rec.id).unlink(missing_ok=True)

    def purge(self, now: int) -> None:
        """Delete files past their expiry, as production does (their bytes are gone, not hidden)."""
        if self._next_expiry is None or self._next_expiry > now:
            return
        self._next_expiry = None
        for rec in list(self._files.values()):
            if rec.expires_at is not None and rec.expires_at <= now:
                self._remove(rec)
            else:
                self._note_expiry(rec.expires_at)

    def count(self, purpose: str, explicit_expiry: bool | None = None) -> int:
        return sum(1 for r in self._files.values()
                   if r.purpose == purpose and (explicit_expiry is None or r.explicit_expiry == explicit_expiry))

    def list(self, now: int, purpose: str | None, order: str, after: str | None, limit: int) -> tuple[list[FileRecord], bool]:
        recs = [r for r in self._files.values() if r.expires_at is None or r.expires_at > now]
        if purpose:
            recs = [r for r in recs if r.purpose == purpose]
        recs.sort(key=lambda r: (r.created_at, r.seq), reverse=(order != "asc"))
        if after:
            idx = next((i for i, r in enumerate(recs) if r.id == after), None)
            recs = recs[idx + 1:] if idx is not None else []
        return recs[:limit], len(recs) > limit

    def clear(self) -> None:
        for rec in list(self._files.values()):
            self._remove(rec)
        self._seq = 0
        self._next_expiry = None
