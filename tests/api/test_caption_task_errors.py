"""A failed caption is read from the ML answer's structure (``task_errors``), not parsed from its message:
a VLM answer with two problems has a message with "; " inside the caption's reason, which the old string
parsing took for a second failed task, failing the whole file instead of storing it without a caption."""

from __future__ import annotations

from pathlib import Path

from tests.support.app_factory import counting_store, make_settings
from tests.support.ml_server import MLService
from tests.support.orchestrator_server import running_orchestrator
from tests.support.vlm_standin import VLMStandIn, scene_for, solid_image


async def test_a_caption_failing_for_two_reasons_keeps_the_image(
    tmp_path: Path, vlm_ml_service: MLService, vlm_standin: VLMStandIn
) -> None:
    vlm_standin.reset()
    vlm_standin.set_mode("red", "bad_fields")  # missing "setting" and "objects" a string: two problems
    media = tmp_path / "media"
    media.mkdir()
    (media / "red.png").write_bytes(solid_image("red", (160, 120)))
    (media / "blue.png").write_bytes(solid_image("blue", (160, 120)))
    settings = make_settings(tmp_path / "data", vlm_ml_service.url, [tmp_path])
    store = counting_store(settings)
    async with running_orchestrator(settings, store) as orch:
        resp = await orch.client.post("/jobs", json={"path": str(media), "collection": "two_problems"})
        status = await orch.wait_job(resp.json()["job_id"], timeout_s=120)
        assert status["state"] == "completed", status
        counters = status["counters"]
        assert isinstance(counters, dict)
        assert (counters["upserted"], counters["failed"], counters["partial"]) == (2, 0, 1), status
        points, _ = await store.scroll("two_problems", None, 10, None)
        captions = {Path(str(p.payload["path"])).name: p.payload["caption"] for p in points}
        assert captions == {"red.png": None, "blue.png": scene_for("blue")["description"]}
    assert vlm_standin.problems == []
