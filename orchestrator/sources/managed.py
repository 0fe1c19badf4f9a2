"""The managed area (UPLOAD_DIR): where files that arrive over HTTP live, always an allowed ingest root.

    UPLOAD_DIR/<collection>/<id>/<safe name>   one upload, URL download or text: one job's root
    UPLOAD_DIR/.partial/posts/<id>             a POST /uploads body being received (gone at restart)
    UPLOAD_DIR/.partial/tus/<id>.bin|.json     a resumable upload and its state (kept across restarts)

`.partial` is hidden: an ingest never scans it. A collection's uploads are recorded in the catalog as ONE
root, `UPLOAD_DIR/<collection>` (`catalog_root`), so a rebuild walks them in one pass, not one per upload.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

STAGING = ".partial"
_COLLECTION = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ID = re.compile(r"[0-9a-f]{32}")


def new_id() -> str:
    return uuid.uuid4().hex


def is_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class ManagedArea:
    root: Path  # UPLOAD_DIR, resolved

    def collection_dir(self, collection: str) -> Path:
        if _COLLECTION.fullmatch(collection) is None:
            raise ValueError(f"not a collection name: {collection!r}")
        return self.root / collection

    def directory(self, collection: str, item_id: str) -> Path:
        """Where one item of `collection` lives (not created)."""
        if not is_id(item_id):
            raise ValueError(f"not an upload id: {item_id!r}")
        return self.collection_dir(collection) / item_id

    def staging(self, kind: str) -> Path:
        return self.root / STAGING / kind

    def create(self) -> None:
        """Make the area; drop POST bodies a dead process left half received. Blocking."""
        shutil.rmtree(self.staging("posts"), ignore_errors=True)
        for kind in ("posts", "tus"):
            self.staging(kind).mkdir(parents=True, exist_ok=True)

    def new_directory(self, collection: str, item_id: str | None = None) -> Path:
        """Create the directory of a new item (a fresh id unless given). Blocking."""
        path = self.directory(collection, item_id or new_id())
        path.mkdir(parents=True, exist_ok=True)
        return path

    def place(self, staged: Path, collection: str, item_id: str, name: str) -> Path:
        """Move a received file to `<collection>/<item_id>/<name>` (a rename: no second write), durably.
        Idempotent: a file already placed there (a completion redone after a crash) is kept. Blocking."""
        directory = self.new_directory(collection, item_id)
        target = directory / name
        if target.parent != directory:  # names come from `names.safe_name`: one component
            raise ValueError(f"not a file name: {name!r}")
        if staged.exists() or not target.exists():
            os.replace(staged, target)
        _fsync_dir(directory)
        return target

    def catalog_root(self, job_root: Path) -> Path:
        """The root the catalog records for a job's root: an item's collection directory, else itself."""
        if job_root.parent.parent == self.root and is_id(job_root.name):
            return job_root.parent
        return job_root

    def remove(self, directory: Path) -> None:
        """Remove an item's directory (a job refused or answered by another). Blocking."""
        if directory.parent.parent == self.root and is_id(directory.name):
            shutil.rmtree(directory, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
