"""Two real ML service processes behind ML_SERVICE_URLS; one is killed mid-job: the job completes on the
other with every file stored exactly once, and the dead replica is reported out."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path

import pytest

from scripts.bench_pipeline import make_images
from tests.support.app_factory import counting_store, make_settings
from tests.support.ml_server import LIGHT_TAGS, running_ml_service
from tests.support.orchestrator_server import running_orchestrator

pytestmark = pytest.mark.slow

# Light replicas (the routing is under test, not the models).
LIGHT = LIGHT_TAGS
FILES = 60
KILL_AFTER = 20  # files inferred: the job is well under way, with most of its files still to go


async def test_a_replica_killed_mid_job_loses_nothing(tmp_path: Path) -> None:
    files = make_images(tmp_path / "media", FILES)
    with ExitStack() as stack:
        # Both load their models at once (one core each): the time of one start, not two.
        first = stack.enter_context(running_ml_service(env=LIGHT, wait_ready=False))
        second = stack.enter_context(running_ml_service(env=LIGHT, wait_ready=False))
        for replica in (first, second):
            await asyncio.to_thread(replica.wait_ready)
        settings = make_settings(
            tmp_path / "data",
            first.url,
            [tmp_path],
            ml_service_urls=f"{first.url},{second.url}",
            ml_health_interval_s=0.2,
            ml_retry_deadline_s=60.0,
        )
        store = counting_store(settings)
        async with running_orchestrator(settings, store) as orch:
            resp = await orch.client.post("/jobs", json={"path": str(tmp_path / "media"), "collection": "r"})
            job_id = resp.json()["job_id"]
            while True:  # kill the first replica once the job is well under way
                status = (await orch.client.get(f"/jobs/{job_id}")).json()
                if status["counters"]["inferred"] >= KILL_AFTER or status["state"] != "running":
                    break
                await asyncio.sleep(0.05)
            assert status["state"] == "running", status
            replicas_at_kill = (await orch.client.get("/ready")).json()["ml_replicas"]
            first.process.kill()
            done = await orch.wait_job(job_id, timeout_s=300)
            assert done["state"] == "completed", done
            counters = done["counters"]
            assert isinstance(counters, dict) and counters["failed"] == 0, done["errors"]
            assert counters["upserted"] == len(files) == await store.count("r")
            ready = (await orch.client.get("/ready")).json()
            replicas = {r["url"]: r for r in ready["ml_replicas"]}
            assert replicas[first.url]["healthy"] is False
            assert replicas[second.url]["healthy"] is True
            assert replicas[first.url]["requests"] > 0 and replicas[second.url]["requests"] > 0
            # The second replica went on with the job after the kill.
            served_before = next(r["requests"] for r in replicas_at_kill if r["url"] == second.url)
            assert replicas[second.url]["requests"] > served_before
            assert ready["ready"] is True  # one replica is enough to serve
            hits = (await orch.client.get("/search", params={"q": "image", "collection": "r"})).json()
            assert hits["hits"]
