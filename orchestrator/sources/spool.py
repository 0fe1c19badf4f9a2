"""A job's spool: local copies of remote files (an object store's) waiting to be read by prepare.

One hidden directory per job under DATA_DIR (`DATA_DIR/.spool/<job id>`), emptied when a pass starts and
removed when it ends (whatever its end: the runner), and all of `DATA_DIR/.spool` at start-up (copies a
killed process left). At most `capacity` bytes are reserved at once: a download waits (`reserve`) while
the spool is full, so a slow prepare slows the downloads instead of filling the disk (backpressure). Each
copy is given back (`release`: deleted, its bytes free again) as soon as prepare is done with its file.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from pathlib import Path

SPOOL_DIR = ".spool"


def spool_root(data_dir: Path) -> Path:
    return data_dir / SPOOL_DIR


def clear_spools(data_dir: Path) -> None:
    """Every job's spool (at start-up, before any job runs). Blocking."""
    shutil.rmtree(spool_root(data_dir), ignore_errors=True)


class Spool:
    def __init__(self, directory: Path, capacity: int) -> None:
        self.directory = directory
        self.capacity = capacity
        self._used = 0
        self._names = itertools.count()
        self._room = asyncio.Condition()

    @property
    def used(self) -> int:
        """Bytes reserved now (copies being written or waiting for prepare)."""
        return self._used

    async def open(self) -> None:
        """An empty spool directory (a crashed run's copies go)."""
        await asyncio.to_thread(self._reset)

    def _reset(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, mode=0o700)

    async def close(self) -> None:
        """Remove the directory with whatever is left in it."""
        await asyncio.to_thread(shutil.rmtree, self.directory, True)

    def new_path(self) -> Path:
        """A fresh name for a copy (a counter: the object's key never becomes a local name)."""
        return self.directory / f"{next(self._names)}.part"

    async def reserve(self, size: int) -> None:
        """Wait until `size` more bytes fit, then hold them. ValueError if they never can."""
        if size > self.capacity:
            raise ValueError(f"file too large for the spool: {size} bytes (S3_SPOOL_BYTES {self.capacity})")
        async with self._room:
            await self._room.wait_for(lambda: self._used + size <= self.capacity)
            self._used += size

    async def unreserve(self, size: int) -> None:
        """Give back bytes reserved for a copy that was never made."""
        async with self._room:
            self._used -= size
            self._room.notify_all()

    async def release(self, path: Path, size: int) -> None:
        """Delete a copy and give its bytes back."""
        try:
            await asyncio.to_thread(path.unlink, True)
        finally:
            await self.unreserve(size)
