"""The distributed mode end to end: real PostgreSQL, real worker processes, the real ML service, a Qdrant
stand-in server shared by all (scripts/qdrant_standin.py), the API over loopback HTTP.

Files are small text documents (one passage, one text embedding each): thousands cost seconds of ML.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from orchestrator.distributed.ledger import redelivery_bound
from orchestrator.pipeline.negotiate import pipeline_config
from tests.support.app_factory import make_settings
from tests.support.cluster import WorkerProcess, make_documents, point_ids, start_worker
from tests.support.ml_server import MLService
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator
from tests.support.postgres import PostgresServer
from tests.support.qdrant_server import QdrantStandIn, running_qdrant_standin

pytestmark = pytest.mark.timeout(300)

STALL_S = 4.0


@dataclass(slots=True)
class Cluster:
    api: RunningOrchestrator
    database_url: str
    qdrant: QdrantStandIn
    ml_url: str
    base: Path
    env: dict[str, str]
    workers: list[WorkerProcess]

    def start_workers(self, n: int) -> None:
        for _ in range(n):
            name = f"w{len(self.workers)}"
            self.workers.append(start_worker(name, self.base / name, self.env))

    async def submit(self, root: Path, collection: str) -> str:
        response = await self.api.client.post("/jobs", json={"path": str(root), "collection": collection})
        assert response.status_code in (200, 201, 202), response.text
        job_id: str = response.json()["job_id"]
        return job_id

    async def status(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self.api.client.get(f"/jobs/{job_id}")).json()
        return body

    async def partitions(self, job_id: str) -> list[tuple[str, int, str | None]]:
        """(state, attempt, owner) of each partition of the job."""
        return list((await self.partitions_by_id(job_id)).values())

    async def partitions_by_id(self, job_id: str) -> dict[str, tuple[str, int, str | None]]:
        async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT id, state, attempt, owner FROM archivist_partitions WHERE job_id = %s", (job_id,)
            )
            return {str(r[0]): (r[1], r[2], r[3]) for r in await cur.fetchall()}

    def logs(self) -> str:
        return "\n\n".join(f"--- {w.name}\n{w.tail()}" for w in self.workers)


async def text_items_served(ml_url: str) -> float:
    """Texts the ML service's text model has run since it started (its batch-size histogram's sum)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{ml_url}/metrics")).text
    match = re.search(r'^archivist_ml_model_batch_items_sum\{model="text"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


async def wait_for(predicate: Any, timeout_s: float, what: str, cluster: Cluster) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s\n{cluster.logs()}")
        await asyncio.sleep(0.2)


async def follow_job(
    cluster: Cluster, job_id: str, timeout_s: float
) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """Poll until the job ends; returns its last status and every (done, discovered) seen on the way."""
    seen: list[tuple[int, int]] = []

    async def ended() -> dict[str, Any] | None:
        status = await cluster.status(job_id)
        seen.append((status["counters"]["done"], status["counters"]["discovered"]))
        return status if status["state"] not in ("queued", "running", "paused") else None

    status = await wait_for(ended, timeout_s, f"job {job_id} to end", cluster)
    return status, seen


@pytest.fixture(scope="module")
def qdrant() -> Iterator[QdrantStandIn]:
    with running_qdrant_standin() as server:
        yield server


@pytest.fixture
async def cluster(
    postgres: PostgresServer, qdrant: QdrantStandIn, ml_service: MLService, tmp_path: Path, request: Any
) -> AsyncIterator[Cluster]:
    database_url = await asyncio.to_thread(
        postgres.create_database, f"t{abs(hash(request.node.name)) % 10**8}"
    )
    root = tmp_path / "media"
    root.mkdir()
    env = {
        "DATABASE_URL": database_url,
        "QDRANT_URL": qdrant.url,
        "ML_SERVICE_URL": ml_service.url,
        "ALLOWED_ROOTS": str(root),
        "WORKER_SLOTS": "2",
        "WORKER_HEARTBEAT_S": "1",
        "WORKER_STALL_S": str(STALL_S),
        "PARTITION_FILES": "100",
        "DECODE_WORKERS": "1",
        "ML_RETRY_DEADLINE_S": "60",
    }
    settings = make_settings(
        tmp_path / "api", ml_service.url, [root], database_url=database_url, qdrant_url=qdrant.url
    )
    workers: list[WorkerProcess] = []
    async with running_orchestrator(settings) as api:
        found = Cluster(api, database_url, qdrant, ml_service.url, tmp_path, env, workers)
        try:
            yield found
        finally:
            await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))


def _root(cluster: Cluster) -> Path:
    return Path(cluster.env["ALLOWED_ROOTS"])


async def test_a_killed_worker_loses_nothing_and_duplicates_little(cluster: Cluster) -> None:
    expected = make_documents(_root(cluster) / "kill", directories=30, per_directory=100, tag="k")
    cluster.start_workers(3)
    served_before = await text_items_served(cluster.ml_url)
    job_id = await cluster.submit(_root(cluster) / "kill", "kill")
    victim = cluster.workers[0]

    async def victim_busy() -> bool:
        parts = await cluster.partitions(job_id)
        done = sum(1 for state, _, _ in parts if state == "done")
        mine = any(
            state == "running" and owner and owner.endswith(f":{victim.pid}") for state, _, owner in parts
        )
        return done >= 3 and mine

    await wait_for(victim_busy, 120, "the victim running a partition after 3 are done", cluster)
    victim.kill()
    orphaned = {
        pid: attempt
        for pid, (state, attempt, owner) in (await cluster.partitions_by_id(job_id)).items()
        if state == "running" and owner and owner.endswith(f":{victim.pid}")
    }
    assert orphaned
    events = asyncio.create_task(first_progress_event(cluster, job_id))
    status, seen = await follow_job(cluster, job_id, 240)
    assert status["state"] == "completed", (status, cluster.logs())
    counters = status["counters"]
    assert counters["discovered"] == len(expected) and counters["done"] == len(expected), counters
    assert counters["failed"] == 0, status["errors"]
    assert all(done <= discovered for done, discovered in seen), "progress went past the files found"
    parts = await cluster.partitions(job_id)
    assert len(parts) == 30 and all(state == "done" for state, _, _ in parts)
    after = await cluster.partitions_by_id(job_id)
    for pid, attempt in orphaned.items():  # each of the victim's partitions: a new owner finished it
        state, now, owner = after[pid]
        assert state == "done" and now > attempt and owner and not owner.endswith(f":{victim.pid}")
    # Any API node streams progress made on the workers (the event stream of GET /jobs/{id}/events).
    event = await asyncio.wait_for(events, 30)
    assert event["state"] in ("running", "completed") and event["counters"]["done"] > 0
    assert await point_ids(cluster.qdrant.url, "kill") == set(expected.values())
    # ML work done twice: at most what the killed worker had in flight (its slots' uncommitted batches).
    served = await text_items_served(cluster.ml_url) - served_before
    caps_config = pipeline_config(
        cluster.api.services.settings, await cluster.api.services.ml.capabilities(), {}
    )
    bound = redelivery_bound(caps_config, int(cluster.env["WORKER_SLOTS"]))
    assert len(expected) <= served <= len(expected) + bound, (served, bound)


async def test_a_frozen_worker_is_overtaken_and_its_checkpoint_refused(cluster: Cluster) -> None:
    expected = make_documents(_root(cluster) / "frozen", directories=6, per_directory=100, tag="f")
    cluster.start_workers(2)
    job_id = await cluster.submit(_root(cluster) / "frozen", "frozen")
    sleeper = cluster.workers[0]

    async def sleeper_owns() -> str | None:
        for state, _, owner in await cluster.partitions(job_id):
            if state == "running" and owner and owner.endswith(f":{sleeper.pid}"):
                return owner
        return None

    await wait_for(sleeper_owns, 120, "the sleeper running a partition", cluster)
    sleeper.freeze()
    try:

        async def overtaken() -> bool:  # its partitions have a newer attempt, owned by the other worker
            parts = await cluster.partitions(job_id)
            return not any(
                state == "running" and owner and owner.endswith(f":{sleeper.pid}")
                for state, _, owner in parts
            ) and any(attempt > 1 for _, attempt, _ in parts)

        await wait_for(overtaken, 60, "the frozen worker's partitions taken over", cluster)
    finally:
        sleeper.thaw()
    await wait_for(
        lambda: asyncio.to_thread(lambda: bool(sleeper.events("partition_taken_over"))),
        60,
        "the woken worker's checkpoint refused",
        cluster,
    )
    status, seen = await follow_job(cluster, job_id, 180)
    assert status["state"] == "completed", status
    assert status["counters"]["done"] == len(expected) == status["counters"]["discovered"]
    assert status["counters"]["failed"] == 0, status["errors"]
    assert all(done <= discovered for done, discovered in seen)
    assert await point_ids(cluster.qdrant.url, "frozen") == set(expected.values())


async def test_pause_resume_cancel_and_a_postgres_restart(cluster: Cluster, postgres: PostgresServer) -> None:
    expected = make_documents(_root(cluster) / "life", directories=8, per_directory=100, tag="l")
    cluster.start_workers(2)
    job_id = await cluster.submit(_root(cluster) / "life", "life")

    async def some_done() -> bool:
        return bool((await cluster.status(job_id))["counters"]["done"] >= 100)

    await wait_for(some_done, 120, "100 files done", cluster)
    assert (await cluster.api.client.post(f"/jobs/{job_id}/pause")).json()["state"] == "paused"

    async def all_parked() -> bool:  # every pass checkpointed and returned its partition, none queued
        return {state for state, _, _ in await cluster.partitions(job_id)} <= {"done", "paused"}

    await wait_for(all_parked, 60, "every partition parked or done on pause", cluster)
    # Nothing can move now: no partition is queued or running, and no task waits for one.
    assert await open_tasks(cluster.database_url) == 0
    frozen = (await cluster.status(job_id))["counters"]["done"]
    assert frozen < len(expected)
    assert (await cluster.api.client.post(f"/jobs/{job_id}/resume")).json()["state"] == "running"
    await asyncio.to_thread(postgres.restart)  # mid-job: workers and the API reconnect
    status, seen = await follow_job(cluster, job_id, 240)
    assert status["state"] == "completed", (status, cluster.logs())
    assert status["counters"]["done"] == len(expected) and status["counters"]["failed"] == 0
    assert all(done <= discovered for done, discovered in seen)
    assert await point_ids(cluster.qdrant.url, "life") == set(expected.values())

    more = make_documents(_root(cluster) / "cancel", directories=8, per_directory=100, tag="c")
    job_id = await cluster.submit(_root(cluster) / "cancel", "cancel")

    async def started() -> bool:
        return any(state == "running" for state, _, _ in await cluster.partitions(job_id))

    await wait_for(started, 120, "the second job running", cluster)
    assert (await cluster.api.client.post(f"/jobs/{job_id}/cancel")).json()["state"] == "cancelled"
    await wait_for(
        lambda: all_parked_of(cluster, job_id), 60, "running partitions stopped on cancel", cluster
    )
    parts = await cluster.partitions(job_id)
    assert {state for state, _, _ in parts} <= {"done", "cancelled"}
    status = await cluster.status(job_id)
    assert status["state"] == "cancelled" and status["counters"]["done"] < len(more)
    assert (await cluster.api.client.post(f"/jobs/{job_id}/resume")).status_code == 409


async def first_progress_event(cluster: Cluster, job_id: str) -> dict[str, Any]:
    """The first server-sent event of the job showing files done."""
    async with cluster.api.client.stream("GET", f"/jobs/{job_id}/events", timeout=60) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                event: dict[str, Any] = json.loads(line[5:])
                if event["counters"]["done"] > 0:
                    return event
    raise AssertionError("the event stream ended without progress")


async def open_tasks(database_url: str) -> int:
    """Partition tasks waiting or running in procrastinate's queue."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'archivist.partition' "
            "AND status IN ('todo', 'doing')"
        )
        row = await cur.fetchone()
        return 0 if row is None else int(row[0])


async def all_parked_of(cluster: Cluster, job_id: str) -> bool:
    return not any(state == "running" for state, _, _ in await cluster.partitions(job_id))


def test_without_database_url_nothing_distributed_is_imported() -> None:
    """One machine keeps its embedded defaults: no PostgreSQL driver or task queue is loaded."""
    import subprocess
    import sys

    code = (
        "import sys, orchestrator.app, orchestrator.cli; "
        "names = ('procrastinate', 'psycopg', 'psycopg_pool'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in names))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
