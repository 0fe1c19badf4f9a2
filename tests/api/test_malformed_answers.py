"""A malformed ML answer is that item's failure, never the job's: face vectors holding nulls or NaN, of the
wrong size, boxes that are not numbers (faces stay, unclustered); a text vector holding NaN (that file fails
with a reason). Real orchestrator, real ML service and store; the stand-in answers are the real answers
with malformed parts written into them on their way back."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from scripts.bench_pipeline import make_images
from tests.support.app_factory import counting_store, make_settings
from tests.support.orchestrator_server import running_orchestrator

pytestmark = pytest.mark.slow


async def test_malformed_vectors_fail_items_not_the_job(
    tmp_path: Path, ml_service_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = tmp_path / "media"
    await asyncio.to_thread(make_images, media, 4)
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path])
    store = counting_store(settings)
    async with running_orchestrator(settings, store) as orch:
        ml = orch.services.ml
        caps = await ml.capabilities()
        dim = int(caps.models["faces"].get("vector_size") or 128)
        good = [1.0 / math.sqrt(dim)] * dim
        real_images, real_embed = ml.analyze_images, ml.embed_text

        async def analyze_images(items: list[Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
            results = await real_images(items, *args, **kwargs)
            for r in results:
                r["faces"] = [
                    {"box": [1, 2, 30, 30], "score": 0.9, "embedding": [None] * dim},
                    {"box": [40, 2, 30, 30], "score": 0.9, "embedding": [float("nan")] * dim},
                    {"box": [80, 2, 30, 30], "score": 0.9, "embedding": [*good, 0.5]},  # one too many
                    {"box": [None, 2, 30, 30], "score": "high", "embedding": good},
                ]
            return results

        embedded: list[int] = []

        async def embed_text(texts: list[str], *args: Any, **kwargs: Any) -> list[list[float] | None]:
            vectors = await real_embed(texts, *args, **kwargs)
            if not embedded:  # the very first chunk's text vector holds NaN
                vectors[0] = [float("nan"), *(vectors[0] or [])[1:]]
            embedded.append(len(texts))
            return vectors

        monkeypatch.setattr(ml, "analyze_images", analyze_images)
        monkeypatch.setattr(ml, "embed_text", embed_text)
        resp = await orch.client.post("/jobs", json={"path": str(media)})
        final = await orch.wait_job(resp.json()["job_id"])

        assert final["state"] == "completed", final
        assert final["counters"]["failed"] == 1 and final["counters"]["upserted"] == 3
        assert "invalid text vector" in final["errors"][0]["reason"]
        points, _ = await store.scroll("media", None, 10, None)
        assert len(points) == 3
        persons = set()
        for point in points:
            faces = point.payload["faces"]
            assert len(faces) == 4
            assert [f["person"] is not None for f in faces] == [False, False, False, True]
            assert faces[3]["box"] is None and faces[3]["score"] is None
            persons.add(faces[3]["person"])
        # One face per stored file was clustered, and the three are the same person.
        assert await store.count("media_faces") == 3 and len(persons) == 1
