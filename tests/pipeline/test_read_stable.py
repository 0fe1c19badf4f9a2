"""A file that changes while it is read is read again, and recorded as failed if it keeps changing:
never stored with a stale hash."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from orchestrator.pipeline.messages import FileEntry
from orchestrator.pipeline.stages.prepare import _ChangedError, _read_stable, open_scanned


def _entry(path: Path) -> FileEntry:
    st = path.stat()
    return FileEntry(str(path), str(path.parent), path.name, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def _read(entry: FileEntry) -> tuple[bytes, FileEntry]:
    with open_scanned(entry) as fh:
        return _read_stable(fh, entry)


def test_stable_file_reads_with_the_stat_of_the_read(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x" * 1000)
    entry = _entry(path)
    path.write_bytes(b"y" * 2000)  # changed after the scan, before the read: the read's stat wins
    data, seen = _read(entry)
    assert data == b"y" * 2000 and seen.size == 2000


def test_file_that_keeps_changing_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "growing.jpg"
    path.write_bytes(os.urandom(48 << 20))  # big enough that each read overlaps several appends
    stop = threading.Event()

    def append() -> None:
        with open(path, "ab") as fh:
            while not stop.is_set():
                fh.write(b"z" * 4096)
                fh.flush()
                time.sleep(0.0005)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        with pytest.raises(_ChangedError, match="changed while it was being read"):
            _read(_entry(path))
    finally:
        stop.set()
        writer.join()
