"""What a watched folder's next pass looks at (pure: orchestrator/watch.py does the waiting and the stat).

Changed paths become a `ScanScope`: a file's directory is listed alone (`shallow`), a directory is walked
with its tree (`deep`: created or moved in, its files may predate the watch on it), and a path that is gone
gets both (its directory lists what is left; under it, as it may have been a directory, every indexed
directory is gone). The root itself changing means the whole root (None). Hidden names are left out when
the job leaves them out, as its scan does.

A file is settled when its size, mtime and inode have not changed for `settle_s` of watching: until then
it waits for a later pass (a file still being copied is looked at again, never read half written).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.pipeline.context import ScanScope


class Kind(enum.Enum):
    FILE = "file"  # anything but a directory (a symlink too: the scan applies its policy)
    DIR = "dir"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Look:
    """One changed path as a stat (lstat) saw it."""

    path: str
    kind: Kind
    signature: tuple[int, int, int] | None = None  # a file's size, mtime_ns, inode


def within(path: str, root: str) -> bool:
    """`path` is `root` or lies under it (both absolute and normalised, as inotify names them)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def relevant(path: str, root: str, include_hidden: bool) -> bool:
    """Whether a change at `path` can matter to the job's scan: under the root, and no hidden name on the
    way unless the job ingests those."""
    if not within(path, root):
        return False
    if include_hidden or path == root:
        return True
    return not any(part.startswith(".") for part in path[len(root) :].split("/") if part)


def plan_scope(root: str, looks: Iterable[Look], include_hidden: bool) -> ScanScope | None:
    """The directories a pass over these changes lists; None: the whole root."""
    shallow: set[str] = set()
    deep: set[str] = set()
    for look in looks:
        path = look.path
        if not relevant(path, root, include_hidden):
            continue
        if path == root:
            return None
        if look.kind is Kind.DIR:
            deep.add(path)
        else:
            shallow.add(os.path.dirname(path))
            if look.kind is Kind.GONE:
                deep.add(path)
    if root in deep:
        return None
    deep = {d for d in deep if not _covered(os.path.dirname(d), deep, root)}
    shallow = {d for d in shallow if not _covered(d, deep, root)}
    return ScanScope(shallow=frozenset(shallow), deep=frozenset(deep))


def _covered(directory: str, deep: set[str], root: str) -> bool:
    """`directory` or one of its ancestors up to the root is walked as a deep one."""
    while True:
        if directory in deep:
            return True
        if directory == root or not within(directory, root):
            return False
        directory = os.path.dirname(directory)


class Settler:
    """When changed files are settled: a file's signature (size, mtime, inode) unchanged for `settle_s`
    of watching. Directories and gone paths are settled at once. Remembers the files it was shown until
    they are forgotten (handed to a pass, or no longer changed)."""

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self._seen: dict[str, tuple[tuple[int, int, int] | None, float]] = {}  # path -> (signature, since)

    def wait_s(self, look: Look, now: float) -> float:
        """Seconds (monotonic clock) until `look`'s path is settled; 0 once it is."""
        if look.kind is not Kind.FILE or self.settle_s <= 0:
            self._seen.pop(look.path, None)
            return 0.0
        seen = self._seen.get(look.path)
        if seen is None or seen[0] != look.signature:
            seen = (look.signature, now)
            self._seen[look.path] = seen
        return max(0.0, self.settle_s - (now - seen[1]))

    def forget(self, path: str) -> None:
        self._seen.pop(path, None)

    def __len__(self) -> int:
        return len(self._seen)
