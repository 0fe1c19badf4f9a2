"""Failed files are remembered by (path, size, mtime, inode): while unchanged they are not read again (a
corrupt 60 GB video is not hashed on every scan), yet every job still lists them among its errors; they
are tried again when they change, or when a job asks for `retry_failed`. Real orchestrator, ML service,
store and files."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from orchestrator.pipeline.stages.prepare import KNOWN_FAILURE_PREFIX
from scripts.bench_pipeline import make_images
from tests.support.app_factory import counting_store, make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow


async def _ingest(orch: RunningOrchestrator, path: Path, **options: Any) -> dict[str, Any]:
    body = {"path": str(path), "options": options}
    status = await orch.wait_job((await orch.client.post("/jobs", json=body)).json()["job_id"])
    assert status["state"] == "completed", status
    return status


def _reasons(status: dict[str, Any]) -> dict[str, str]:
    return {os.path.basename(e["path"]): e["reason"] for e in status["errors"]}


async def test_failures_are_not_read_again_until_they_change_or_are_retried(
    tmp_path: Path, ml_service_url: str
) -> None:
    media = tmp_path / "media"
    good, spare = await asyncio.to_thread(make_images, media, 2)
    broken = media / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)  # a JPEG header, then nothing decodable
    notes = media / "notes.jpg"
    notes.write_text("shopping list: milk, eggs\n")  # text under a media name
    spare_bytes = spare.read_bytes()
    spare.unlink()
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path])
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        first = await _ingest(orch, media)
        assert first["counters"]["failed"] == 2 and first["counters"]["failed_before"] == 0
        assert first["stages"]["prepare"]["items"] == 3
        reasons = _reasons(first)
        assert "not media" in reasons["notes.jpg"] and set(reasons) == {"broken.jpg", "notes.jpg"}

        # Unchanged: not read (prepare touches nothing), still reported, with the reason of the time.
        second = await _ingest(orch, media)
        assert second["stages"]["prepare"]["items"] == 0
        assert second["counters"]["failed"] == 2 and second["counters"]["failed_before"] == 2
        assert second["counters"]["discovered"] == 3 and second["counters"]["unchanged"] == 1
        assert _reasons(second) == {name: KNOWN_FAILURE_PREFIX + r for name, r in reasons.items()}

        # Asked to retry: read again, and failing again for the same reasons.
        third = await _ingest(orch, media, retry_failed=True)
        assert third["stages"]["prepare"]["items"] == 2
        assert third["counters"]["failed_before"] == 0 and _reasons(third) == reasons

        # Changed: read again without being asked; the fixed one is stored and forgotten as a failure.
        broken.write_bytes(spare_bytes)
        fourth = await _ingest(orch, media)
        assert fourth["stages"]["prepare"]["items"] == 1
        assert fourth["counters"]["upserted"] == 1 and fourth["counters"]["failed_before"] == 1
        assert set(_reasons(fourth)) == {"notes.jpg"}
        fifth = await _ingest(orch, media)
        assert fifth["counters"]["unchanged"] == 2 and fifth["counters"]["failed"] == 1
        assert good.exists()
