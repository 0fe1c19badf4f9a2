"""A real write fault: a directory tree made read-only while a process (not root) has it open.

Qdrant Edge then refuses every write at its flush ("Failed to flush id_tracker mapping: ... Permission
denied (os error 13)"), and writes again once the modes are back: measured with qdrant-edge, a store
that stays open throughout. Root ignores the modes, hence the unprivileged orchestrator
(tests/support/orchestrator_process.py)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


@contextmanager
def read_only(root: Path) -> Iterator[None]:
    """No write bit anywhere under `root` (itself included) inside the block; every mode as it was after."""
    modes: dict[str, int] = {}
    try:
        for directory, dirs, files in os.walk(root):  # top-down: a directory is locked before its entries
            for path in [directory, *(os.path.join(directory, name) for name in dirs + files)]:
                if path in modes:
                    continue
                mode = stat.S_IMODE(os.lstat(path).st_mode)
                modes[path] = mode
                os.chmod(path, mode & ~_WRITE_BITS, follow_symlinks=False)
        yield
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode, follow_symlinks=False)
