"""A scan task's look at one directory (blocking: run in a thread). Pure but for the listing itself.

Subdirectories become scans of their own (a symlink to a directory is never entered, hidden names are left
unless INCLUDE_HIDDEN, as in stages/scan.py); a regular file the shared index has with the same size, mtime
and inode is unchanged (counted, not partitioned); everything else goes into partitions of at most
`max_files` names and `max_bytes` bytes (a single larger file is a partition of its own), in name order so
the same listing gives the same pages. What it is (symlink in or out of the root, device, vanished) is judged
by the worker that runs the partition (`visit_entry`), where the failure is recorded with its reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from orchestrator.distributed.store import Partition, Settled
from orchestrator.file_index import IndexedFile


@dataclass(slots=True)
class Listing:
    partitions: list[Partition] = field(default_factory=list)
    subdirectories: list[str] = field(default_factory=list)
    unchanged: int = 0
    failures: list[Settled] = field(default_factory=list)


def list_directory(
    directory: str,
    known: dict[str, IndexedFile],
    include_hidden: bool,
    max_files: int,
    max_bytes: int,
) -> Listing:
    listing = Listing()
    candidates: list[tuple[str, int]] = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                name = entry.name
                if name[0] == "." and not include_hidden:
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        listing.subdirectories.append(entry.path)
                        continue
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    candidates.append((name, 0))  # the worker records why it cannot be read
                    continue
                row = known.get(name)
                if (
                    row is not None
                    and entry.is_file(follow_symlinks=False)
                    and (row.size, row.mtime_ns, row.inode) == (st.st_size, st.st_mtime_ns, st.st_ino)
                ):
                    listing.unchanged += 1
                    continue
                candidates.append((name, st.st_size))
    except OSError as exc:
        reason = f"cannot list directory: {exc.strerror or exc}"
        listing.failures.append(Settled(directory, "failed", "scan", reason))
        return listing
    candidates.sort()
    listing.subdirectories.sort()
    page: list[str] = []
    page_bytes = 0
    for name, size in candidates:
        if page and (len(page) >= max_files or page_bytes + size > max_bytes):
            listing.partitions.append(Partition(directory, len(listing.partitions), tuple(page)))
            page, page_bytes = [], 0
        page.append(name)
        page_bytes += size
    if page:
        listing.partitions.append(Partition(directory, len(listing.partitions), tuple(page)))
    return listing
