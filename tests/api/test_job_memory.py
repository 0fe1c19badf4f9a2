"""Bounded memory: a job that ended leaves the JobManager's memory (its row and every error are in the job
store), and everything about it is still answered from the store: status, the list, errors, events, an
Idempotency-Key, a refused transition; the metrics keep counting what it did."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.jobs import Job
from scripts.bench_pipeline import make_images
from tests.support.app_factory import counting_store, make_settings
from tests.support.orchestrator_server import running_orchestrator

pytestmark = pytest.mark.slow

JOBS = 3
IMAGES = 2


def _jobs_alive(ids: set[str]) -> int:
    """Job objects of these ids anywhere in this process's memory."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Job) and o.id in ids)


async def test_ended_jobs_leave_memory_and_are_served_from_the_store(
    tmp_path: Path, ml_service_url: str
) -> None:
    for i in range(JOBS):
        await asyncio.to_thread(make_images, tmp_path / f"m{i}", IMAGES, 20 + i)
        (tmp_path / f"m{i}" / "empty.jpg").write_bytes(b"")  # one file error per job
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path])
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        ids: list[str] = []
        for i in range(JOBS):
            headers = {"Idempotency-Key": "first"} if i == 0 else {}
            resp = await orch.client.post("/jobs", json={"path": str(tmp_path / f"m{i}")}, headers=headers)
            ids.append(resp.json()["job_id"])
            assert (await orch.wait_job(ids[-1]))["state"] == "completed"

        manager = orch.app.state.jobs
        for _ in range(500):  # bounded: the last one leaves memory right after its final write
            if not manager.live():
                break
            await asyncio.sleep(0.02)
        assert manager.live() == []
        assert _jobs_alive(set(ids)) == 0  # nothing else holds them either: memory does not grow with history

        old = ids[0]
        status = (await orch.client.get(f"/jobs/{old}")).json()
        assert status["state"] == "completed" and status["counters"]["upserted"] == IMAGES
        assert [e["path"] for e in status["errors"]] == [str(tmp_path / "m0" / "empty.jpg")]
        listed = (await orch.client.get("/jobs")).json()["jobs"]
        assert [j["job_id"] for j in listed] == ids[::-1]
        errors = (await orch.client.get(f"/jobs/{old}/errors")).json()
        assert errors["total"] == 1 and errors["errors"][0]["stage"] == "prepare"

        events: list[dict[str, Any]] = []
        async with orch.client.stream("GET", f"/jobs/{old}/events") as stream:
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        assert [(e["type"], e["state"]) for e in events] == [("end", "completed")]

        again = await orch.client.post(
            "/jobs", json={"path": str(tmp_path / "m0")}, headers={"Idempotency-Key": "first"}
        )
        assert again.json()["job_id"] == old  # the key still returns the job it created
        refused = await orch.client.post(f"/jobs/{old}/pause")
        assert refused.status_code == 409 and refused.json()["detail"]["state"] == "completed"
        assert (await orch.client.get("/jobs/nope")).status_code == 404

        metrics = (await orch.client.get("/metrics")).text
        assert f'archivist_pipeline_total{{counter="upserted"}} {float(JOBS * IMAGES)}' in metrics
        assert f'archivist_jobs{{state="completed"}} {float(JOBS)}' in metrics
        assert manager.live() == []  # reading them did not bring them back
