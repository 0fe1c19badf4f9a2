"""Jobs, their options, counters and every per-file error, in SQLite under DATA_DIR.

One small store: writes go through one thread (never the event loop) and are batched: a job's row is
rewritten at each state change and at most every SNAPSHOT_INTERVAL_S while it runs; errors are appended
in batches at the same moments. It is the record of every job: the JobManager keeps only the jobs it is
running in memory and reads ended ones from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from orchestrator.sqlite_db import SqliteDb

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id              TEXT PRIMARY KEY,
    root            TEXT NOT NULL,
    collection      TEXT NOT NULL,
    options         TEXT NOT NULL,
    state           TEXT NOT NULL,
    error           TEXT,
    created_at      REAL NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    runs            INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT UNIQUE,
    progress        TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS job_errors (
    job_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    path   TEXT NOT NULL,
    stage  TEXT NOT NULL,
    reason TEXT NOT NULL,
    at     REAL NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class JobRow:
    id: str
    root: str  # a local path or an s3:// URI (orchestrator/sources/roots.py parses it back)
    collection: str
    options: dict[str, Any]
    state: str
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    runs: int
    idempotency_key: str | None
    progress: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorRow:
    seq: int
    path: str
    stage: str
    reason: str
    at: float


class JobStore(SqliteDb):
    """Jobs and their errors: async methods whose blocking half runs on the database's thread."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, "job-store")

    async def save(self, row: JobRow, errors: list[ErrorRow]) -> None:
        """Write the job's row and append the errors not stored yet, in one transaction."""
        await self.run(self._save, row, errors)

    def _save(self, row: JobRow, errors: list[ErrorRow]) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "state=excluded.state, error=excluded.error, started_at=excluded.started_at, "
                "finished_at=excluded.finished_at, runs=excluded.runs, progress=excluded.progress",
                (
                    row.id,
                    row.root,
                    row.collection,
                    orjson.dumps(row.options).decode(),
                    row.state,
                    row.error,
                    row.created_at,
                    row.started_at,
                    row.finished_at,
                    row.runs,
                    row.idempotency_key,
                    orjson.dumps(row.progress).decode(),
                ),
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO job_errors VALUES (?, ?, ?, ?, ?, ?)",
                [(row.id, e.seq, e.path, e.stage, e.reason, e.at) for e in errors],
            )

    async def clear_errors(self, job_id: str) -> None:
        await self.run(self._clear_errors, job_id)

    def _clear_errors(self, job_id: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM job_errors WHERE job_id = ?", (job_id,))

    async def load_all(self) -> list[JobRow]:
        """Every job, oldest first."""
        return await self.run(self._select, "ORDER BY created_at", ())

    async def load_active(self, states: frozenset[str]) -> list[JobRow]:
        """The jobs in one of `states` (the active ones: what a restart resumes), oldest first."""
        marks = ", ".join("?" * len(states))
        return await self.run(self._select, f"WHERE state IN ({marks}) ORDER BY created_at", tuple(states))

    async def load(self, job_id: str) -> JobRow | None:
        rows = await self.run(self._select, "WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    async def find_by_key(self, idempotency_key: str) -> JobRow | None:
        rows = await self.run(self._select, "WHERE idempotency_key = ?", (idempotency_key,))
        return rows[0] if rows else None

    async def count_by_state(self) -> dict[str, int]:
        return await self.run(self._count_by_state)

    def _count_by_state(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {str(state): int(count) for state, count in rows}

    def _select(self, where: str, params: tuple[str, ...]) -> list[JobRow]:
        rows = self.conn.execute(
            "SELECT id, root, collection, options, state, error, created_at, started_at, finished_at, runs, "
            f"idempotency_key, progress FROM jobs {where}",
            params,
        ).fetchall()
        return [
            JobRow(
                id=r[0],
                root=r[1],
                collection=r[2],
                options=orjson.loads(r[3]),
                state=r[4],
                error=r[5],
                created_at=r[6],
                started_at=r[7],
                finished_at=r[8],
                runs=r[9],
                idempotency_key=r[10],
                progress=orjson.loads(r[11]),
            )
            for r in rows
        ]

    async def errors(self, job_id: str, offset: int, limit: int) -> tuple[int, list[ErrorRow]]:
        return await self.run(self._errors, job_id, offset, limit)

    def _errors(self, job_id: str, offset: int, limit: int) -> tuple[int, list[ErrorRow]]:
        total = self.conn.execute("SELECT COUNT(*) FROM job_errors WHERE job_id = ?", (job_id,)).fetchone()[0]
        rows = self.conn.execute(
            "SELECT seq, path, stage, reason, at FROM job_errors WHERE job_id = ? "
            "ORDER BY seq LIMIT ? OFFSET ?",
            (job_id, limit, offset),
        ).fetchall()
        return int(total), [ErrorRow(*r) for r in rows]
