"""Resumable uploads: the state of tus 1.0 uploads (https://tus.io/protocols/resumable-upload, core +
creation + termination) kept beside their bytes under `UPLOAD_DIR/.partial/tus/`, so an upload survives a
restart. No maintained tus server library fits FastAPI (our lock has none): the protocol is small (POST
creates, HEAD tells the offset, PATCH appends at that offset), so it is implemented here and in
`api/uploads.py`.

A PATCH's bytes are appended as they arrive; a PATCH cut off keeps what came (fsync'd) and records the new
offset, which the next HEAD reports. The offset recorded is the truth: bytes past it (a crash between the
write and the record) are dropped when the next PATCH opens the file.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.sources.managed import ManagedArea, is_id, new_id

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination"


class MetadataError(ValueError):
    """A malformed Upload-Metadata header (HTTP 400)."""


def parse_metadata(header: str) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64(value)` pairs (a key alone has an empty value)."""
    out: dict[str, str] = {}
    for pair in header.split(","):
        if not pair.strip():
            continue
        key, _, value = pair.strip().partition(" ")
        if not key or " " in value.strip() or key in out:
            raise MetadataError(f"malformed Upload-Metadata pair {pair.strip()!r}")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise MetadataError(f"Upload-Metadata {key!r} is not base64 of UTF-8 text") from exc
    return out


@dataclass(slots=True)
class TusUpload:
    id: str
    length: int
    offset: int
    name: str  # the file's safe name
    collection: str
    tenant: str | None = None  # who created it (tenancy.py; None: the operator); only they may go on
    created_at: float = field(default_factory=time.time)
    result: dict[str, Any] | None = None  # once complete: what its completion answered

    @property
    def complete(self) -> bool:
        return self.offset == self.length


class TusStore:
    """The uploads under `.partial/tus/`: `<id>.bin` (the bytes so far) and `<id>.json` (the state)."""

    def __init__(self, area: ManagedArea) -> None:
        self._dir = area.staging("tus")
        self._locks: dict[str, asyncio.Lock] = {}

    def data_path(self, upload_id: str) -> Path:
        return self._dir / f"{upload_id}.bin"

    def _state_path(self, upload_id: str) -> Path:
        return self._dir / f"{upload_id}.json"

    def lock(self, upload_id: str) -> asyncio.Lock:
        """One PATCH or completion of an upload at a time (in this process)."""
        return self._locks.setdefault(upload_id, asyncio.Lock())

    async def create(self, length: int, name: str, collection: str, tenant: str | None) -> TusUpload:
        upload = TusUpload(
            id=new_id(), length=length, offset=0, name=name, collection=collection, tenant=tenant
        )
        await asyncio.to_thread(self.data_path(upload.id).touch, exist_ok=False)
        await self.save(upload)
        return upload

    async def get(self, upload_id: str) -> TusUpload | None:
        if not is_id(upload_id):
            return None
        return await asyncio.to_thread(self._load, upload_id)

    def _load(self, upload_id: str) -> TusUpload | None:
        try:
            raw = json.loads(self._state_path(upload_id).read_text("utf-8"))
        except FileNotFoundError:
            return None
        upload = TusUpload(**raw)
        if upload.result is None:  # bytes past the recorded offset are not counted (see the module)
            try:
                upload.offset = min(upload.offset, self.data_path(upload_id).stat().st_size)
            except FileNotFoundError:
                pass  # moved to its place already: the completion is redone from there
        return upload

    async def save(self, upload: TusUpload) -> None:
        await asyncio.to_thread(self._write_state, upload)

    def _write_state(self, upload: TusUpload) -> None:
        path = self._state_path(upload.id)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(asdict(upload), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    async def delete(self, upload_id: str) -> None:
        def remove() -> None:
            self.data_path(upload_id).unlink(missing_ok=True)
            self._state_path(upload_id).unlink(missing_ok=True)

        await asyncio.to_thread(remove)
        self._locks.pop(upload_id, None)
