"""Every statement of the distributed mode against PostgreSQL (tables: schema.py), one transaction per call.

The guarantees the workers rely on live here:
- a claim increments the partition's `attempt` (its ownership token) and returns it;
- a checkpoint locks the partition row, refuses an attempt that is not the current one (`StaleCheckpoint`),
  and commits the settled files (`file_results`, primary key job + path: a file is counted once however often
  it was delivered), their shared index rows and the partition's counts in ONE transaction;
- a job completes when no scan is queued and no partition is queued, running or paused.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from orchestrator.distributed.connection import ClosingConnection
from orchestrator.distributed.schema import SCHEMA_LOCK, TABLES
from orchestrator.file_index import IndexedFile

# Namespace of scan and partition ids (uuid5 of job, directory[, page]): a scan run twice adds nothing.
_NAMESPACE = uuid.UUID("5f0e7c1a-4b8e-4f55-9d7e-6a0c2b7d1e90")
ACTIVE_PARTITION = ("queued", "running", "paused")
# PostgreSQL restarting or failing over: each call (one transaction) is tried again for this long.
RECONNECT_S = 120.0

_P = ParamSpec("_P")
_T = TypeVar("_T")


def reconnecting(call: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """Run a store call again (backoff 0.2 s doubling to 5 s) while PostgreSQL cannot be reached. Every call
    is one transaction, so a retry re-does all of it; a transaction that committed just before the connection
    dropped is re-done harmlessly (results are keyed by path; an attempt already taken is simply newer)."""

    @functools.wraps(call)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(psycopg.OperationalError),
            wait=wait_exponential(multiplier=0.2, max=5.0),
            stop=stop_after_delay(RECONNECT_S),
            reraise=True,
        ):
            with attempt:
                return await call(*args, **kwargs)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    return wrapper


class StaleCheckpoint(Exception):
    """The partition has another owner now (a newer attempt) or was stopped: the counts are refused."""


def scan_id(job_id: str, directory: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"scan\0{job_id}\0{directory}")


def partition_id(job_id: str, directory: str, page: int) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"partition\0{job_id}\0{directory}\0{page}")


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    collection: str
    root: str
    options: dict[str, Any]
    state: str
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    idempotency_key: str | None

    @property
    def physical(self) -> str:
        """The store collection the workers write: the version searched when the job was submitted."""
        return str(self.options.get("physical") or self.collection)


@dataclass(frozen=True, slots=True)
class Partition:
    """A directory's page of names (made by a scan task)."""

    directory: str
    page: int
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Claim:
    """A partition this worker owns now, under `attempt`."""

    id: uuid.UUID
    attempt: int
    job: JobRecord
    directory: str
    names: tuple[str, ...]
    settled: frozenset[str] = frozenset()  # paths an earlier attempt committed (a resumed pass skips them)


@dataclass(frozen=True, slots=True)
class Settled:
    """One file a pass finished: done (with its index row), failed (stage, reason) or skipped."""

    path: str
    status: str  # "done" | "failed" | "skipped"
    stage: str | None = None
    reason: str | None = None
    row: IndexedFile | None = None


_JOB_COLUMNS = (
    "id, collection, root, options, state, error, created_at, started_at, finished_at, idempotency_key"
)


async def _exists(conn: AsyncConnection[tuple[Any, ...]], table: str) -> bool:
    row = await (await conn.execute("SELECT to_regclass(%s)", (table,))).fetchone()
    return row is not None and row[0] is not None


_JOINED_JOB_COLUMNS = ", ".join("j." + c for c in _JOB_COLUMNS.split(", "))


async def _stale(conn: AsyncConnection[Any], claim: Claim) -> str | None:
    """Lock the claim's partition row (until the transaction ends); None when the claim owns it (its attempt
    is the current one and it runs), else why not."""
    row = await (
        await conn.execute(
            "SELECT attempt, state FROM archivist_partitions WHERE id = %s FOR UPDATE", (claim.id,)
        )
    ).fetchone()
    if row is not None and row[0] == claim.attempt and row[1] == "running":
        return None
    attempt, state = (None, None) if row is None else row
    return f"partition {claim.id}: attempt {claim.attempt} is stale (now {attempt}, {state})"


def _job(row: tuple[Any, ...]) -> JobRecord:
    return JobRecord(*row)


class ClusterStore:
    def __init__(self, pool: AsyncConnectionPool[ClosingConnection[tuple[Any, ...]]]) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, max_size: int = 8) -> ClusterStore:
        pool: AsyncConnectionPool[ClosingConnection[tuple[Any, ...]]] = AsyncConnectionPool(
            url,
            connection_class=ClosingConnection,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True},
        )  # no check per checkout: one from before a restart fails, is dropped, and `reconnecting` retries
        await pool.open(wait=True, timeout=30)
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def apply_schema(self, apply_queue_schema: Any) -> None:
        """Our tables and procrastinate's, once, whoever starts first (`apply_queue_schema`: the app's
        `schema_manager.apply_schema_async`, run only where its tables do not exist yet)."""
        async with self._pool.connection() as conn:
            if await _exists(conn, "archivist_file_index") and await _exists(conn, "procrastinate_jobs"):
                return  # DDL on a live database would take table locks against running transactions
            await conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
            try:
                if not await _exists(conn, "archivist_file_index"):
                    await conn.execute(TABLES)
                if not await _exists(conn, "procrastinate_jobs"):
                    await apply_queue_schema()
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))

    # -- jobs ------------------------------------------------------------------------------------------------

    @reconnecting
    async def insert_job(self, job: JobRecord) -> JobRecord:
        """Insert; with an idempotency key already used, the job that has it."""
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"INSERT INTO archivist_jobs ({_JOB_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                    f"ON CONFLICT (idempotency_key) DO NOTHING RETURNING {_JOB_COLUMNS}",
                    (
                        job.id,
                        job.collection,
                        job.root,
                        Jsonb(job.options),
                        job.state,
                        job.error,
                        job.created_at,
                        job.started_at,
                        job.finished_at,
                        job.idempotency_key,
                    ),
                )
            ).fetchone()
            if row is None:
                row = await (
                    await conn.execute(
                        f"SELECT {_JOB_COLUMNS} FROM archivist_jobs WHERE idempotency_key = %s",
                        (job.idempotency_key,),
                    )
                ).fetchone()
            assert row is not None  # inserted, or found by the unique key
            return _job(row)

    @reconnecting
    async def job(self, job_id: str) -> JobRecord | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_JOB_COLUMNS} FROM archivist_jobs WHERE id = %s", (job_id,))
            row = await cur.fetchone()
        return None if row is None else _job(row)

    @reconnecting
    async def active_job(self, root: str, collection: str) -> JobRecord | None:
        """A job on this root and collection that has not ended (a second submit returns it)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM archivist_jobs WHERE root = %s AND collection = %s "
                "AND state IN ('queued', 'running', 'paused') ORDER BY created_at LIMIT 1",
                (root, collection),
            )
            row = await cur.fetchone()
        return None if row is None else _job(row)

    @reconnecting
    async def jobs(self) -> list[JobRecord]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_JOB_COLUMNS} FROM archivist_jobs ORDER BY created_at")
            return [_job(row) for row in await cur.fetchall()]

    @reconnecting
    async def job_states(self, job_ids: Iterable[str]) -> dict[str, str]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, state FROM archivist_jobs WHERE id = ANY(%s)", (list(job_ids),)
            )
            return {row[0]: row[1] for row in await cur.fetchall()}

    @reconnecting
    async def set_state(
        self, job_id: str, target: str, allowed_from: Iterable[str], error: str | None = None
    ) -> JobRecord | None:
        """Move a job to `target` if it is in one of `allowed_from` (None: it was not). Pausing or
        cancelling parks/cancels its queued partitions in the same transaction; resuming queues its paused
        ones again (the caller defers a task for each: `queued_partitions`)."""
        async with self._pool.connection() as conn, conn.transaction():
            return await self._set_state(conn, job_id, target, allowed_from, error)

    @reconnecting
    async def fail_owned(self, claim: Claim, error: str) -> bool:
        """Fail the claim's job for an error of its pass, if the claim still owns its partition (the current
        attempt, running): a pass taken over meanwhile (its worker frozen or cut off past the stall time) has
        no say on the job any more. False: it did not own it, nothing changed."""
        async with self._pool.connection() as conn, conn.transaction():
            if await _stale(conn, claim) is not None:
                return False
            await self._set_state(conn, claim.job.id, "failed", ("running", "paused"), error)
            return True

    async def _set_state(
        self,
        conn: AsyncConnection[Any],
        job_id: str,
        target: str,
        allowed_from: Iterable[str],
        error: str | None,
    ) -> JobRecord | None:
        now = time.time()
        ended = target in ("completed", "failed", "cancelled")
        row = await (
            await conn.execute(
                "UPDATE archivist_jobs SET state = %s, error = coalesce(%s, error), "
                "started_at = CASE WHEN %s = 'running' THEN coalesce(started_at, %s) "
                "ELSE started_at END, "
                "finished_at = CASE WHEN %s THEN %s ELSE finished_at END "
                f"WHERE id = %s AND state = ANY(%s) RETURNING {_JOB_COLUMNS}",
                (target, error, target, now, ended, now, job_id, list(allowed_from)),
            )
        ).fetchone()
        if row is None:
            return None
        if target == "cancelled" or target == "failed":
            await conn.execute(
                "UPDATE archivist_partitions SET state = 'cancelled', updated_at = now() "
                "WHERE job_id = %s AND state IN ('queued', 'paused')",
                (job_id,),
            )
            await conn.execute(
                "UPDATE archivist_scans SET state = 'cancelled' WHERE job_id = %s AND state = 'queued'",
                (job_id,),
            )
        elif target == "running":
            await conn.execute(
                "UPDATE archivist_partitions SET state = 'queued', updated_at = now() "
                "WHERE job_id = %s AND state = 'paused'",
                (job_id,),
            )
        return _job(row)

    @reconnecting
    async def maybe_complete(self, job_id: str) -> bool:
        """Complete a running job with nothing left to scan or process (True: this call completed it)."""
        async with self._pool.connection() as conn:  # one statement: atomic alone
            cur = await conn.execute(
                "UPDATE archivist_jobs SET state = 'completed', finished_at = %s WHERE id = %s "
                "AND state = 'running' AND NOT EXISTS (SELECT 1 FROM archivist_scans "
                "  WHERE job_id = %s AND state = 'queued') "
                "AND NOT EXISTS (SELECT 1 FROM archivist_partitions WHERE job_id = %s "
                "  AND state = ANY(%s)) RETURNING id",
                (time.time(), job_id, job_id, job_id, list(ACTIVE_PARTITION)),
            )
            return await cur.fetchone() is not None

    # -- scans -----------------------------------------------------------------------------------------------

    @reconnecting
    async def add_scans(self, job_id: str, directories: list[str]) -> list[str]:
        """Record scans of these directories; returns the directories whose scan is queued (new or not yet
        done: a task may be deferred for each again, procrastinate's queueing lock keeps one)."""
        if not directories:
            return []
        ids = [scan_id(job_id, d) for d in directories]
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO archivist_scans (id, job_id, directory) "
                "SELECT i, %s, d FROM unnest(%s::uuid[], %s::text[]) AS t(i, d) ON CONFLICT DO NOTHING",
                (job_id, ids, directories),
            )
            cur = await conn.execute(
                "SELECT directory FROM archivist_scans WHERE id = ANY(%s) AND state = 'queued'", (ids,)
            )
            return [row[0] for row in await cur.fetchall()]

    @reconnecting
    async def finish_scan(
        self,
        job_id: str,
        directory: str,
        partitions: list[Partition],
        subdirectories: list[str],
        unchanged: int,
        failures: list[Settled],
    ) -> tuple[list[uuid.UUID], list[str]] | None:
        """A scan task's result in one transaction: its partitions, its subdirectories' scans, its counts
        and the failures it met. Returns the partitions and subdirectories still to be deferred (all of this
        scan's queued ones: a scan that ran twice defers again, harmlessly); None: the job is not running."""
        sid = scan_id(job_id, directory)
        discovered = unchanged + sum(len(p.names) for p in partitions) + len(failures)
        async with self._pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "SELECT s.state, j.state FROM archivist_scans s JOIN archivist_jobs j ON j.id = s.job_id "
                    "WHERE s.id = %s FOR UPDATE OF s",
                    (sid,),
                )
            ).fetchone()
            if row is None or row[1] not in ("running", "paused"):
                return None
            pids = [partition_id(job_id, directory, p.page) for p in partitions]
            if row[0] == "queued":
                state = "paused" if row[1] == "paused" else "queued"
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO archivist_partitions (id, job_id, directory, page, names, files, state) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        [
                            (pid, job_id, directory, p.page, list(p.names), len(p.names), state)
                            for pid, p in zip(pids, partitions, strict=True)
                        ],
                    )
                await self._settle(conn, job_id, None, failures)
                await conn.execute(
                    "UPDATE archivist_scans SET state = 'done', discovered = %s, unchanged = %s "
                    "WHERE id = %s",
                    (discovered, unchanged, sid),
                )
            subs = [scan_id(job_id, d) for d in subdirectories]
            if subs:
                await conn.execute(
                    "INSERT INTO archivist_scans (id, job_id, directory) "
                    "SELECT i, %s, d FROM unnest(%s::uuid[], %s::text[]) AS t(i, d) ON CONFLICT DO NOTHING",
                    (job_id, subs, subdirectories),
                )
            queued = await (
                await conn.execute(
                    "SELECT id FROM archivist_partitions WHERE id = ANY(%s) AND state = 'queued'", (pids,)
                )
            ).fetchall()
            dirs = await (
                await conn.execute(
                    "SELECT directory FROM archivist_scans WHERE id = ANY(%s) AND state = 'queued'", (subs,)
                )
            ).fetchall()
            return [r[0] for r in queued], [r[0] for r in dirs]

    @reconnecting
    async def index_rows(self, collection: str, directory: str) -> dict[str, IndexedFile]:
        """The shared index's rows of one directory."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT name, size, mtime_ns, inode, content_hash, chunks FROM archivist_file_index "
                "WHERE collection = %s AND directory = %s",
                (collection, directory),
            )
            return {
                r[0]: IndexedFile(directory, r[0], r[1], r[2], r[3], r[4], r[5]) for r in await cur.fetchall()
            }

    # -- partitions ------------------------------------------------------------------------------------------

    @reconnecting
    async def claim(self, pid: uuid.UUID, owner: str, task_id: int | None) -> Claim | None:
        """Own a partition (its attempt + 1) if its job runs and it is not finished; None otherwise (a
        queued partition of a paused job is parked: resume queues it again)."""
        # Single statements, each atomic alone (autocommit): a claim is a few round trips (bench_distributed's
        # claims/s), and what a resumed partition already settled comes back with it.
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute(
                    "UPDATE archivist_partitions p SET attempt = p.attempt + 1, owner = %s, task_id = %s, "
                    "state = 'running', updated_at = now() FROM archivist_jobs j "
                    "WHERE p.id = %s AND j.id = p.job_id AND p.state IN ('queued', 'running') "
                    "AND j.state = 'running' "
                    "RETURNING p.attempt, p.directory, p.names, (SELECT coalesce(array_agg(r.path), '{}') "
                    "  FROM archivist_file_results r WHERE r.job_id = p.job_id AND r.partition_id = p.id), "
                    f"{_JOINED_JOB_COLUMNS}",
                    (owner, task_id, pid),
                )
            ).fetchone()
            if row is None:
                await conn.execute(
                    "UPDATE archivist_partitions p SET state = 'paused', updated_at = now() "
                    "FROM archivist_jobs j WHERE p.id = %s AND j.id = p.job_id AND p.state = 'queued' "
                    "AND j.state = 'paused'",
                    (pid,),
                )
                return None
        return Claim(pid, row[0], _job(row[4:]), row[1], tuple(row[2]), frozenset(row[3]))

    @reconnecting
    async def done_paths(self, job_id: str, pid: uuid.UUID) -> set[str]:
        """Paths of this partition a checkpoint already settled (a resumed partition skips them)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT path FROM archivist_file_results WHERE job_id = %s AND partition_id = %s",
                (job_id, pid),
            )
            return {r[0] for r in await cur.fetchall()}

    @reconnecting
    async def checkpoint(
        self,
        claim: Claim,
        settled: list[Settled],
        counters: dict[str, int],
        final: bool,
    ) -> None:
        """Commit what a pass settled, under its ownership token; raises `StaleCheckpoint` when the partition
        has a newer attempt or is no longer running (nothing of this call lands)."""
        async with self._pool.connection() as conn, conn.transaction():
            if (stale := await _stale(conn, claim)) is not None:
                raise StaleCheckpoint(stale)
            done, failed = await self._settle(conn, claim.job.id, claim.id, settled)
            rows = [s.row for s in settled if s.row is not None and s.status == "done"]
            if rows:
                await conn.execute(
                    "INSERT INTO archivist_file_index AS x "
                    "(collection, directory, name, size, mtime_ns, inode, content_hash, chunks) "
                    "SELECT %s, d, n, s, m, i, h, c FROM unnest(%s::text[], %s::text[], %s::bigint[], "
                    "  %s::bigint[], %s::bigint[], %s::text[], %s::int[]) AS t(d, n, s, m, i, h, c) "
                    "ON CONFLICT (collection, directory, name) DO UPDATE SET size = excluded.size, "
                    "mtime_ns = excluded.mtime_ns, inode = excluded.inode, "
                    "content_hash = excluded.content_hash, chunks = excluded.chunks",
                    (
                        claim.job.physical,
                        [r.directory for r in rows],
                        [r.name for r in rows],
                        [r.size for r in rows],
                        [r.mtime_ns for r in rows],
                        [r.inode for r in rows],
                        [r.content_hash for r in rows],
                        [r.chunks for r in rows],
                    ),
                )
            await conn.execute(
                "UPDATE archivist_partitions SET done = done + %s, failed = failed + %s, "
                "counters = (SELECT coalesce(jsonb_object_agg(k, coalesce((counters ->> k)::bigint, 0) "
                "  + coalesce((%s::jsonb ->> k)::bigint, 0)), '{}'::jsonb) "
                "  FROM jsonb_object_keys(counters || %s::jsonb) AS k), "
                "state = CASE WHEN %s THEN 'done' ELSE state END, updated_at = now() WHERE id = %s",
                (done, failed, Jsonb(counters), Jsonb(counters), final, claim.id),
            )

    async def _settle(
        self,
        conn: AsyncConnection[tuple[Any, ...]],
        job_id: str,
        pid: uuid.UUID | None,
        settled: list[Settled],
    ) -> tuple[int, int]:
        """Insert results not recorded yet; (settled now, failed now) among them."""
        if not settled:
            return 0, 0
        now = time.time()
        cur = await conn.execute(
            "INSERT INTO archivist_file_results (job_id, path, partition_id, status, stage, reason, at) "
            "SELECT %s, p, %s, s, st, r, %s FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
            "AS t(p, s, st, r) ON CONFLICT DO NOTHING RETURNING status",
            (
                job_id,
                pid,
                now,
                [s.path for s in settled],
                [s.status for s in settled],
                [s.stage for s in settled],
                [s.reason for s in settled],
            ),
        )
        statuses = [r[0] for r in await cur.fetchall()]
        return len(statuses), sum(1 for s in statuses if s == "failed")

    @reconnecting
    async def release(self, claim: Claim) -> str | None:
        """A pass stopped by a pause or a cancel: the partition is parked (paused), cancelled, or queued
        again when the job runs once more meanwhile. Returns that state; None if another attempt owns it."""
        async with self._pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "UPDATE archivist_partitions p SET state = CASE j.state WHEN 'paused' THEN 'paused' "
                    "  WHEN 'running' THEN 'queued' ELSE 'cancelled' END, updated_at = now() "
                    "FROM archivist_jobs j WHERE p.id = %s AND j.id = p.job_id AND p.attempt = %s "
                    "AND p.state = 'running' RETURNING p.state",
                    (claim.id, claim.attempt),
                )
            ).fetchone()
            return None if row is None else str(row[0])

    @reconnecting
    async def queued_partitions(self, job_id: str) -> list[uuid.UUID]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM archivist_partitions WHERE job_id = %s AND state = 'queued'", (job_id,)
            )
            return [r[0] for r in await cur.fetchall()]

    @reconnecting
    async def queued_scans(self, job_id: str) -> list[str]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT directory FROM archivist_scans WHERE job_id = %s AND state = 'queued'", (job_id,)
            )
            return [r[0] for r in await cur.fetchall()]

    @reconnecting
    async def orphans(self, stall_s: float) -> list[tuple[uuid.UUID, int | None, str | None]]:
        """Running partitions whose worker is silent for `stall_s` (or gone from procrastinate's workers):
        (partition, its task, that task's status now). The reaper retries a task still `doing` and
        defers a new one otherwise (a stale worker finishing marked it failed or succeeded meanwhile)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT p.id, p.task_id, pj.status::text FROM archivist_partitions p "
                "JOIN archivist_jobs j ON j.id = p.job_id AND j.state = 'running' "
                "LEFT JOIN procrastinate_jobs pj ON pj.id = p.task_id "
                "LEFT JOIN procrastinate_workers w ON w.id = pj.worker_id "
                "WHERE p.state = 'running' AND p.updated_at < now() - make_interval(secs => %s) "
                "AND (pj.id IS NULL OR pj.status <> 'doing' OR w.id IS NULL "
                "     OR w.last_heartbeat < now() - make_interval(secs => %s))",
                (stall_s, stall_s),
            )
            return [(r[0], r[1], r[2]) for r in await cur.fetchall()]

    # -- what the API shows ----------------------------------------------------------------------------------

    @reconnecting
    async def progress(self, job_id: str) -> dict[str, Any]:
        """Counts summed over the job's scans and partitions: files seen, settled (done), failed, left."""
        async with self._pool.connection() as conn:
            scans = await (
                await conn.execute(
                    "SELECT coalesce(sum(discovered), 0), coalesce(sum(unchanged), 0), "
                    "count(*) FILTER (WHERE state = 'queued'), count(*) FROM archivist_scans "
                    "WHERE job_id = %s",
                    (job_id,),
                )
            ).fetchone()
            parts = await (
                await conn.execute(
                    "SELECT coalesce(sum(done), 0), coalesce(sum(failed), 0), "
                    "count(*) FILTER (WHERE state = 'done'), count(*), "
                    "count(*) FILTER (WHERE state = 'running') FROM archivist_partitions WHERE job_id = %s",
                    (job_id,),
                )
            ).fetchone()
            dir_failed = await (
                await conn.execute(
                    "SELECT count(*) FROM archivist_file_results WHERE job_id = %s AND partition_id IS NULL",
                    (job_id,),
                )
            ).fetchone()
            sums = await (
                await conn.execute(
                    "SELECT k, sum(v::bigint) FROM archivist_partitions, "
                    "jsonb_each_text(counters) AS e(k, v) "
                    "WHERE job_id = %s GROUP BY k",
                    (job_id,),
                )
            ).fetchall()
        assert scans is not None and parts is not None and dir_failed is not None  # aggregates: one row each
        counters = {str(k): int(v) for k, v in sums}
        counters.update(
            discovered=int(scans[0]),
            unchanged=int(scans[1]),
            done=int(scans[1]) + int(parts[0]) + int(dir_failed[0]),
            failed=int(parts[1]) + int(dir_failed[0]),
        )
        return {
            "counters": counters,
            "scan_complete": int(scans[2]) == 0 and int(scans[3]) > 0,
            "partitions": {"done": int(parts[2]), "total": int(parts[3]), "running": int(parts[4])},
        }

    @reconnecting
    async def errors(self, job_id: str, offset: int, limit: int) -> tuple[int, list[tuple[Any, ...]]]:
        async with self._pool.connection() as conn:
            total = await (
                await conn.execute(
                    "SELECT count(*) FROM archivist_file_results WHERE job_id = %s AND status = 'failed'",
                    (job_id,),
                )
            ).fetchone()
            cur = await conn.execute(
                "SELECT path, stage, reason, at FROM archivist_file_results WHERE job_id = %s "
                "AND status = 'failed' ORDER BY seq OFFSET %s LIMIT %s",
                (job_id, offset, limit),
            )
            return (0 if total is None else int(total[0])), list(await cur.fetchall())
