"""Deleting a collection and ingesting the same folder again stores every file again: the delete took the
collection's file-index rows with its points (rows left behind would make the scan skip those files)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scripts.bench_pipeline import make_images
from tests.support.app_factory import counting_store, make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow

FILES = 3


async def _ingest(orch: RunningOrchestrator, media: Path) -> dict[str, object]:
    resp = await orch.client.post("/jobs", json={"path": str(media), "collection": "c"})
    assert resp.status_code == 202, resp.text
    return await orch.wait_job(resp.json()["job_id"])


async def test_ingest_after_delete_stores_every_file_again(tmp_path: Path, ml_service_url: str) -> None:
    media = tmp_path / "media"
    await asyncio.to_thread(make_images, media, FILES)
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path])
    store = counting_store(settings)
    async with running_orchestrator(settings, store) as orch:
        first = await _ingest(orch, media)
        assert first["state"] == "completed" and first["counters"]["upserted"] == FILES  # type: ignore[index]
        assert await orch.services.index.count("c") == FILES

        resp = await orch.client.delete("/collections/c")
        assert resp.status_code == 200, resp.text
        assert await orch.services.index.count("c") == 0

        again = await _ingest(orch, media)
        counters = again["counters"]
        assert isinstance(counters, dict)
        assert again["state"] == "completed", again
        assert counters["unchanged"] == 0 and counters["upserted"] == FILES, counters
        assert await store.count("c") == FILES
        hits = (await orch.client.get("/search", params={"q": "photo", "collection": "c"})).json()["hits"]
        assert len(hits) == FILES
