"""Infer caches each chunk's results as they arrive: a job that fails late in a long video (the ML service
gone for good), or a video one of whose keyframes the ML service cannot analyse, keeps the ML work done on
its other chunks, and the next run asks only for the chunks not cached yet. Real orchestrator, real ML
service, a real multi-shot video; the failures are made by wrapping the real client's call."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from orchestrator.clients.ml import MLUnavailableError
from scripts.av_write import textured, write_video
from tests.support.app_factory import counting_store, make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow

SHOTS = 6


async def _ingest(orch: RunningOrchestrator, path: Path) -> dict[str, Any]:
    resp = await orch.client.post("/jobs", json={"path": str(path), "collection": "v"})
    return await orch.wait_job(resp.json()["job_id"])


async def test_a_failure_mid_video_keeps_the_chunks_analysed_before_it(
    tmp_path: Path, ml_service_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    shots = [(textured(180, 320, 40 + i), 2.0) for i in range(SHOTS)]  # a cut every 2 s
    await asyncio.to_thread(write_video, media / "long.mp4", shots, 5)
    settings = make_settings(
        tmp_path / "data",
        ml_service_url,
        [tmp_path],
        chunk_seconds=2.0,
        min_chunk_seconds=1.0,
        keyframes_per_chunk=1,
        ml_inference_batch_size=1,  # one chunk per round: one image request per chunk
    )
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        ml = orch.services.ml
        real = ml.analyze_images
        calls: list[int] = []

        def wrap(fail_at: int | None, bad_item_at: int | None) -> None:
            calls.clear()

            async def analyze_images(items: list[Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
                calls.append(len(items))
                if len(calls) == fail_at:
                    raise MLUnavailableError("ML service unavailable (the test took it away)")
                results = await real(items, *args, **kwargs)
                if len(calls) == bad_item_at:
                    results = [
                        {"id": r["id"], "ok": False, "error": "cannot analyse this frame"} for r in results
                    ]
                return results

            monkeypatch.setattr(ml, "analyze_images", analyze_images)

        # 1. The ML service goes away at the third chunk: the job fails, two chunks are cached.
        wrap(fail_at=3, bad_item_at=None)
        first = await _ingest(orch, media)
        assert first["state"] == "failed" and "unavailable" in first["error"], first
        chunks = first["counters"]["chunks"]
        assert chunks >= 4, first  # enough chunks that the failure is mid-file
        assert len(calls) == 3

        # 2. One chunk's keyframe cannot be analysed: the file fails, every other chunk is cached.
        wrap(fail_at=None, bad_item_at=2)
        second = await _ingest(orch, media)
        assert second["state"] == "completed", second
        assert second["counters"]["cache_hits"] == 2
        assert len(calls) == chunks - 2  # only what the first run had not cached
        assert second["counters"]["failed"] == 1
        assert "cannot analyse this frame" in second["errors"][0]["reason"]

        # 3. The next run asks for that one chunk only, and stores the video.
        wrap(fail_at=None, bad_item_at=None)
        third = await _ingest(orch, media)
        assert third["state"] == "completed", third
        assert third["counters"]["cache_hits"] == chunks - 1
        assert calls == [1]
        assert third["counters"]["upserted"] == chunks and third["counters"]["failed"] == 0


async def test_a_collection_built_from_the_cache_has_every_chunks_words_at_their_times(
    tmp_path: Path, ml_service_url: str
) -> None:
    """A second collection of the same audio is built from cached answers without decoding: each chunk's
    words keep their times (they are relative to where the chunk's audio starts, which the cache keeps)."""
    import numpy as np

    from scripts.speech import VOICES, silence, synthesize, write_wav
    from scripts.talk_video import sentences

    media = tmp_path / "media"
    media.mkdir()
    said = [synthesize(s, VOICES["low"]) for s in sentences(4)]
    speech = np.concatenate([part for s in said for part in (s, silence(0.8))])
    await asyncio.to_thread(write_wav, media / "report.wav", speech)
    settings = make_settings(
        tmp_path / "data", ml_service_url, [tmp_path], chunk_seconds=5.0, min_chunk_seconds=2.0
    )
    store = counting_store(settings)
    async with running_orchestrator(settings, store) as orch:
        words: dict[str, list[tuple[float, str, str, list[Any]]]] = {}
        for collection in ("decoded", "cached"):
            resp = await orch.client.post("/jobs", json={"path": str(media), "collection": collection})
            done = await orch.wait_job(resp.json()["job_id"])
            assert done["state"] == "completed", done
            points, _ = await store.scroll(collection, None, 100, None)
            chunks = sorted((p.payload for p in points), key=lambda p: p["start_s"])
            words[collection] = [(c["start_s"], c["transcript"], c["language"], c["words"]) for c in chunks]
        assert done["counters"]["cache_hits"] == len(chunks) >= 3, done  # nothing decoded or asked again
        assert words["cached"] == words["decoded"]
        assert sum(len(c[3]) for c in words["cached"]) >= 30  # every chunk's words, not only the first's
