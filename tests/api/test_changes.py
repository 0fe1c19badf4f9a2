"""Change detection against real files: deleted files are pruned, moved files cost no ML call and update
their paths, prune can be turned off, and a file changing while it is read is never stored stale."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from orchestrator.ids import point_id
from tests.support.app_factory import counting_store, make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow


async def _ingest(orch: RunningOrchestrator, path: Path, **options: Any) -> dict[str, Any]:
    resp = await orch.client.post("/jobs", json={"path": str(path), "collection": "c", "options": options})
    status = await orch.wait_job(resp.json()["job_id"])
    assert status["state"] == "completed", status
    return status


async def _paths_of(orch: RunningOrchestrator, file: Path) -> list[str] | None:
    import blake3

    digest = blake3.blake3(await asyncio.to_thread(file.read_bytes)).hexdigest()
    found = await orch.services.store.retrieve("c", [point_id(digest, 0)])
    return None if not found else list(next(iter(found.values()))["paths"])


async def test_delete_move_and_prune_off(tmp_path: Path, ml_service_url: str, sample_copy: Path) -> None:
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path])
    store = counting_store(settings)
    keep = tmp_path / "keep"
    keep.mkdir()
    shutil.copyfile(sample_copy / "kitchen/coffee.jpg", keep / "coffee.jpg")
    shutil.copyfile(sample_copy / "pets/chelsea_the_cat.jpg", keep / "chelsea.jpg")
    shutil.copyfile(sample_copy / "news/breaking_flood.png", keep / "flood.png")
    async with running_orchestrator(settings, store) as orch:
        await _ingest(orch, sample_copy)
        points = await store.count("c")

        (sample_copy / "kitchen/coffee.jpg").unlink()  # unique content: its point goes
        (sample_copy / "backup/chelsea_copy.jpg").unlink()  # one of two copies: the point stays
        (sample_copy / "archive").mkdir()
        os.rename(sample_copy / "news/breaking_flood.png", sample_copy / "archive/flood.png")  # moved
        shutil.rmtree(sample_copy / "signs")  # a whole directory gone

        ml_before = orch.services.ml.requests
        status = await _ingest(orch, sample_copy)
        assert orch.services.ml.requests == ml_before  # nothing new to understand
        assert status["counters"]["pruned"] == 4
        assert await store.count("c") == points - 2  # coffee and the platform sign
        assert await _paths_of(orch, keep / "coffee.jpg") is None
        assert await _paths_of(orch, keep / "chelsea.jpg") == [str(sample_copy / "pets/chelsea_the_cat.jpg")]
        assert await _paths_of(orch, keep / "flood.png") == sorted(
            [str(sample_copy / "archive/flood.png"), str(sample_copy / "backup/2019/breaking_flood (1).png")]
        )
        hits = (await orch.client.get("/search", params={"q": "flood in valencia", "collection": "c"})).json()
        assert str(sample_copy / "news/breaking_flood.png") not in [
            p for h in hits["hits"] for p in h["paths"]
        ]
        # Indexed: everything but the 3 broken files (retried on every scan); the sidecar is remembered.
        assert await orch.services.index.count("c") == status["counters"]["discovered"] - 3

        # prune=false: a deleted file's point stays.
        (sample_copy / "vehicles/motorcycle.jpg").unlink()
        status = await _ingest(orch, sample_copy, prune=False)
        assert status["counters"]["pruned"] == 0
        assert await store.count("c") == points - 2
        # and the next pruning scan removes it.
        status = await _ingest(orch, sample_copy)
        assert status["counters"]["pruned"] == 1
        assert await store.count("c") == points - 3


async def test_many_copies_points_sample_paths_search_lists_all(tmp_path: Path, ml_service_url: str) -> None:
    from orchestrator.points import MAX_PAYLOAD_PATHS
    from scripts.make_samples import text_image

    media = tmp_path / "copies"
    media.mkdir()
    text_image("HARBOUR FESTIVAL PROGRAMME").save(media / "original.png")
    copies = MAX_PAYLOAD_PATHS + 8
    for i in range(copies):
        sub = media / f"folder{i:02d}"
        sub.mkdir()
        shutil.copyfile(media / "original.png", sub / "copy.png")
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path])
    store = counting_store(settings)
    async with running_orchestrator(settings, store) as orch:
        status = await _ingest(orch, media)
        assert status["counters"]["duplicates"] == copies
        assert await store.count("c") == 1
        listed = await _paths_of(orch, media / "original.png")
        assert listed is not None and len(listed) == MAX_PAYLOAD_PATHS
        hits = (await orch.client.get("/search", params={"q": "harbour festival", "collection": "c"})).json()
        assert len(hits["hits"][0]["paths"]) == copies + 1  # every path, from the file index
        shutil.rmtree(media / "folder00")
        (media / "original.png").unlink()
        await _ingest(orch, media)
        hits = (await orch.client.get("/search", params={"q": "harbour festival", "collection": "c"})).json()
        assert len(hits["hits"][0]["paths"]) == copies - 1
        assert str(media / "original.png") not in hits["hits"][0]["paths"]
        assert str(media / "original.png") not in (await _paths_of(orch, media / "folder01/copy.png") or [])
