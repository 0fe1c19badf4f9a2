"""The ML service dying in the middle of a job: the job fails with a reason in bounded time, no stage task
is left hanging, what was stored stays consistent, and a later job completes without duplicates."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from scripts.bench_pipeline import make_images
from scripts.ml_process import ServiceFailed, wait_ready
from tests.support.app_factory import counting_store, make_settings
from tests.support.ml_server import LIGHT_TAGS, NO_MODELS, running_ml_service
from tests.support.orchestrator_server import running_orchestrator

pytestmark = pytest.mark.slow

FILES = 40
# Services these tests kill and start again: light ones (tags and the quick-starting text model), as the ML
# service's death and return are under test, not its models. A start with every default model costs about
# fifteen times as much (13.6 s against 0.9 s on a quiet machine), and each test here pays two.
LIGHT = LIGHT_TAGS


def _pipeline_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if "orchestrator.pipeline" in repr(t.get_coro())]


async def test_ml_service_killed_mid_job(tmp_path: Path) -> None:
    media = tmp_path / "media"
    await asyncio.to_thread(make_images, media, FILES)
    with running_ml_service(env=LIGHT) as doomed:
        settings = make_settings(
            tmp_path / "data", doomed.url, [tmp_path], ml_inference_batch_size=2, ml_retry_deadline_s=2.0
        )
        store = counting_store(settings)
        async with running_orchestrator(settings, store) as orch:
            job_id = (await orch.client.post("/jobs", json={"path": str(media)})).json()["job_id"]
            job = await orch.app.state.jobs.get(job_id)  # the live job (an ended one leaves memory)
            for _ in range(600):  # bounded: up to 60 s for the first points to land
                status = (await orch.client.get(f"/jobs/{job_id}")).json()
                if status["counters"]["upserted"] >= 2:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"no progress before the kill: {status}")
            doomed.process.kill()
            killed_at = asyncio.get_running_loop().time()
            final = await orch.wait_job(job_id, timeout_s=60)
            took = asyncio.get_running_loop().time() - killed_at

            assert final["state"] == "failed"
            assert "ML service unavailable" in str(final["error"])
            assert took < 30, f"the job took {took:.1f}s to notice"
            deadline = asyncio.get_running_loop().time() + 10
            while leftovers := _pipeline_tasks():  # none outlives the job (bounded: they are ending)
                assert asyncio.get_running_loop().time() < deadline, f"outlived the job: {leftovers}"
                await asyncio.sleep(0.05)
            assert job.control.stop_flag.is_set()  # the scan thread was told to stop

            stored = await store.count("media")
            indexed = await orch.services.index.count("media")
            assert 2 <= stored < FILES
            assert indexed == stored  # every file marked done has its point, and nothing else is marked

            # The service comes back on the same address: the same job again completes, nothing is
            # duplicated, and files stored before the failure cost no ML call.
            port = int(doomed.url.rsplit(":", 1)[1])
            with running_ml_service(port=port, env=LIGHT):
                ml_before = orch.services.ml.requests
                again_id = (await orch.client.post("/jobs", json={"path": str(media)})).json()["job_id"]
                again = await orch.wait_job(again_id, timeout_s=300)
            assert again["state"] == "completed", again
            assert await store.count("media") == FILES
            counters = again["counters"]
            assert isinstance(counters, dict)
            assert counters["unchanged"] == stored
            assert counters["inferred"] == FILES - stored
            assert orch.services.ml.requests > ml_before


async def test_ml_service_restarting_mid_job_is_waited_for(tmp_path: Path) -> None:
    """With a deadline longer than the restart, the job waits (reason visible in its status), then goes
    on when the service is back and completes with nothing lost."""
    media = tmp_path / "media"
    await asyncio.to_thread(make_images, media, 24)
    with running_ml_service(env=LIGHT) as first:
        port = int(first.url.rsplit(":", 1)[1])
        settings = make_settings(
            tmp_path / "data", first.url, [tmp_path], ml_inference_batch_size=2, ml_retry_deadline_s=120.0
        )
        store = counting_store(settings)
        async with running_orchestrator(settings, store) as orch:
            job_id = (await orch.client.post("/jobs", json={"path": str(media)})).json()["job_id"]
            for _ in range(600):  # bounded: up to 60 s for the first points to land
                upserted = (await orch.client.get(f"/jobs/{job_id}")).json()["counters"]["upserted"]
                if upserted >= 2:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("no progress before the kill")
            first.process.kill()
            stored_before = await store.count("media")
            assert stored_before < 24, "the job had ended before the kill"
            for _ in range(300):
                status = (await orch.client.get(f"/jobs/{job_id}")).json()
                if status["waiting_for"]:
                    break
                await asyncio.sleep(0.1)
            assert status["state"] == "running" and "ML service" in status["waiting_for"]
            with running_ml_service(port=port, env=LIGHT):
                final = await orch.wait_job(job_id, timeout_s=180)
            assert final["state"] == "completed", final
            assert final["waiting_for"] is None
            assert await store.count("media") == 24
            counters = final["counters"]
            assert isinstance(counters, dict) and counters["upserted"] == 24  # stored after the restart too


async def test_failed_models_fail_the_job_at_once_with_the_reason(tmp_path: Path) -> None:
    """A service whose models failed to load answers 503 "models_failed": the job fails in seconds with that
    reason instead of retrying until its (here 120 s) deadline; waiting for /ready stops at once too."""
    media = tmp_path / "media"
    await asyncio.to_thread(make_images, media, 2)
    env = {**NO_MODELS, "ML_TEXT_ENABLED": "true", "ML_TEXT_MODEL_PATH": "/nonexistent/model"}
    with running_ml_service(env=env, wait_ready=False) as broken:
        started = time.monotonic()
        with pytest.raises(ServiceFailed, match=r"failed to start: .*no model files under /nonexistent"):
            await asyncio.to_thread(wait_ready, broken.url, broken.process, 120.0, log_path=broken.log_path)
        assert time.monotonic() - started < 60
        settings = make_settings(tmp_path / "data", broken.url, [tmp_path], ml_retry_deadline_s=120.0)
        async with running_orchestrator(settings, counting_store(settings)) as orch:
            job_id = (await orch.client.post("/jobs", json={"path": str(media)})).json()["job_id"]
            started = time.monotonic()
            final = await orch.wait_job(job_id, timeout_s=60)
            assert final["state"] == "failed"
            error = str(final["error"])
            assert "models failed" in error and "/nonexistent/model" in error
            assert time.monotonic() - started < 30, "the job retried a service that cannot recover"
