"""Job lifecycle over real HTTP with the real ML service: pause/resume/cancel, 409s, idempotency, live
events (SSE and WebSocket), history and errors across a restart, metrics, request ids."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import websockets

from scripts.bench_pipeline import make_images
from tests.support.app_factory import counting_store, make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow


async def _status(orch: RunningOrchestrator, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await orch.client.get(f"/jobs/{job_id}")).json()
    return body


async def _until(orch: RunningOrchestrator, job_id: str, counter: str, at_least: int) -> dict[str, Any]:
    for _ in range(1200):  # bounded: 2 minutes
        status = await _status(orch, job_id)
        if status["counters"][counter] >= at_least or status["state"] not in ("queued", "running", "paused"):
            return status
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{counter} never reached {at_least}")


async def test_pause_resume_cancel_and_invalid_transitions(tmp_path: Path, ml_service_url: str) -> None:
    media = tmp_path / "media"
    await asyncio.to_thread(make_images, media, 40)
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path], ml_inference_batch_size=2)
    store = counting_store(settings)
    async with running_orchestrator(settings, store) as orch:
        job_id = (await orch.client.post("/jobs", json={"path": str(media)})).json()["job_id"]
        job = await orch.app.state.jobs.get(job_id)  # the live job, to see its in-flight work
        await _until(orch, job_id, "upserted", 2)
        paused = await orch.client.post(f"/jobs/{job_id}/pause")
        assert paused.status_code == 200 and paused.json()["state"] == "paused"
        again = await orch.client.post(f"/jobs/{job_id}/pause")
        assert again.status_code == 409 and again.json()["detail"]["state"] == "paused"
        for _ in range(1200):  # in-flight batches finish (bounded: 2 minutes) ...
            idle = all(job.progress.stages[s].active == 0 for s in ("prepare", "infer", "upsert"))
            counters = job.progress.counters
            if idle and counters["upserted"] == counters["inferred"]:  # one chunk per image, no cache
                break
            await asyncio.sleep(0.1)
        frozen = (await _status(orch, job_id))["counters"]["upserted"]
        await asyncio.sleep(1.5)  # ... and then nothing moves
        assert (await _status(orch, job_id))["counters"]["upserted"] == frozen < 40
        resumed = await orch.client.post(f"/jobs/{job_id}/resume")
        assert resumed.status_code == 200 and resumed.json()["state"] == "running"
        final = await orch.wait_job(job_id)
        assert final["state"] == "completed" and final["counters"]["upserted"] == 40
        assert (await orch.client.post(f"/jobs/{job_id}/cancel")).status_code == 409
        assert (await orch.client.post(f"/jobs/{job_id}/resume")).status_code == 409
        assert (await orch.client.post("/jobs/nope/pause")).status_code == 404

        # Cancel mid-way: stops promptly; what is stored is marked done, and nothing else is.
        more = tmp_path / "more"
        await asyncio.to_thread(make_images, more, 40, 11)
        job_id = (await orch.client.post("/jobs", json={"path": str(more), "collection": "c2"})).json()[
            "job_id"
        ]
        await _until(orch, job_id, "upserted", 2)
        cancelled = await orch.client.post(f"/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        final = await orch.wait_job(job_id, timeout_s=10)
        assert final["state"] == "cancelled"
        stored = await store.count("c2")
        assert stored < 40
        assert await orch.services.index.count("c2") == stored
        rerun = await orch.wait_job(
            (await orch.client.post("/jobs", json={"path": str(more), "collection": "c2"})).json()["job_id"]
        )
        assert rerun["state"] == "completed"
        assert rerun["counters"]["unchanged"] == stored
        assert await store.count("c2") == 40


async def test_idempotency_events_history_metrics(
    tmp_path: Path, ml_service_url: str, sample_copy: Path
) -> None:
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path])
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        first = await orch.client.post(
            "/jobs", json={"path": str(sample_copy)}, headers={"Idempotency-Key": "k1"}
        )
        same = await orch.client.post("/jobs", json={"path": str(sample_copy)})
        job_id = first.json()["job_id"]
        assert same.json()["job_id"] == job_id  # same path + collection while active

        sse_events: list[dict[str, Any]] = []
        async with orch.client.stream("GET", f"/jobs/{job_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    sse_events.append(json.loads(line[6:]))
        assert sse_events[-1]["type"] == "end" and sse_events[-1]["state"] == "completed"
        assert len(sse_events) >= 2
        done = [e["counters"]["done"] for e in sse_events]
        assert done == sorted(done) and done[-1] == sse_events[-1]["counters"]["discovered"]

        ws_url = orch.url.replace("http", "ws") + f"/jobs/{job_id}/ws"
        async with websockets.connect(ws_url) as ws:
            ws_events = [json.loads(message) async for message in ws]
        assert ws_events[-1] == {k: v for k, v in sse_events[-1].items() if k in ws_events[-1]}
        assert set(ws_events[-1]) == set(sse_events[-1])

        repeat = await orch.client.post(
            "/jobs", json={"path": str(sample_copy)}, headers={"Idempotency-Key": "k1"}
        )
        assert repeat.json()["job_id"] == job_id  # the key returns the job it created, even when finished

        metrics = (await orch.client.get("/metrics")).text
        assert 'archivist_pipeline_total{counter="upserted"} 12.0' in metrics
        assert 'archivist_ml_request_seconds_count{endpoint="/v1/analyze/images",outcome="200"}' in metrics
        assert 'archivist_file_errors_total{reason="empty_file",stage="prepare"} 1.0' in metrics

        echoed = await orch.client.get("/health", headers={"x-request-id": "abc123"})
        assert echoed.headers["x-request-id"] == "abc123"
        errors_before = (await orch.client.get(f"/jobs/{job_id}/errors")).json()

    # A new process on the same data dir shows the history, the errors and honours the key.
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        listed = (await orch.client.get("/jobs")).json()["jobs"]
        assert [j["job_id"] for j in listed] == [job_id]
        assert listed[0]["state"] == "completed" and listed[0]["counters"]["upserted"] == 12
        errors_after = (await orch.client.get(f"/jobs/{job_id}/errors")).json()
        assert errors_after == errors_before and errors_after["total"] == 3
        page = (await orch.client.get(f"/jobs/{job_id}/errors", params={"offset": 1, "limit": 1})).json()
        assert page["errors"] == errors_before["errors"][1:2]
        repeat = await orch.client.post(
            "/jobs", json={"path": str(sample_copy)}, headers={"Idempotency-Key": "k1"}
        )
        assert repeat.json()["job_id"] == job_id
