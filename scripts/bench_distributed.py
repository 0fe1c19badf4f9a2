"""The distributed mode's benchmark (issue 18): how ingest scales with `archivist worker`s, how long a killed
worker's partitions wait for a new owner, and how fast workers go through partitions with nothing to do.

    python scripts/bench_distributed.py            # ~20 minutes on 2 shared cores
    python scripts/bench_distributed.py --quick    # a smoke run (~2 minutes): every phase, small sizes
    python scripts/bench_distributed.py --phases claims --profile   # + where the claims' workers spend

The cluster is the tests' (tests/distributed/test_workers.py): a real PostgreSQL child process
(tests/support/postgres.py), the Qdrant stand-in server (scripts/qdrant_standin.py), worker processes
(`python -m orchestrator.cli worker`, tests/support/cluster.py) with DATA_DIRs of their own, the API in this
process (running_orchestrator with DATABASE_URL and QDRANT_URL). The ML service is `--replicas` stand-ins of
fixed latency (scripts/ml_standin.py: every request sleeps `--latency-ms`, costs no CPU), listed to every
node in ML_SERVICE_URLS: the 2 CPUs are not the limit of the ML side, so what scales or not is the cluster.

Phases (each run: a fresh database, a fresh collection, fresh worker DATA_DIRs; workers started and waited
for (`worker_start` logged) before the job is submitted, so start-up is not timed):
1. throughput: one-passage .txt documents, PARTITION_FILES=`--partition-files`, WORKER_SLOTS=`--slots`,
   at least 4 partitions per slot of the largest worker count; for n in `--workers` (1,2,3), `--repeats`
   rounds alternating 1,2,3,1,2,3,...; files/s is the API's (files done / (finished_at - started_at): from
   the submit to the last partition's completion); the median per n. A pass has at most MEDIA_IN_FLIGHT
   (2) documents between decoding and inference (a document holds a media slot like a decoded video), so
   ML requests carry ~1 text (items_per_request) and a slot does ~2 files per ML latency: with 300 ms,
   ~13 files/s per worker at most, whatever `--infer-batch` allows.
2. takeover: the same job with the largest worker count; the first worker is killed (SIGKILL) in the middle
   of a partition (a fifth of its files committed) after 3 partitions are done; takeover_s = from the kill
   until every partition it owned runs under a new attempt (or is done). Worker heartbeat and stall time
   are the defaults (5 s, 15 s) unless given.
   Then the job must complete with every file's point in the store (points_expected vs points_found) and
   duplicate_ml_items = texts the ML stand-ins embedded more than once (items served - distinct texts).
3. claims: `--claims` partitions with no names (nothing to process) of a running job, inserted with SQL and
   deferred as `archivist.partition` tasks (the very jobs `tasks.defer_partition` defers: same task,
   queue and queueing lock; in one batch so that deferring is not what is timed); claims_per_s = partitions
   / (the job's completion - the deferral's commit) with the largest worker count. Each such task is a
   whole partition pass: procrastinate's fetch, claim, done_paths, the final checkpoint, maybe_complete,
   procrastinate's finish (delete) — the fixed cost every partition pays. CPU milliseconds per claim
   (workers, PostgreSQL) and PostgreSQL transactions per claim (pg_stat_database, every client) say why.

A human table, then one JSON line (the last). CPU seconds per process group are printed per run (workers,
PostgreSQL, the Qdrant stand-in, the ML stand-ins, this process = API + bench): the machine is shared, so
the load average at start and end is part of the result.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psycopg

from orchestrator.config import Settings
from orchestrator.distributed.ledger import redelivery_bound
from orchestrator.distributed.store import ClusterStore, JobRecord, partition_id
from orchestrator.distributed.tasks import PARTITION_TASK, QUEUE, queue_app
from orchestrator.logs import configure_logging
from orchestrator.pipeline.negotiate import pipeline_config
from scripts.ml_standin import running_ml_standins
from tests.support.cluster import WorkerProcess, make_documents, point_ids, start_worker
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator
from tests.support.postgres import PostgresServer, running_postgres
from tests.support.qdrant_server import running_qdrant_standin

T = TypeVar("T")

THROUGHPUT_COLUMNS = [
    "run", "workers", "files", "partitions", "elapsed_s", "files_per_s", "wall_s", "ml_requests",
    "items_per_request", "duplicates", "cpu_workers", "cpu_postgres", "cpu_qdrant", "cpu_ml", "cpu_api",
]  # fmt: skip
PHASES = ("throughput", "takeover", "claims")
TARGETS = {"scale_2_vs_1": 1.8, "takeover_s": 30.0, "claims_per_s": 200.0}
_POLL_S = 0.1  # SQL polls (the takeover's resolution)
_FOLLOW_S = 0.5  # GET /jobs/{id} polls: the API's own numbers time the job, this only sees its end
_START_TIMEOUT_S = 180.0  # a worker imports the orchestrator: seconds on idle cores, more on busy ones
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PROFILE_ENV = "ARCHIVIST_PROFILE_WORKERS"  # tests/support/cluster.py: each worker under cProfile


@dataclass(frozen=True, slots=True)
class Plan:
    """What one invocation runs (from the command line; --quick shrinks it)."""

    workers: tuple[int, ...]
    repeats: int
    directories: int
    per_directory: int
    partition_files: int
    slots: int
    replicas: int
    latency_ms: float
    image_batch: int
    claims: int
    heartbeat_s: float | None
    stall_s: float | None
    job_timeout_s: float
    profile: bool
    phases: frozenset[str] = frozenset(PHASES)
    media_in_flight: int | None = None

    @property
    def files(self) -> int:
        return self.directories * self.per_directory

    @property
    def partitions(self) -> int:
        return self.directories * -(-self.per_directory // self.partition_files)


@dataclass(slots=True)
class Bench:
    """What every run shares: the servers, the documents and where runs keep their files."""

    plan: Plan
    base: Path
    postgres: PostgresServer
    qdrant_url: str
    ml_urls: list[str]
    media: Path  # ALLOWED_ROOTS
    docs: Path
    expected: dict[str, str]  # path -> point id
    qdrant_pid: int
    ml_pids: list[int]
    runs: int = 0


@dataclass(slots=True)
class Run:
    """One run's cluster: its database, API and workers."""

    name: str
    database_url: str
    api: RunningOrchestrator
    workers: list[WorkerProcess]
    conn: psycopg.AsyncConnection[tuple[Any, ...]]

    async def submit(self, root: Path, collection: str) -> str:
        response = await self.api.client.post("/jobs", json={"path": str(root), "collection": collection})
        if response.status_code not in (200, 201, 202):
            raise RuntimeError(f"submit refused: {response.status_code} {response.text}")
        job_id: str = response.json()["job_id"]
        return job_id

    async def status(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self.api.client.get(f"/jobs/{job_id}")).json()
        return body

    async def follow(self, job_id: str, timeout_s: float) -> dict[str, Any]:
        async def ended() -> dict[str, Any] | None:
            status = await self.status(job_id)
            return status if status["state"] not in ("queued", "running", "paused") else None

        return await wait_for(ended, timeout_s, f"job {job_id} to end", self, _FOLLOW_S)

    async def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = await self.conn.execute(sql, params)
        return list(await cur.fetchall())

    def logs(self) -> str:
        return "\n\n".join(f"--- {w.name} (pid {w.pid})\n{w.tail(20)}" for w in self.workers)


@dataclass(slots=True)
class CpuMeter:
    """CPU seconds of the cluster's processes between two marks, per group."""

    groups: dict[str, Callable[[], float]]
    start: dict[str, float] = field(default_factory=dict)

    def mark(self) -> None:
        self.start = {name: read() for name, read in self.groups.items()}

    def spent(self) -> dict[str, float]:
        return {name: round(read() - self.start.get(name, 0.0), 1) for name, read in self.groups.items()}


# -- processes' CPU (/proc) ---------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def cpu_s(pid: int, children: bool = False) -> float:
    """utime + stime of a live process (+ its reaped children's, e.g. PostgreSQL's ended backends)."""
    fields = _stat_fields(pid)
    if len(fields) < 15:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _CLK_TCK


def tree_cpu_s(pid: int | None) -> float:
    """A server and its live children (PostgreSQL: the postmaster and its backends)."""
    if pid is None:
        return 0.0
    total = cpu_s(pid, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if len(fields) > 1 and fields[1] == str(pid):
                total += cpu_s(int(entry.name))
    return total


def self_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def meter(bench: Bench, workers: list[WorkerProcess]) -> CpuMeter:
    return CpuMeter(
        {
            "cpu_workers": lambda: sum(tree_cpu_s(w.pid) for w in workers),  # with their decode pools
            "cpu_postgres": lambda: tree_cpu_s(bench.postgres.pid),
            "cpu_qdrant": lambda: cpu_s(bench.qdrant_pid),
            "cpu_ml": lambda: sum(cpu_s(p) for p in bench.ml_pids),
            "cpu_api": self_cpu_s,  # this process: the API and the bench's polling
        }
    )


# -- the cluster --------------------------------------------------------------------------------------------


async def wait_for(
    predicate: Callable[[], Awaitable[T | None]],
    timeout_s: float,
    what: str,
    run: Run | None = None,
    poll_s: float = _POLL_S,
) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout_s:.0f}s\n{run.logs() if run else ''}")
        await asyncio.sleep(poll_s)


def worker_env(bench: Bench, database_url: str) -> dict[str, str]:
    plan = bench.plan
    env = {
        "DATABASE_URL": database_url,
        "QDRANT_URL": bench.qdrant_url,
        "ML_SERVICE_URLS": ",".join(bench.ml_urls),
        "ALLOWED_ROOTS": str(bench.media),
        "WORKER_SLOTS": str(plan.slots),
        "PARTITION_FILES": str(plan.partition_files),
        "DECODE_WORKERS": "1",
        "LOG_JSON": "true",
    }
    if plan.heartbeat_s is not None:
        env["WORKER_HEARTBEAT_S"] = str(plan.heartbeat_s)
    if plan.stall_s is not None:
        env["WORKER_STALL_S"] = str(plan.stall_s)
    if plan.media_in_flight is not None:
        env["MEDIA_IN_FLIGHT"] = str(plan.media_in_flight)
    return env


@asynccontextmanager
async def cluster(bench: Bench, label: str, workers: int, profile: bool = False) -> AsyncIterator[Run]:
    """A fresh database, the API on it, `workers` workers started (and waited for); all stopped on exit."""
    bench.runs += 1
    name = f"r{bench.runs:02d}_{label}"
    run_dir = bench.base / name
    database_url = await asyncio.to_thread(bench.postgres.create_database, name)
    settings = Settings(
        data_dir=run_dir / "api",
        ml_service_urls=",".join(bench.ml_urls),
        allowed_roots=str(bench.media),
        database_url=database_url,
        qdrant_url=bench.qdrant_url,
    )
    env = worker_env(bench, database_url)
    started: list[WorkerProcess] = []
    async with AsyncExitStack() as stack:
        api = await stack.enter_async_context(running_orchestrator(settings))
        conn = await stack.enter_async_context(
            await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        )
        run = Run(name, database_url, api, started, conn)
        stack.push_async_callback(_stop_workers, started)
        outer = os.environ.get(_PROFILE_ENV)
        if profile:
            os.environ[_PROFILE_ENV] = "1"  # read by start_worker in this process
        try:
            for i in range(workers):
                started.append(start_worker(f"w{i}", run_dir / f"w{i}", env))
        finally:
            if outer is None:
                os.environ.pop(_PROFILE_ENV, None)
            else:
                os.environ[_PROFILE_ENV] = outer

        async def all_started() -> bool:
            for w in started:
                if w.process.poll() is not None:
                    raise RuntimeError(f"worker {w.name} exited ({w.process.returncode}):\n{w.tail()}")
            return all(await asyncio.to_thread(lambda: [bool(w.events("worker_start")) for w in started]))

        await wait_for(all_started, _START_TIMEOUT_S, "every worker started", run)
        yield run


async def _stop_workers(workers: list[WorkerProcess]) -> None:
    await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))


async def reset_ml(bench: Bench) -> None:
    async with httpx.AsyncClient(timeout=10.0) as client:
        for url in bench.ml_urls:
            (await client.post(f"{url}/stats/reset")).raise_for_status()


async def ml_served(bench: Bench) -> tuple[int, int, int]:
    """(requests, items, distinct texts) over every replica since the last reset: a text embedded by two
    replicas counts once in distinct."""
    requests = items = 0
    digests: set[str] = set()
    async with httpx.AsyncClient(timeout=30.0) as client:
        for url in bench.ml_urls:
            stats = (await client.get(f"{url}/stats")).json()
            requests += int(stats["requests"])
            items += int(stats["items"])
            digests.update(stats["digests"])
    return requests, items, len(digests)


def check_completed(status: dict[str, Any], files: int, run: Run) -> None:
    counters = status["counters"]
    if status["state"] != "completed" or counters["done"] != files or counters["failed"]:
        raise RuntimeError(
            f"{run.name}: job ended {status['state']} with done {counters['done']}/{files}, "
            f"failed {counters['failed']}: {status.get('error')} {status.get('errors')}\n{run.logs()}"
        )


# -- the phases ---------------------------------------------------------------------------------------------


async def throughput_run(bench: Bench, workers: int, repeat: int) -> dict[str, Any]:
    plan = bench.plan
    async with cluster(bench, f"n{workers}_{repeat}", workers) as run:
        collection = f"tp_{run.name}"
        await reset_ml(bench)
        cpu = meter(bench, run.workers)
        cpu.mark()
        wall = time.perf_counter()
        job_id = await run.submit(bench.docs, collection)
        status = await run.follow(job_id, plan.job_timeout_s)
        wall = time.perf_counter() - wall
        spent = cpu.spent()
        check_completed(status, plan.files, run)
        requests, items, distinct = await ml_served(bench)
        found = await point_ids(bench.qdrant_url, collection)
        missing = len(set(bench.expected.values()) - found)
        if missing:
            raise RuntimeError(f"{run.name}: {missing} points missing in {collection}")
        return {
            "run": run.name,
            "workers": workers,
            "files": plan.files,
            "partitions": status["partitions"]["total"],
            "elapsed_s": status["elapsed_s"],
            "files_per_s": status["files_per_s"],
            "wall_s": round(wall, 2),
            "ml_requests": requests,
            "items_per_request": round(items / requests, 2) if requests else 0.0,
            "duplicates": items - distinct,
            "cpu_s": spent,
        }


async def takeover_run(bench: Bench) -> dict[str, Any]:
    plan = bench.plan
    workers = max(plan.workers)
    if workers < 2:
        raise SystemExit("the takeover phase needs at least 2 workers (--workers)")
    async with cluster(bench, "takeover", workers) as run:
        collection = f"to_{run.name}"
        await reset_ml(bench)
        job_id = await run.submit(bench.docs, collection)
        victim = run.workers[0]
        owner = f"%:{victim.pid}"

        async def victim_busy() -> bool:
            """3 partitions done, and the victim is in the middle of one: a fifth of its files committed
            (so files of it are in flight: decoded, at the ML service, waiting for their upsert)."""
            (done, mine), *_ = await run.rows(
                "SELECT count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state = 'running' "
                "AND owner LIKE %s AND done * 5 >= files AND done < files) "
                "FROM archivist_partitions WHERE job_id = %s",
                (owner, job_id),
            )
            return int(done) >= 3 and int(mine) > 0

        await wait_for(victim_busy, plan.job_timeout_s, "the victim in the middle of a partition", run)
        await asyncio.to_thread(victim.kill)
        killed = time.perf_counter()
        # Read after the kill (a dead worker claims nothing more): what it owned when it died.
        owned = await run.rows(
            "SELECT id, attempt FROM archivist_partitions WHERE job_id = %s AND state = 'running' "
            "AND owner LIKE %s",
            (job_id, owner),
        )
        attempts = {pid: attempt for pid, attempt in owned}
        taken: dict[uuid.UUID, float] = {}

        async def all_taken() -> bool:
            rows = await run.rows(
                "SELECT id, state, attempt FROM archivist_partitions WHERE id = ANY(%s)", (list(attempts),)
            )
            now = time.perf_counter()
            for pid, state, attempt in rows:
                if pid not in taken and (state == "done" or attempt > attempts[pid]):
                    taken[pid] = now - killed
            return len(taken) == len(attempts)

        await wait_for(all_taken, plan.job_timeout_s, "the killed worker's partitions taken over", run)
        takeover_s = max(taken.values(), default=0.0)
        status = await run.follow(job_id, plan.job_timeout_s)
        check_completed(status, plan.files, run)
        requests, items, distinct = await ml_served(bench)
        found = await point_ids(bench.qdrant_url, collection)
        caps = await run.api.services.ml.capabilities()
        bound = redelivery_bound(pipeline_config(run.api.services.settings, caps, {}), plan.slots)
        reattempts = await run.rows(
            "SELECT count(*) FROM archivist_partitions WHERE job_id = %s AND attempt > 1", (job_id,)
        )
        return {
            "run": run.name,
            "workers": workers,
            "victim_partitions": len(attempts),
            "takeover_s": round(takeover_s, 2),
            "takeover_each_s": sorted(round(s, 2) for s in taken.values()),
            "heartbeat_s": plan.heartbeat_s or Settings.model_fields["worker_heartbeat_s"].default,
            "stall_s": plan.stall_s or Settings.model_fields["worker_stall_s"].default,
            "partitions_reattempted": int(reattempts[0][0]),
            "elapsed_s": status["elapsed_s"],
            "points_expected": len(bench.expected),
            "points_found": len(found),
            "points_missing": len(set(bench.expected.values()) - found),
            "ml_items": items,
            "ml_requests": requests,
            "duplicate_ml_items": items - distinct,
            "redelivery_bound": bound,
        }


async def claims_run(bench: Bench) -> dict[str, Any]:
    plan = bench.plan
    workers = max(plan.workers)
    empty = bench.media / "empty"
    empty.mkdir(exist_ok=True)
    async with cluster(bench, "claims", workers, profile=plan.profile) as run:
        store = await ClusterStore.open(run.database_url, max_size=1)
        try:
            now = time.time()
            job = await store.insert_job(
                JobRecord(
                    id=uuid.uuid4().hex,
                    collection="claims",
                    root=str(empty),
                    options={"physical": "claims"},
                    state="running",
                    error=None,
                    created_at=now,
                    started_at=now,
                    finished_at=None,
                    idempotency_key=None,
                )
            )
        finally:
            await store.close()
        pids = [partition_id(job.id, str(empty), page) for page in range(plan.claims)]
        await run.conn.execute(
            "INSERT INTO archivist_partitions (id, job_id, directory, page, names, files, state) "
            "SELECT i, %s, %s, p, '{}', 0, 'queued' FROM unnest(%s::uuid[], %s::int[]) AS t(i, p)",
            (job.id, str(empty), pids, list(range(plan.claims))),
        )
        queue = queue_app(run.database_url)
        async with queue.open_async():
            # What defer_partition defers for each (task, queue, queueing lock), in one statement.
            tasks = [
                queue.configure_task(PARTITION_TASK, queue=QUEUE, queueing_lock=f"p:{pid}").make_new_job(
                    partition=str(pid)
                )
                for pid in pids
            ]
            cpu = meter(bench, run.workers)
            cpu.mark()
            commits = await pg_commits(run.conn)
            deferring = time.time()
            await queue.job_manager.batch_defer_jobs_async(tasks)
            deferred = time.time()

        async def completed() -> float | None:
            rows = await run.rows("SELECT state, finished_at FROM archivist_jobs WHERE id = %s", (job.id,))
            return float(rows[0][1]) if rows and rows[0][0] == "completed" else None

        finished = await wait_for(completed, plan.job_timeout_s, "every empty partition done", run)
        spent = cpu.spent()
        owners = await run.rows(
            "SELECT owner, count(*) FROM archivist_partitions WHERE job_id = %s GROUP BY owner ORDER BY 1",
            (job.id,),
        )
        seconds = finished - deferred
        result = {
            "run": run.name,
            "workers": workers,
            "partitions": plan.claims,
            "defer_s": round(deferred - deferring, 3),
            "seconds": round(seconds, 2),
            "claims_per_s": round(plan.claims / seconds, 1),
            "per_worker": [int(n) for _, n in owners],
            "cpu_s": spent,
            "cpu_ms_per_claim": {
                "workers": round(spent["cpu_workers"] * 1000 / plan.claims, 2),
                "postgres": round(spent["cpu_postgres"] * 1000 / plan.claims, 2),
            },
        }
        names = [w.name for w in run.workers]
    # Read once every client is gone (a backend sends its counts at exit): the transactions of every client
    # over the phase (the bench's polls and idle workers' fetches too: a few per second), per claim.
    async with await psycopg.AsyncConnection.connect(run.database_url, autocommit=True) as conn:
        result["pg_transactions_per_claim"] = round((await pg_commits(conn) - commits) / plan.claims, 1)
    if plan.profile:  # written by each worker as it stopped (the cluster's exit)
        result["profile"] = profile_report([bench.base / run.name / name / "worker.prof" for name in names])
    return result


# What a partition task runs through (not start-up: imports and compiling dominate a whole-process profile,
# more so with PYTHONDONTWRITEBYTECODE).
_PROFILED = r"orchestrator/distributed/|procrastinate/|psycopg/|psycopg_pool/|structlog/|asyncio/base_events"


async def pg_commits(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> int:
    """Transactions committed in this database so far (every autocommit statement is one)."""
    cur = await conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


def profile_report(paths: list[Path], top: int = 30) -> str:
    """The workers' cProfile files merged, the functions a partition task runs through: by total time (a
    coroutine's time while suspended is not counted: cProfile sees each resumption as a call) and by own
    time."""
    found = [str(p) for p in paths if p.exists()]
    if not found:
        return "no profile written (the workers did not stop cleanly)"
    out = io.StringIO()
    stats = pstats.Stats(*found, stream=out)
    stats.sort_stats("cumulative").print_stats(_PROFILED, top)
    stats.sort_stats("tottime").print_stats(_PROFILED, top)
    text = out.getvalue()
    for prefix in sorted({p.rstrip("/") + "/" for p in sys.path if p}, key=len, reverse=True):
        text = text.replace(prefix, "")
    return text


# -- the report ---------------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def summarize(
    plan: Plan, runs: list[dict[str, Any]], takeover: dict[str, Any] | None, claims: dict[str, Any] | None
) -> dict[str, Any]:
    medians = {
        n: statistics.median(r["files_per_s"] for r in runs if r["workers"] == n)
        for n in plan.workers
        if any(r["workers"] == n for r in runs)
    }
    one = medians.get(1)
    summary: dict[str, Any] = {f"files_per_s_{n}": round(v, 2) for n, v in medians.items()}
    for n, v in medians.items():
        if n > 1 and one:
            summary[f"scale_{n}_vs_1"] = round(v / one, 3)
    summary.update(
        takeover_s=takeover["takeover_s"] if takeover else None,
        claims_per_s=claims["claims_per_s"] if claims else None,
        duplicate_ml_items=takeover["duplicate_ml_items"] if takeover else None,
        points_expected=takeover["points_expected"] if takeover else None,
        points_found=takeover["points_found"] if takeover else None,
    )
    return summary


def targets_met(summary: dict[str, Any]) -> dict[str, bool | None]:
    """Each target: met, missed, or None (its phase did not run)."""
    scale, takeover, claims = summary.get("scale_2_vs_1"), summary["takeover_s"], summary["claims_per_s"]
    return {
        "scale_2_vs_1": None if scale is None else scale >= TARGETS["scale_2_vs_1"],
        "points": None if takeover is None else summary["points_found"] == summary["points_expected"],
        "takeover_s": None if takeover is None else takeover <= TARGETS["takeover_s"],
        "claims_per_s": None if claims is None else claims >= TARGETS["claims_per_s"],
    }


def report(
    plan: Plan,
    runs: list[dict[str, Any]],
    takeover: dict[str, Any] | None,
    claims: dict[str, Any] | None,
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> dict[str, Any]:
    summary = summarize(plan, runs, takeover, claims)
    if runs:
        print_throughput(plan, runs, summary)
    if takeover:
        print_takeover(takeover)
    if claims:
        print_claims(plan, claims)
    print(f"load average at start {load[0]}, at end {load[1]} (2 cores, shared)")
    return {
        **summary,
        "targets_met": targets_met(summary),
        "files": plan.files,
        "partitions": plan.partitions,
        "partition_files": plan.partition_files,
        "worker_slots": plan.slots,
        "repeats": plan.repeats,
        "ml_replicas": plan.replicas,
        "ml_latency_ms": plan.latency_ms,
        "infer_batch": plan.image_batch,
        "media_in_flight": plan.media_in_flight or Settings.model_fields["media_in_flight"].default,
        "takeover_heartbeat_s": takeover["heartbeat_s"] if takeover else None,
        "takeover_stall_s": takeover["stall_s"] if takeover else None,
        "claims_partitions": claims["partitions"] if claims else None,
        "loadavg_start": load[0],
        "loadavg_end": load[1],
    }


def print_throughput(plan: Plan, runs: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    flat = [{**{k: v for k, v in r.items() if k != "cpu_s"}, **r["cpu_s"]} for r in runs]
    print("throughput (files/s: the API's, submit to completed; cpu_*: CPU seconds per process group)")
    print(table(flat, THROUGHPUT_COLUMNS))
    medians = [
        {
            "workers": n,
            "median_files_per_s": summary[f"files_per_s_{n}"],
            "vs_1": 1.0 if n == 1 else summary.get(f"scale_{n}_vs_1"),
        }
        for n in plan.workers
    ]
    print()
    print(table(medians, ["workers", "median_files_per_s", "vs_1"]))
    print()


def print_takeover(t: dict[str, Any]) -> None:
    print(
        f"takeover ({t['workers']} workers, heartbeat {t['heartbeat_s']} s, stall {t['stall_s']} s): the "
        f"killed worker owned {t['victim_partitions']} running partition(s), running again after "
        f"{t['takeover_each_s']} s; points {t['points_found']}/{t['points_expected']} (missing "
        f"{t['points_missing']}); ML items {t['ml_items']}, duplicated {t['duplicate_ml_items']} "
        f"(bound {t['redelivery_bound']})"
    )


def print_claims(plan: Plan, c: dict[str, Any]) -> None:
    print(
        f"claims (partitions with nothing to process, each a whole partition task from fetch to finish; "
        f"{c['workers']} workers x {plan.slots} slots): {c['partitions']} in {c['seconds']} s = "
        f"{c['claims_per_s']}/s; per worker {c['per_worker']}; deferred in {c['defer_s']} s; "
        f"CPU seconds {c['cpu_s']}, per claim (ms) {c['cpu_ms_per_claim']}; PostgreSQL transactions "
        f"per claim ~{c['pg_transactions_per_claim']}"
    )
    if "profile" in c:
        print(c["profile"])


async def bench_all(
    bench: Bench,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any] | None]:
    plan = bench.plan
    runs = []
    if "throughput" in plan.phases:
        for repeat in range(1, plan.repeats + 1):
            for n in plan.workers:  # alternating 1,2,3,1,2,3: a drift in the machine's load hits every n
                result = await throughput_run(bench, n, repeat)
                print(f"{result['run']}: {result['files_per_s']} files/s", file=sys.stderr)
                runs.append(result)
    takeover = claims = None
    if "takeover" in plan.phases:
        takeover = await takeover_run(bench)
        print(f"takeover: {takeover['takeover_s']} s", file=sys.stderr)
    if "claims" in plan.phases:
        claims = await claims_run(bench)
        print(f"claims: {claims['claims_per_s']}/s", file=sys.stderr)
    return runs, takeover, claims


def make_plan(args: argparse.Namespace) -> Plan:
    workers = tuple(sorted({int(n) for n in args.workers.split(",")}))
    phases = frozenset(p.strip() for p in args.phases.split(",") if p.strip())
    if not phases <= set(PHASES):
        raise SystemExit(f"--phases: among {','.join(PHASES)}")
    common: dict[str, Any] = {
        "job_timeout_s": args.job_timeout_s,
        "profile": args.profile,
        "phases": phases,
        "media_in_flight": args.media_in_flight,
    }
    if args.quick:  # every phase once, small: ~2 minutes
        return Plan(
            workers=(1, 2),
            repeats=1,
            directories=4,
            per_directory=40,
            partition_files=10,
            slots=2,
            replicas=2,
            latency_ms=200.0,
            image_batch=4,
            claims=args.claims or 200,
            heartbeat_s=1.0,
            stall_s=4.0,
            **common,
        )
    plan = Plan(
        workers=workers,
        repeats=args.repeats,
        directories=args.directories,
        per_directory=args.per_directory,
        partition_files=args.partition_files,
        slots=args.slots,
        replicas=args.replicas,
        latency_ms=args.latency_ms,
        image_batch=args.infer_batch,
        claims=args.claims or 2000,
        heartbeat_s=args.heartbeat_s,
        stall_s=args.stall_s,
        **common,
    )
    if plan.partitions < 4 * plan.slots * max(workers):
        raise SystemExit(
            f"{plan.partitions} partitions: fewer than 4 per worker slot of {max(workers)} workers "
            f"x {plan.slots} slots (more --directories or --per-directory, or fewer --partition-files)"
        )
    return plan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run of every phase")
    parser.add_argument("--phases", default=",".join(PHASES), help="which phases to run")
    parser.add_argument("--workers", default="1,2,3", help="worker counts of the throughput phase")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--directories", type=int, default=12)
    parser.add_argument("--per-directory", type=int, default=100)
    parser.add_argument("--partition-files", type=int, default=50)
    parser.add_argument("--slots", type=int, default=2, help="WORKER_SLOTS")
    parser.add_argument("--replicas", type=int, default=2, help="ML stand-in processes")
    parser.add_argument("--latency-ms", type=float, default=300.0, help="the ML stand-ins' answer time")
    parser.add_argument(
        "--infer-batch", type=int, default=8, help="files per ML request at most (the stand-ins advertise it)"
    )
    parser.add_argument("--media-in-flight", type=int, default=None, help="MEDIA_IN_FLIGHT (default 2)")
    parser.add_argument(
        "--claims", type=int, default=None, help="empty partitions of the claims phase (2000; --quick 200)"
    )
    parser.add_argument("--heartbeat-s", type=float, default=None, help="WORKER_HEARTBEAT_S (default 5)")
    parser.add_argument("--stall-s", type=float, default=None, help="WORKER_STALL_S (default 15)")
    parser.add_argument("--job-timeout-s", type=float, default=900.0)
    parser.add_argument("--profile", action="store_true", help="cProfile the claims phase's workers")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (worker logs)")
    args = parser.parse_args(argv)
    plan = make_plan(args)
    configure_logging("WARNING", json=False)  # the API runs in this process: only its warnings
    load_start = tuple(round(x, 2) for x in os.getloadavg())
    base = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    print(f"work directory {base}", file=sys.stderr)
    try:
        with ExitStack() as stack:
            postgres = stack.enter_context(running_postgres(base / "pg"))
            qdrant = stack.enter_context(running_qdrant_standin())
            standins = stack.enter_context(
                running_ml_standins(plan.replicas, plan.latency_ms, image_batch=plan.image_batch)
            )
            media = base / "media"
            docs = media / "docs"
            expected = make_documents(docs, plan.directories, plan.per_directory, tag="b")
            bench = Bench(
                plan=plan,
                base=base,
                postgres=postgres,
                qdrant_url=qdrant.url,
                ml_urls=[s.url for s in standins],
                media=media,
                docs=docs,
                expected=expected,
                qdrant_pid=qdrant.process.pid,
                ml_pids=[s.process.pid for s in standins],
            )
            runs, takeover, claims = asyncio.run(bench_all(bench))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    load_end = tuple(round(x, 2) for x in os.getloadavg())
    result = report(plan, runs, takeover, claims, (load_start, load_end))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
