"""The file store: FileObjects plus their bytes, small ones in memory, large ones on disk.

Without `state_dir`, bytes over SPILL_BYTES live in a temporary directory the store owns
(`close()` removes it); with `state_dir` every file lives under `state_dir/files/`. Either
way the emulator's memory does not grow with the size of the files it holds: uploads are
received into a `Spool` and batch results are written to disk by the preparation worker.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from . import ids
from .errors import APIError, not_found

SPILL_BYTES = 1024 * 1024  # files up to this size stay in memory when there is no state_dir
CHUNK = 1024 * 1024  # read size when streaming a file


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
    data: bytes | None = field(default=None, repr=False)  # None when on disk

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


class Spool:
    """Bytes arriving in pieces (an upload, a result file): in memory up to SPILL_BYTES, then in a
    file under the store's work directory, so a 200 MB upload never sits in memory whole."""

    def __init__(self, work_dir: Path, limit: int | None = None) -> None:
        self._work_dir = work_dir
        self._buf = bytearray()
        self._file: BinaryIO | None = None
        self.path: Path | None = None
        self.size = 0
        self.limit = limit
        self.over_limit = False  # more than `limit` bytes arrived; the rest was dropped

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.over_limit:
            return
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            self.over_limit = True
            self.discard()
            return
        if self._file is None and len(self._buf) + len(data) > SPILL_BYTES:
            fd, name = tempfile.mkstemp(dir=self._work_dir, suffix=".spool")
            self._file = os.fdopen(fd, "wb")
            self.path = Path(name)
            self._file.write(self._buf)
            self._buf = bytearray()
        if self._file is not None:
            self._file.write(data)
        else:
            self._buf += data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def in_memory(self) -> bytes | None:
        """The content when it stayed in memory, else None (it is at `path`)."""
        return bytes(self._buf) if self.path is None else None

    def open(self) -> BinaryIO:
        self.close()
        return open(self.path, "rb") if self.path is not None else io.BytesIO(self._buf)

    def discard(self) -> None:
        self.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None
        self._buf = bytearray()


class FileStore:
    """Not thread-safe by itself: the engine calls it under its lock."""

    def __init__(self, state_dir: str | None) -> None:
        self._dir = Path(state_dir, "files") if state_dir else None
        self._owned: Path | None = None  # temporary directory for big files without state_dir
        self._owned_lock = threading.Lock()  # uploads ask for it outside the engine's lock
        self._cleanup: weakref.finalize | None = None
        self._files: dict[str, FileRecord] = {}
        self._seq = 0
        self._next_expiry: int | None = None  # earliest expires_at, so purging is O(1) until then
        if self._dir:
            self._dir.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self._dir / "tmp", ignore_errors=True)  # spools of a previous process
            self._load()

    def _load(self) -> None:
        assert self._dir
        for meta_path in sorted(self._dir.glob("*.json")):
            meta = json.loads(meta_path.read_text())
            rec = FileRecord(**meta)
            self._files[rec.id] = rec
            self._seq = max(self._seq, rec.seq)
            self._note_expiry(rec.expires_at)

    # ------------------------------------------------------------ where bytes live

    def data_dir(self) -> Path:
        """Where file bytes live on disk: state_dir/files, or a temporary directory owned by the store."""
        if self._dir is not None:
            return self._dir
        with self._owned_lock:
            if self._owned is None:
                self._owned = Path(tempfile.mkdtemp(prefix="wb-emulator-"))
                # Removed by close(), or when the store is collected / the interpreter exits.
                self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._owned), True)
            return self._owned

    def work_dir(self) -> Path:
        """Scratch space on the same file system (uploads being received, prepared batch results)."""
        path = self.data_dir() / "tmp"
        path.mkdir(exist_ok=True)
        return path

    def spool(self, limit: int | None = None) -> Spool:
        return Spool(self.work_dir(), limit)

    def close(self) -> None:
        """Remove what only this process needs: the owned directory, or state_dir's scratch space."""
        with self._owned_lock:
            if self._cleanup is not None:
                self._cleanup()
                self._cleanup = self._owned = None
        if self._dir is not None:
            shutil.rmtree(self._dir / "tmp", ignore_errors=True)

    def _note_expiry(self, expires_at: int | None) -> None:
        if expires_at is not None and (self._next_expiry is None or expires_at < self._next_expiry):
            self._next_expiry = expires_at

    def _data_path(self, file_id: str) -> Path:
        return self.data_dir() / f"{file_id}.data"

    # ------------------------------------------------------------ adding

    def add(self, filename: str, purpose: str, data: bytes | Spool | Path, now: int, expires_at: int | None = None,
            explicit_expiry: bool = False) -> FileRecord:
        """Store `data`: bytes, a Spool, or a file under work_dir(); the store takes files over."""
        self._seq += 1
        if isinstance(data, Spool):
            data.close()
            size, in_memory, path = data.size, data.in_memory(), data.path
            data.path = None  # the store's now
        elif isinstance(data, Path):
            size, in_memory, path = data.stat().st_size, None, data
        else:
            size, in_memory, path = len(data), data, None
        rec = FileRecord(ids.file_id(), filename, purpose, size, now, self._seq, expires_at, explicit_expiry)
        self._note_expiry(expires_at)
        if self._dir is None and size <= SPILL_BYTES:
            if in_memory is None:
                assert path is not None
                in_memory = path.read_bytes()
                path.unlink()
            rec.data = in_memory
        else:
            # Data first, metadata last, so a crash never leaves metadata without bytes.
            if path is not None:
                os.replace(path, self._data_path(rec.id))
            else:
                self._data_path(rec.id).write_bytes(in_memory or b"")
            if self._dir:
                meta = {k: v for k, v in rec.__dict__.items() if k != "data"}
                tmp = self._dir / f"{rec.id}.json.tmp"
                tmp.write_text(json.dumps(meta))
                os.replace(tmp, self._dir / f"{rec.id}.json")
        self._files[rec.id] = rec
        return rec

    # ------------------------------------------------------------ reading

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

    def open(self, rec: FileRecord) -> BinaryIO:
        """A reader of the file's bytes; it stays readable if the file is deleted meanwhile."""
        if rec.data is not None:
            return io.BytesIO(rec.data)
        return open(self._data_path(rec.id), "rb")

    def snapshot(self, rec: FileRecord) -> bytes | Path:
        """The bytes as they are now, for later reading: in-memory bytes, or a hard link in the
        work directory (the caller unlinks it) that outlives a delete of the file."""
        if rec.data is not None:
            return rec.data
        fd, name = tempfile.mkstemp(dir=self.work_dir(), suffix=".input")
        os.close(fd)
        link = Path(name)
        link.unlink()
        try:
            os.link(self._data_path(rec.id), link)
        except OSError:  # a file system without hard links
            shutil.copyfile(self._data_path(rec.id), link)
        return link

    # ------------------------------------------------------------ removing

    def delete(self, file_id: str, now: int) -> None:
        self._remove(self.get(file_id, now))

    def _remove(self, rec: FileRecord) -> None:
        del self._files[rec.id]
        if self._dir:
            (self._dir / f"{rec.id}.json").unlink(missing_ok=True)
        if rec.data is None:
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


def iter_chunks(handle: BinaryIO) -> Iterator[bytes]:
    """The handle's bytes in CHUNK pieces; closes it at the end (or when the consumer stops)."""
    try:
        while chunk := handle.read(CHUNK):
            yield chunk
    finally:
        handle.close()
