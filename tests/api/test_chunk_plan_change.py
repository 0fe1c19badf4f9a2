"""A new CHUNK_SECONDS re-cuts the video and re-analyses it into a new collection version: no result is
reused by chunk index, none lands on another time span, and the version searched until the switch keeps its
own chunks and thumbnails. Real decoding, the real ML service (ASR, faces, OCR), Qdrant Edge."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from scripts.talk_video import make_talk_video
from tests.support.app_factory import make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow


async def _points(orch: RunningOrchestrator, physical: str) -> list[dict[str, Any]]:
    points, offset = await orch.services.store.scroll(physical, None, 512, None)
    assert offset is None
    return sorted((p.payload | {"id": p.id} for p in points), key=lambda p: p["chunk_index"])


async def _ingest(orch: RunningOrchestrator, media: Path) -> dict[str, Any]:
    resp = await orch.client.post("/jobs", json={"path": str(media), "collection": "talk"})
    assert resp.status_code == 202, resp.text
    return dict(await orch.wait_job(resp.json()["job_id"], timeout_s=600))


def _check_spans(points: list[dict[str, Any]], chunk_s: float) -> None:
    """Chunks tile the file; every word, turn and face track lies in its chunk's span."""
    assert points[0]["start_s"] == 0.0
    for a, b in itertools.pairwise(points):
        assert a["end_s"] == pytest.approx(b["start_s"], abs=1e-3)
    for p in points:
        start, end = p["start_s"], p["end_s"]
        assert end - start <= chunk_s * 1.5 + 1e-6, p  # shot cuts move a boundary, never double a chunk
        for _word, w_start, w_end in p["words"]:
            assert start - 1e-3 <= (w_start + w_end) / 2 <= end + 1e-3, (p["chunk_index"], _word)
        for turn in p["speakers"]:
            assert start - 1e-3 <= turn["start_s"] and turn["end_s"] <= end + 1e-3
        for face in p["faces"]:
            assert start - 1e-3 <= face["start_s"] <= end + 1e-3


async def test_a_new_chunk_length_recuts_into_a_new_version(tmp_path: Path, ml_service_url: str) -> None:
    media = tmp_path / "media"
    make_talk_video(media / "programme.mp4", n_phrases=4)
    data = tmp_path / "data"
    long_cut = {"chunk_seconds": 12.0, "min_chunk_seconds": 3.0}
    async with running_orchestrator(make_settings(data, ml_service_url, [tmp_path], **long_cut)) as orch:
        first = await _ingest(orch, media)
        assert first["state"] == "completed" and first["counters"]["failed"] == 0, first
        v1 = await _points(orch, "talk")
    _check_spans(v1, 12.0)

    short_cut = {"chunk_seconds": 5.0, "min_chunk_seconds": 2.0}
    async with running_orchestrator(make_settings(data, ml_service_url, [tmp_path], **short_cut)) as orch:
        shown = (await orch.client.get("/collections/talk")).json()
        assert shown["stale"]["kind"] == "rebuild" and "av chunk plan" in shown["stale"]["changes"][0], shown
        done = await _ingest(orch, media)  # an ingest into a stale collection brings it up to date first
        assert done["state"] == "completed" and done["counters"]["failed"] == 0, done
        assert done["reanalysis"]["phase"] == "switched"
        # Another plan: every chunk analysed again (images and audio), nothing reused by index.
        assert {"asr", "ocr", "faces", "text"} <= set(done["ml_calls_by_task"]), done["ml_calls_by_task"]
        v2 = await _points(orch, "talk__v2")
        assert len(v2) > len(v1)
        _check_spans(v2, 5.0)
        assert {p["chunk_plan"] for p in v2} != {p["chunk_plan"] for p in v1}
        # Both versions' chunk thumbnails: the kept version 1 still shows its own.
        assert all(p["chunk_plan"] for p in v1 + v2)
        for p in v2:
            thumb = await orch.client.get(f"/media/{p['id']}/thumbnail", params={"collection": "talk"})
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        thumbs = data / "thumbnails"
        for p in v1:
            name = f"{p['content_hash']}_{p['chunk_plan']}_{p['chunk_index']}.jpg"
            assert (thumbs / p["content_hash"][:2] / name).is_file()
        spoken = " ".join(next(p["transcript"] for p in v2 if p["transcript"]).split()[:4])
        found = (await orch.client.get("/search", params={"q": spoken, "collection": "talk"})).json()
        assert found["version"] == 2 and found["hits"]
