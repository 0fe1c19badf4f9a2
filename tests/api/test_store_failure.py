"""The vector store failing mid-job: the job fails with the store's reason, and nothing is marked done
that was not stored (a later job stores exactly the rest, with no ML call for what was analysed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orchestrator.clients.vectors import PointRecord
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
