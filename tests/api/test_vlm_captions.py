"""VLM stand-in answers become chunk captions: a real orchestrator ingests two images through an ML service
whose "caption" task asks the stand-in VLM (tests/support/vlm_standin.py), then finds each image by words
that only the stand-in's description of it contains."""

from __future__ import annotations

from pathlib import Path

from tests.support.app_factory import counting_store, make_settings
from tests.support.ml_server import MLService
from tests.support.orchestrator_server import running_orchestrator
from tests.support.vlm_standin import VLMStandIn, scene_for, solid_image


async def test_vlm_descriptions_become_searchable_captions(
    tmp_path: Path, vlm_ml_service: MLService, vlm_standin: VLMStandIn
) -> None:
    vlm_standin.reset()
    media = tmp_path / "media"
    media.mkdir()
    (media / "first.png").write_bytes(solid_image("red", (160, 120)))
    (media / "second.jpg").write_bytes(solid_image("blue", (160, 120), "JPEG"))
    settings = make_settings(tmp_path / "data", vlm_ml_service.url, [tmp_path])
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        resp = await orch.client.post("/jobs", json={"path": str(media), "collection": "vlm"})
        assert resp.status_code == 202, resp.text
        status = await orch.wait_job(resp.json()["job_id"], timeout_s=120)
        assert status["state"] == "completed", status
        assert status["counters"]["upserted"] == 2, status  # type: ignore[index]

        for query, colour, name in (
            ("submarine moored under a pier", "blue", "second.jpg"),
            ("vintage fire engine", "red", "first.png"),
        ):
            resp = await orch.client.get("/search", params={"q": query, "collection": "vlm", "limit": 5})
            assert resp.status_code == 200, resp.text
            top = resp.json()["hits"][0]
            assert top["path"] == str(media / name), (query, resp.json()["hits"])
            record = (await orch.client.get(f"/media/{top['id']}", params={"collection": "vlm"})).json()
            assert record["caption"] == scene_for(colour)["description"]
            assert scene_for(colour)["description"] in record["text"]
    assert vlm_standin.problems == []
    assert vlm_standin.count("red") == 1 and vlm_standin.count("blue") == 1


async def test_a_failed_caption_keeps_the_rest_and_is_retried(
    tmp_path: Path, vlm_ml_service: MLService, vlm_standin: VLMStandIn
) -> None:
    """The VLM answering garbage for one image: the image is stored with what the local models found, not
    marked done, and asked again on the next run, which stores its caption."""
    vlm_standin.reset()
    vlm_standin.set_mode("red", "invalid_json")
    media = tmp_path / "media"
    media.mkdir()
    (media / "red.png").write_bytes(solid_image("red", (160, 120)))
    (media / "blue.png").write_bytes(solid_image("blue", (160, 120)))
    settings = make_settings(tmp_path / "data", vlm_ml_service.url, [tmp_path])
    store = counting_store(settings)
    async with running_orchestrator(settings, store) as orch:

        async def ingest() -> dict[str, object]:
            resp = await orch.client.post("/jobs", json={"path": str(media), "collection": "retry"})
            return await orch.wait_job(resp.json()["job_id"], timeout_s=120)

        first = await ingest()
        assert first["state"] == "completed", first
        counters = first["counters"]
        assert isinstance(counters, dict)
        assert (counters["upserted"], counters["failed"], counters["partial"]) == (2, 0, 1)
        points, _ = await store.scroll("retry", None, 10, None)
        captions = {Path(str(p.payload["path"])).name: p.payload["caption"] for p in points}
        assert captions == {"red.png": None, "blue.png": scene_for("blue")["description"]}

        vlm_standin.set_mode("red", "good")
        second = await ingest()
        counters = second["counters"]
        assert isinstance(counters, dict)
        assert (counters["unchanged"], counters["partial"], counters["upserted"]) == (1, 0, 1)
        assert vlm_standin.count("red") == 2 and vlm_standin.count("blue") == 1
        points, _ = await store.scroll("retry", None, 10, None)
        captions = {Path(str(p.payload["path"])).name: p.payload["caption"] for p in points}
        assert captions["red.png"] == scene_for("red")["description"]
        assert len(points) == 2
