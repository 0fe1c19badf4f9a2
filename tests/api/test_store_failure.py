"""The vector store failing mid-job: the job fails with the store's reason, and nothing is marked done
that was not stored (a later job stores exactly the rest, with no ML call for what was analysed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import blake3
import pytest

from orchestrator.clients.vectors import PointRecord
from orchestrator.ids import point_id
from scripts.bench_pipeline import make_images
from tests.support.app_factory import counting_store, make_settings
from tests.support.counting_store import CountingStore
from tests.support.orchestrator_server import running_orchestrator

pytestmark = pytest.mark.slow


class BrokenAfter(CountingStore):
    """The real Edge store, refusing every upsert after the first `healthy` ones (a disk gone read-only)."""

    def __init__(self, inner: CountingStore, healthy: int) -> None:
        super().__init__(inner.inner)
        self.healthy = healthy
        self.broken = True

    async def upsert(self, name: str, points: list[PointRecord]) -> None:
        if self.broken and self.upserts >= self.healthy:
            raise OSError("No space left on device")
        await super().upsert(name, points)


async def test_store_failure_marks_nothing_unstored(tmp_path: Path, ml_service_url: str) -> None:
    media = tmp_path / "media"
    await asyncio.to_thread(make_images, media, 12)
    settings = make_settings(
        tmp_path / "data", ml_service_url, [tmp_path], ml_inference_batch_size=2, qdrant_upsert_batch_size=2
    )
    store = BrokenAfter(counting_store(settings), healthy=2)
    async with running_orchestrator(settings, store) as orch:
        job_id = (await orch.client.post("/jobs", json={"path": str(media)})).json()["job_id"]
        final = await orch.wait_job(job_id)
        assert final["state"] == "failed"
        assert "No space left on device" in final["error"]
        stored = await store.count("media")
        assert 1 <= stored < 12
        assert await orch.services.index.count("media") == stored  # done == stored, nothing more

        store.broken = False
        ml_before = orch.services.ml.requests
        again = await orch.wait_job(
            (await orch.client.post("/jobs", json={"path": str(media)})).json()["job_id"]
        )
        assert again["state"] == "completed"
        assert await store.count("media") == 12
        assert again["counters"]["unchanged"] == stored
        # Everything analysed before the failure came from the result cache.
        assert again["counters"]["inferred"] + again["counters"]["cache_hits"] == 12 - stored
        assert orch.services.ml.requests - ml_before <= 2 * (12 - stored)


class FailsToRelease(CountingStore):
    """The real Edge store, refusing to delete or rewrite the points of the `old` content (the moment
    between a changed file's done mark and the release of its old content's points)."""

    def __init__(self, inner: CountingStore, old: set[str]) -> None:
        super().__init__(inner.inner)
        self.old = old
        self.broken = True

    async def delete(self, name: str, ids: list[str]) -> None:
        if self.broken and self.old & set(ids):
            raise OSError("Input/output error")
        await super().delete(name, ids)

    async def set_payloads(self, name: str, updates: dict[str, dict[str, Any]]) -> None:
        if self.broken and self.old & set(updates):
            raise OSError("Input/output error")
        await super().set_payloads(name, updates)


async def test_a_failed_release_is_finished_by_the_next_job(tmp_path: Path, ml_service_url: str) -> None:
    """A file's content changes; the store fails while its old content's points are being released (after
    the new content is stored). The job fails; the next job releases them, so no stale point is left that
    still names the path (search would send the new bytes for the old hit)."""
    media = tmp_path / "media"
    changing, other = await asyncio.to_thread(make_images, media, 2)
    replacement = await asyncio.to_thread(make_images, tmp_path / "spare", 1, 99)
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path])
    old_hash = blake3.blake3(changing.read_bytes()).hexdigest()
    store = FailsToRelease(counting_store(settings), {point_id(old_hash, 0)})
    async with running_orchestrator(settings, store) as orch:

        async def ingest() -> dict[str, Any]:
            job_id = (await orch.client.post("/jobs", json={"path": str(media)})).json()["job_id"]
            return await orch.wait_job(job_id)

        assert (await ingest())["state"] == "completed"
        changing.write_bytes(replacement[0].read_bytes())
        new_hash = blake3.blake3(changing.read_bytes()).hexdigest()

        failed = await ingest()
        assert failed["state"] == "failed" and "Input/output error" in failed["error"]
        stale = await store.retrieve("media", [point_id(old_hash, 0)])
        assert [p["paths"] for p in stale.values()] == [[str(changing)]]  # the fault window, made to happen

        store.broken = False
        again = await ingest()
        assert again["state"] == "completed", again
        assert again["counters"]["unchanged"] == 2  # nothing to redo but the release
        assert await store.retrieve("media", [point_id(old_hash, 0)]) == {}
        fresh = await store.retrieve("media", [point_id(new_hash, 0)])
        assert [p["paths"] for p in fresh.values()] == [[str(changing)]]
        assert await store.count("media") == 2
        assert await orch.services.index.pending_releases("media") == []
        assert other.exists()
