"""The orchestrator against an ML service that requires a key (ML_API_KEY): with ML_SERVICE_API_KEY a job
completes; without it, the job fails naming the refusal instead of ingesting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.app_factory import counting_store, make_settings
from tests.support.ml_server import NO_MODELS, QUICK_START_TEXT, running_ml_service
from tests.support.orchestrator_server import running_orchestrator
from tests.support.vlm_standin import solid_image

pytestmark = pytest.mark.slow

KEY = "shared-ml-key-91c2"


async def test_a_job_against_a_keyed_ml_service(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "red.png").write_bytes(solid_image("red", (160, 120)))
    (media / "blue.jpg").write_bytes(solid_image("blue", (160, 120), "JPEG"))
    # The key is under test, not the models: tags and the quick-starting text model.
    env = {
        **NO_MODELS,
        **QUICK_START_TEXT,
        "ML_TEXT_ENABLED": "true",
        "ML_IMAGE_TASKS": "tags",
        "ML_API_KEY": KEY,
    }
    with running_ml_service(env=env) as ml:
        keyed = make_settings(tmp_path / "keyed", ml.url, [tmp_path], ml_service_api_key=KEY)
        async with running_orchestrator(keyed, counting_store(keyed)) as orch:
            resp = await orch.client.post("/jobs", json={"path": str(media), "collection": "keyed"})
            assert resp.status_code == 202, resp.text
            status = await orch.wait_job(resp.json()["job_id"], timeout_s=120)
            assert status["state"] == "completed", status
            counters = status["counters"]
            assert isinstance(counters, dict) and (counters["upserted"], counters["failed"]) == (2, 0)
            ready = await orch.client.get("/ready")
            assert ready.json()["ml_service"] is True

        keyless = make_settings(tmp_path / "keyless", ml.url, [tmp_path])
        async with running_orchestrator(keyless, counting_store(keyless)) as orch:
            resp = await orch.client.post("/jobs", json={"path": str(media), "collection": "keyless"})
            status = await orch.wait_job(resp.json()["job_id"], timeout_s=120)
            assert status["state"] == "failed", status
            assert "401" in str(status["error"]), status
