"""The guarantees of orchestrator/distributed/store.py against a real PostgreSQL: ownership tokens, exact
counts, idempotent scans, parking on pause."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from orchestrator.distributed.store import (
    ClusterStore,
    JobRecord,
    Partition,
    Settled,
    StaleCheckpoint,
    partition_id,
)
from orchestrator.distributed.tasks import queue_app
from orchestrator.file_index import IndexedFile
from tests.support.postgres import PostgresServer


@pytest.fixture
async def store(postgres: PostgresServer) -> AsyncIterator[ClusterStore]:
    url = await asyncio.to_thread(postgres.create_database, f"s{uuid.uuid4().hex[:12]}")
    app = queue_app(url)
    async with app.open_async():
        found = await ClusterStore.open(url)
        await found.apply_schema(app.schema_manager.apply_schema_async)
        await found.apply_schema(app.schema_manager.apply_schema_async)  # a second process starting: no-op
        try:
            yield found
        finally:
            await found.close()


async def _job(store: ClusterStore, state: str = "running") -> JobRecord:
    record = JobRecord(uuid.uuid4().hex, "c", "/r", {}, state, None, time.time(), time.time(), None, None)
    return await store.insert_job(record)


async def test_a_stale_attempt_commits_nothing(store: ClusterStore) -> None:
    job = await _job(store)
    await store.add_scans(job.id, ["/r"])
    first = await store.finish_scan(job.id, "/r", [Partition("/r", 0, ("a", "b", "c"))], [], 0, [])
    assert first is not None
    [pid], _ = first
    old = await store.claim(pid, "w1", None)
    new = await store.claim(pid, "w2", None)  # w1 went silent; its partition was taken over
    assert old is not None and new is not None and new.attempt == old.attempt + 1
    row = IndexedFile("/r", "a", 1, 2, 3, "hash", 1)
    with pytest.raises(StaleCheckpoint):
        await store.checkpoint(old, [Settled("/r/a", "done", row=row)], {"upserted": 1}, final=False)
    assert (await store.progress(job.id))["counters"]["done"] == 0
    assert await store.index_rows("c", "/r") == {}
    # Nor can its pass fail the job (a request timed out while its worker was frozen): it has no say any more.
    assert not await store.fail_owned(old, "ResponseHandlingException: timed out")
    assert await store.job_states({job.id}) == {job.id: "running"}
    # The owner's commits count each file once, however often it is delivered.
    await store.checkpoint(new, [Settled("/r/a", "done", row=row)], {"upserted": 1}, final=False)
    await store.checkpoint(new, [Settled("/r/a", "done", row=row)], {"upserted": 1}, final=False)
    assert await store.done_paths(job.id, pid) == {"/r/a"}
    await store.checkpoint(new, [Settled("/r/b", "failed", "prepare", "corrupt")], {}, final=False)
    await store.checkpoint(new, [Settled(f"/r/{n}", "skipped") for n in "abc"], {}, final=True)
    progress = await store.progress(job.id)
    assert progress["counters"]["done"] == 3 and progress["counters"]["failed"] == 1
    assert progress["counters"]["discovered"] == 3 and progress["counters"]["upserted"] == 2
    assert progress["partitions"] == {"done": 1, "total": 1, "running": 0}
    assert await store.index_rows("c", "/r") == {"a": row}
    total, errors = await store.errors(job.id, 0, 10)
    assert total == 1 and errors[0][:3] == ("/r/b", "prepare", "corrupt")
    assert await store.maybe_complete(job.id)
    with pytest.raises(StaleCheckpoint):  # done: no one commits into it any more
        await store.checkpoint(new, [], {}, final=True)


async def test_the_owners_failure_fails_the_job_and_cancels_what_waits(store: ClusterStore) -> None:
    job = await _job(store)
    await store.add_scans(job.id, ["/r"])
    parts = [Partition("/r", page, (f"f{page}",)) for page in range(2)]
    found = await store.finish_scan(job.id, "/r", parts, [], 0, [])
    assert found is not None
    [running, waiting], _ = found
    claim = await store.claim(running, "w1", None)
    assert claim is not None
    assert await store.fail_owned(claim, "UnexpectedResponse: 400 (Bad Request)")
    assert await store.job_states({job.id}) == {job.id: "failed"}
    assert await store.claim(waiting, "w2", None) is None  # cancelled with the job


async def test_a_scan_run_twice_adds_nothing(store: ClusterStore) -> None:
    job = await _job(store)
    await store.add_scans(job.id, ["/r"])
    pages = [Partition("/r", 0, ("a",)), Partition("/r", 1, ("b",))]
    first = await store.finish_scan(job.id, "/r", pages, ["/r/sub"], 2, [])
    second = await store.finish_scan(job.id, "/r", pages, ["/r/sub"], 2, [])
    assert first is not None and second is not None
    assert (
        sorted(first[0])
        == sorted(second[0])
        == sorted([partition_id(job.id, "/r", 0), partition_id(job.id, "/r", 1)])
    )
    assert first[1] == second[1] == ["/r/sub"]
    counters = (await store.progress(job.id))["counters"]
    assert counters["discovered"] == 4 and counters["unchanged"] == 2 and counters["done"] == 2


async def test_pause_parks_queued_partitions_and_resume_queues_them(store: ClusterStore) -> None:
    job = await _job(store)
    await store.add_scans(job.id, ["/r"])
    result = await store.finish_scan(job.id, "/r", [Partition("/r", 0, ("a",))], [], 0, [])
    assert result is not None
    [pid], _ = result
    assert await store.set_state(job.id, "paused", ["running"]) is not None
    assert await store.claim(pid, "w1", None) is None  # a task picked during the pause parks it
    assert await store.queued_partitions(job.id) == []
    assert await store.set_state(job.id, "running", ["paused"]) is not None
    assert await store.queued_partitions(job.id) == [pid]
    claim = await store.claim(pid, "w1", None)
    assert claim is not None
    assert await store.set_state(job.id, "cancelled", ["running"]) is not None
    assert await store.release(claim) == "cancelled"
    assert await store.set_state(job.id, "running", ["paused"]) is None  # cancelled is final
