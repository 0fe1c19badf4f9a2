"""The stat index: which file (path, size, mtime_ns, inode) is already stored in which collection.

Level 1 of skipping work: an unchanged file is not even read again. Looked up a directory at a time (one
indexed range query per directory, never one round trip per file: docs/performance-limits.md), written in
batches only after the file's points were durably upserted, so a crash loses nothing and duplicates nothing.

Beside it: failures remembered per path and stat (not read again while unchanged), releases owed by paths
whose content changed (recorded with their done marks), duplicates parked until their first copy is
stored, and each running job's scratch (claims, written contents, gone files, its faces and voices for
the clusters' merge) in TEMP tables.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from orchestrator.sqlite_db import SqliteDb

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    collection   TEXT NOT NULL,
    directory    TEXT NOT NULL,
    name         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    inode        INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    chunks       INTEGER NOT NULL,
    PRIMARY KEY (collection, directory, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_by_hash ON files (collection, content_hash);
CREATE TABLE IF NOT EXISTS parked (
    job_id       TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    directory    TEXT NOT NULL,
    name         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    inode        INTEGER NOT NULL,
    PRIMARY KEY (job_id, content_hash, directory, name)
) WITHOUT ROWID;
-- Files that failed for a reason of their content (undecodable, not media under a media name): skipped
-- while (size, mtime_ns, inode) stay the same, unless a job asks for retry_failed.
CREATE TABLE IF NOT EXISTS failures (
    collection   TEXT NOT NULL,
    directory    TEXT NOT NULL,
    name         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    inode        INTEGER NOT NULL,
    stage        TEXT NOT NULL,
    reason       TEXT NOT NULL,
    PRIMARY KEY (collection, directory, name)
) WITHOUT ROWID;
-- A path whose content changed, still listed by its old content's points: written in the transaction
-- that marks the new content done, deleted once the old points no longer list it
-- (points.PointKeeper.pay_recorded). Also a path about to be written onto a content's points, recorded
-- before the write and deleted by its done mark: a write that is never marked done (crash, store error)
-- is then taken back, even if the file is gone or changed by the next run.
CREATE TABLE IF NOT EXISTS releases (
    collection   TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    chunks       INTEGER NOT NULL,
    path         TEXT NOT NULL,
    PRIMARY KEY (collection, content_hash, path)
) WITHOUT ROWID;
-- A running job's scratch, one row per distinct content or gone file, so its memory stays flat: TEMP
-- tables live on this connection only (spilled to a temporary file past the page cache), need no
-- durability, and vanish with the process; a job clears its rows when it starts and when it ends.
CREATE TEMP TABLE IF NOT EXISTS claims (
    job_id       TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    path         TEXT NOT NULL,
    PRIMARY KEY (job_id, content_hash)
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS written (
    job_id       TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    chunks       INTEGER NOT NULL,
    PRIMARY KEY (job_id, content_hash)
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS gone (
    job_id       TEXT NOT NULL,
    directory    TEXT NOT NULL,
    name         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS temp.gone_by_job ON gone (job_id);
CREATE TEMP TABLE IF NOT EXISTS members (
    job_id       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    cluster      TEXT NOT NULL,
    vector       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS temp.members_by_job ON members (job_id, kind);
"""

ParkedFile = tuple[str, str, str, int, int, int]  # content hash, directory, name, size, mtime_ns, inode
Release = tuple[str, int, str]  # old content hash, its chunk count, the path that no longer holds it
KnownFailureRow = tuple[int, int, int, str, str]  # size, mtime_ns, inode, stage, reason
# Values bound per statement: far below SQLite's variable limit (250000 in this build's libsqlite3, 32766
# or 999 in others), so a list of any length is sent in slices.
MAX_BOUND = 500


def slices(items: Sequence[_T], size: int = MAX_BOUND) -> Iterator[Sequence[_T]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class IndexedFile:
    directory: str
    name: str
    size: int
    mtime_ns: int
    inode: int
    content_hash: str
    chunks: int


class FileIndex(SqliteDb):
    """SQLite (WAL) behind one thread; every public method is async and off the event loop."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, "file-index")

    async def lookup_dir(self, collection: str, directory: str) -> dict[str, IndexedFile]:
        """Every indexed file of one directory, by name."""
        return await self.run(self._lookup_dir, collection, directory)

    def _lookup_dir(self, collection: str, directory: str) -> dict[str, IndexedFile]:
        return lookup_dir_with(self.conn, collection, directory)

    def reader(self) -> sqlite3.Connection:
        """A read-only connection for ONE other thread (the scanner's), so its per-directory look-ups
        need no hop through this index's thread. WAL lets it read while this index writes."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        conn.execute("PRAGMA query_only=ON")
        return conn

    async def mark_done(
        self, collection: str, files: Iterable[IndexedFile], releases: Iterable[Release] = ()
    ) -> None:
        """Record files as stored, in one transaction. Call only after their points are durable.

        `releases` (old content, chunks, path) are recorded in the same transaction: a path whose
        content changed stays owed to its old points until `released` says they no longer list it, so
        a crash between the done mark and the release is finished by the next `pending_releases`."""
        rows = [
            (collection, f.directory, f.name, f.size, f.mtime_ns, f.inode, f.content_hash, f.chunks)
            for f in files
        ]
        owed = [(collection, h, chunks, path) for h, chunks, path in releases]
        if rows or owed:
            await self.run(self._mark_done, rows, owed)

    def _mark_done(
        self, rows: list[tuple[str, str, str, int, int, int, str, int]], owed: list[tuple[str, str, int, str]]
    ) -> None:
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self.conn.executemany(
                "DELETE FROM failures WHERE collection = ? AND directory = ? AND name = ?",
                [(r[0], r[1], r[2]) for r in rows],
            )
            # A path done as a content owes that content nothing (what the write recorded before it ran).
            self.conn.executemany(
                "DELETE FROM releases WHERE collection = ? AND content_hash = ? AND path = ?",
                [(r[0], r[6], os.path.join(r[1], r[2])) for r in rows],
            )
            self.conn.executemany("INSERT OR REPLACE INTO releases VALUES (?, ?, ?, ?)", owed)

    async def pending_releases(self, collection: str, limit: int = MAX_BOUND) -> list[Release]:
        """Up to `limit` releases recorded by `mark_done` and not yet `released`, leaving out the contents a
        running job has claimed (its writes in flight record releases too: they are not owed yet)."""
        return await self.run(self._pending_releases, collection, limit)

    def _pending_releases(self, collection: str, limit: int) -> list[Release]:
        rows = self.conn.execute(
            "SELECT content_hash, chunks, path FROM releases WHERE collection = ? "
            "AND content_hash NOT IN (SELECT content_hash FROM claims) LIMIT ?",
            (collection, limit),
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    async def released(self, collection: str, releases: list[Release]) -> None:
        """The old points no longer list these paths."""
        if releases:
            await self.run(self._released, collection, releases)

    def _released(self, collection: str, releases: list[Release]) -> None:
        with self.conn:
            self.conn.executemany(
                "DELETE FROM releases WHERE collection = ? AND content_hash = ? AND path = ?",
                [(collection, h, path) for h, _, path in releases],
            )

    async def paths_of(self, collection: str, hashes: list[str]) -> dict[str, list[str]]:
        """Every indexed path of each content hash, sorted (the complete list a point's payload samples)."""
        if not hashes:
            return {}
        return await self.run(self._paths_of, collection, hashes)

    def _paths_of(self, collection: str, hashes: list[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for part in slices(hashes):
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                "SELECT content_hash, directory, name FROM files "
                f"WHERE collection = ? AND content_hash IN ({marks})",
                (collection, *part),
            )
            for content_hash, directory, name in rows:
                found.setdefault(content_hash, []).append(os.path.join(directory, name))
        return {h: sorted(paths) for h, paths in found.items()}

    async def rows(self, collection: str, files: list[tuple[str, str]]) -> list[IndexedFile]:
        """The index rows of these (directory, name) pairs that exist."""
        return await self.run(self._rows, collection, files)

    def _rows(self, collection: str, files: list[tuple[str, str]]) -> list[IndexedFile]:
        found = []
        for directory, name in files:
            row = lookup_file(self.conn, collection, directory, name)
            if row is not None:
                found.append(row)
        return found

    async def forget(self, collection: str, files: list[tuple[str, str]]) -> None:
        """Remove (directory, name) rows: files gone from the tree."""
        if files:
            await self.run(self._forget, collection, files)

    def _forget(self, collection: str, files: list[tuple[str, str]]) -> None:
        with self.conn:
            self.conn.executemany(
                "DELETE FROM files WHERE collection = ? AND directory = ? AND name = ?",
                [(collection, d, n) for d, n in files],
            )

    async def park(self, job_id: str, files: list[ParkedFile]) -> None:
        """Hold duplicates whose first copy is not stored yet on disk, not in memory: a tree of copies
        would otherwise hold every copy in RAM while the first ones wait for the ML service. Not a "done"
        mark: a crash loses only this hold (the files are simply found again)."""
        if files:
            await self.run(self._park, job_id, files)

    def _park(self, job_id: str, files: list[ParkedFile]) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO parked VALUES (?, ?, ?, ?, ?, ?, ?)", [(job_id, *f) for f in files]
            )

    async def unpark(self, job_id: str, hashes: list[str] | None) -> list[ParkedFile]:
        """Take (return and delete) the parked files of these contents, or all of the job's if None."""
        if hashes is not None and not hashes:
            return []
        return await self.run(self._unpark, job_id, hashes)

    def _unpark(self, job_id: str, hashes: list[str] | None) -> list[ParkedFile]:
        taken: list[ParkedFile] = []
        with self.conn:
            for part in [None] if hashes is None else slices(hashes):
                args: tuple[str, ...] = (job_id,) if part is None else (job_id, *part)
                where = "job_id = ?"
                if part is not None:
                    where += f" AND content_hash IN ({','.join('?' * len(part))})"
                rows = self.conn.execute(
                    f"SELECT content_hash, directory, name, size, mtime_ns, inode FROM parked WHERE {where}",
                    args,
                ).fetchall()
                self.conn.execute(f"DELETE FROM parked WHERE {where}", args)
                taken.extend((r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows)
        return taken

    # --- a running job's scratch (TEMP tables: see the schema) -----------------------------------

    async def clear_job(self, job_id: str) -> None:
        """Drop a job's scratch rows (at its start and at its end)."""
        await self.run(self._clear_job, job_id)

    def _clear_job(self, job_id: str) -> None:
        with self.conn:
            for table in ("claims", "written", "gone", "members"):
                self.conn.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))

    async def claim(self, job_id: str, content_hash: str, path: str) -> str:
        """Claim a content for a path in this job: the first path to claim it wins and is returned to
        every later claimant (the same path claiming again gets itself back)."""
        return await self.run(self._claim, job_id, content_hash, path)

    def _claim(self, job_id: str, content_hash: str, path: str) -> str:
        with self.conn:
            self.conn.execute("INSERT OR IGNORE INTO claims VALUES (?, ?, ?)", (job_id, content_hash, path))
            row = self.conn.execute(
                "SELECT path FROM claims WHERE job_id = ? AND content_hash = ?", (job_id, content_hash)
            ).fetchone()
        return str(row[0])

    async def add_written(self, job_id: str, contents: list[tuple[str, int]]) -> None:
        """Contents (hash, chunk count) whose points this job has written."""
        if contents:
            await self.run(self._add_written, job_id, contents)

    def _add_written(self, job_id: str, contents: list[tuple[str, int]]) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO written VALUES (?, ?, ?)", [(job_id, h, n) for h, n in contents]
            )

    async def written(self, job_id: str, hashes: list[str]) -> dict[str, int]:
        """hash -> chunk count, for those of these contents whose points this job has written."""
        if not hashes:
            return {}
        return await self.run(self._written, job_id, hashes)

    def _written(self, job_id: str, hashes: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for part in slices(hashes):
            rows = self.conn.execute(
                f"SELECT content_hash, chunks FROM written WHERE job_id = ? AND content_hash IN "
                f"({','.join('?' * len(part))})",
                (job_id, *part),
            )
            found.update((h, int(n)) for h, n in rows)
        return found

    async def add_gone(self, job_id: str, files: list[tuple[str, str]]) -> None:
        """(directory, name) the scanner found gone, kept for pruning at the job's end."""
        if files:
            await self.run(self._add_gone, job_id, files)

    def _add_gone(self, job_id: str, files: list[tuple[str, str]]) -> None:
        with self.conn:
            self.conn.executemany("INSERT INTO gone VALUES (?, ?, ?)", [(job_id, d, n) for d, n in files])

    async def gone_page(self, job_id: str, after: int, limit: int = MAX_BOUND) -> list[tuple[int, str, str]]:
        """Up to `limit` (row, directory, name) of the job's gone files after row `after`, in order."""
        return await self.run(self._gone_page, job_id, after, limit)

    def _gone_page(self, job_id: str, after: int, limit: int) -> list[tuple[int, str, str]]:
        rows = self.conn.execute(
            "SELECT rowid, directory, name FROM gone WHERE job_id = ? AND rowid > ? ORDER BY rowid LIMIT ?",
            (job_id, after, limit),
        ).fetchall()
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def add_members(self, job_id: str, kind: str, members: list[tuple[str, bytes]]) -> None:
        """(cluster, vector as float32 bytes) of faces or voices this job added, for `PeopleIndex.merge`."""
        if members:
            await self.run(self._add_members, job_id, kind, members)

    def _add_members(self, job_id: str, kind: str, members: list[tuple[str, bytes]]) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT INTO members VALUES (?, ?, ?, ?)", [(job_id, kind, c, v) for c, v in members]
            )

    async def members_page(
        self, job_id: str, kind: str, after: int, limit: int = MAX_BOUND
    ) -> list[tuple[int, str, bytes]]:
        """Up to `limit` (row, cluster, vector) of the job's members of `kind` after row `after`."""
        return await self.run(self._members_page, job_id, kind, after, limit)

    def _members_page(self, job_id: str, kind: str, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        rows = self.conn.execute(
            "SELECT rowid, cluster, vector FROM members WHERE job_id = ? AND kind = ? AND rowid > ? "
            "ORDER BY rowid LIMIT ?",
            (job_id, kind, after, limit),
        ).fetchall()
        return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    async def clear_members(self, job_id: str, kind: str) -> None:
        await self.run(self._clear_members, job_id, kind)

    def _clear_members(self, job_id: str, kind: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM members WHERE job_id = ? AND kind = ?", (job_id, kind))

    # --- remembered failures ----------------------------------------------------------------------

    async def remember_failures(
        self, collection: str, failures: list[tuple[str, str, int, int, int, str, str]]
    ) -> None:
        """(directory, name, size, mtime_ns, inode, stage, reason) of files that failed for a reason of
        their content: skipped by later scans while unchanged."""
        if failures:
            await self.run(self._remember_failures, collection, failures)

    def _remember_failures(
        self, collection: str, failures: list[tuple[str, str, int, int, int, str, str]]
    ) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(collection, *f) for f in failures],
            )

    async def count(self, collection: str) -> int:
        return await self.run(self._count, collection)

    def _count(self, collection: str) -> int:
        row = self.conn.execute("SELECT COUNT(*) FROM files WHERE collection = ?", (collection,)).fetchone()
        return int(row[0])

    async def drop_collection(self, collection: str) -> None:
        await self.run(self._drop_collection, collection)

    def _drop_collection(self, collection: str) -> None:
        with self.conn:
            for table in ("files", "failures", "releases"):
                self.conn.execute(f"DELETE FROM {table} WHERE collection = ?", (collection,))


StatRow = tuple[int, int, int]  # size, mtime_ns, inode


def lookup_dir_stats(conn: sqlite3.Connection, collection: str, directory: str) -> dict[str, StatRow]:
    """name -> (size, mtime_ns, inode) of one directory's indexed files: the scanner's fast path reads
    only what it compares (building full rows for every unchanged file cost ~20 % of a re-scan)."""
    cursor = conn.execute(
        "SELECT name, size, mtime_ns, inode FROM files WHERE collection = ? AND directory = ?",
        (collection, directory),
    )
    return {name: (size, mtime, inode) for name, size, mtime, inode in cursor}


def lookup_dir_failures(
    conn: sqlite3.Connection, collection: str, directory: str
) -> dict[str, KnownFailureRow]:
    """name -> (size, mtime_ns, inode, stage, reason) of one directory's remembered failures."""
    cursor = conn.execute(
        "SELECT name, size, mtime_ns, inode, stage, reason FROM failures "
        "WHERE collection = ? AND directory = ?",
        (collection, directory),
    )
    return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in cursor}


def directories_under(conn: sqlite3.Connection, collection: str, root: str) -> list[str]:
    """Indexed directories at or below `root` (resolved, absolute)."""
    where, args = _under(collection, root)
    return [row[0] for row in conn.execute(f"SELECT DISTINCT directory FROM files WHERE {where}", args)]


def lookup_file(conn: sqlite3.Connection, collection: str, directory: str, name: str) -> IndexedFile | None:
    row = conn.execute(
        "SELECT directory, name, size, mtime_ns, inode, content_hash, chunks FROM files "
        "WHERE collection = ? AND directory = ? AND name = ?",
        (collection, directory, name),
    ).fetchone()
    return IndexedFile(*row) if row is not None else None


def lookup_dir_with(conn: sqlite3.Connection, collection: str, directory: str) -> dict[str, IndexedFile]:
    """Every indexed file of one directory, by name."""
    rows = conn.execute(
        "SELECT directory, name, size, mtime_ns, inode, content_hash, chunks FROM files "
        "WHERE collection = ? AND directory = ?",
        (collection, directory),
    ).fetchall()
    return {row[1]: IndexedFile(*row) for row in rows}


def _under(collection: str, root: str) -> tuple[str, tuple[str, ...]]:
    """WHERE clause for rows at or below `root`: a primary-key range instead of LIKE (no escaping of
    % and _ in real paths)."""
    prefix = root.rstrip("/") + "/"
    return (
        "collection = ? AND (directory = ? OR (directory >= ? AND directory < ?))",
        (collection, root, prefix, prefix[:-1] + chr(ord("/") + 1)),
    )
