"""The stat index: which file (path, size, mtime_ns, inode) is already stored in which collection.

Level 1 of skipping work: an unchanged file is not even read again. Looked up a directory at a time (one
indexed range query per directory, never one round trip per file: docs/performance-limits.md), written in
batches only after the file's points were durably upserted, so a crash loses nothing and duplicates nothing.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.sqlite_db import SqliteDb

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
"""

ParkedFile = tuple[str, str, str, int, int, int]  # content hash, directory, name, size, mtime_ns, inode


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

    async def mark_done(self, collection: str, files: Iterable[IndexedFile]) -> None:
        """Record files as stored, in one transaction. Call only after their points are durable."""
        rows = [
            (collection, f.directory, f.name, f.size, f.mtime_ns, f.inode, f.content_hash, f.chunks)
            for f in files
        ]
        if rows:
            await self.run(self._mark_done, rows)

    def _mark_done(self, rows: list[tuple[str, str, str, int, int, int, str, int]]) -> None:
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    async def paths_of(self, collection: str, hashes: list[str]) -> dict[str, list[str]]:
        """Every indexed path of each content hash, sorted (the complete list a point's payload samples)."""
        if not hashes:
            return {}
        return await self.run(self._paths_of, collection, hashes)

    def _paths_of(self, collection: str, hashes: list[str]) -> dict[str, list[str]]:
        marks = ",".join("?" * len(hashes))
        rows = self.conn.execute(
            "SELECT content_hash, directory, name FROM files "
            f"WHERE collection = ? AND content_hash IN ({marks})",
            (collection, *hashes),
        ).fetchall()
        found: dict[str, list[str]] = {}
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
        with self.conn:
            args: tuple[str, ...] = (job_id,) if hashes is None else (job_id, *hashes)
            where = "job_id = ?"
            if hashes is not None:
                where += f" AND content_hash IN ({','.join('?' * len(hashes))})"
            rows = self.conn.execute(
                f"SELECT content_hash, directory, name, size, mtime_ns, inode FROM parked WHERE {where}", args
            ).fetchall()
            self.conn.execute(f"DELETE FROM parked WHERE {where}", args)
        return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def count(self, collection: str) -> int:
        return await self.run(self._count, collection)

    def _count(self, collection: str) -> int:
        row = self.conn.execute("SELECT COUNT(*) FROM files WHERE collection = ?", (collection,)).fetchone()
        return int(row[0])

    async def drop_collection(self, collection: str) -> None:
        await self.run(self._drop_collection, collection)

    def _drop_collection(self, collection: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM files WHERE collection = ?", (collection,))


StatRow = tuple[int, int, int]  # size, mtime_ns, inode


def lookup_dir_stats(conn: sqlite3.Connection, collection: str, directory: str) -> dict[str, StatRow]:
    """name -> (size, mtime_ns, inode) of one directory's indexed files: the scanner's fast path reads
    only what it compares (building full rows for every unchanged file cost ~20 % of a re-scan)."""
    cursor = conn.execute(
        "SELECT name, size, mtime_ns, inode FROM files WHERE collection = ? AND directory = ?",
        (collection, directory),
    )
    return {name: (size, mtime, inode) for name, size, mtime, inode in cursor}


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
