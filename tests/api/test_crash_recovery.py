"""A real orchestrator process killed with SIGKILL mid-job resumes the job at its next start: the job
completes, every expected point is there exactly once, and files stored before the kill cost no ML call
afterwards. Also: the ML service down at the start makes a job wait (visibly), not fail."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.clients.vectors_edge import EdgeVectorStore
from scripts.bench_pipeline import make_images
from scripts.ml_process import REPO, free_port, stop_process, wait_ready
from tests.support.ml_server import LIGHT_TAGS, running_ml_service

pytestmark = pytest.mark.slow

# Distinct images in three directories; the kill comes once a fifth of them are stored. Dozens of files
# show a resume as well as hundreds did (300 cost minutes of inference on 2 cores; 60 cost 5-7 s more than
# these 30 with the default models): some are stored before the kill, the rest after the restart.
DIRS = 3
FILES = 30
STORED_AT_KILL = FILES // 5


def _start(
    data: Path, roots: Path, ml_url: str, port: int, log: Path, **extra: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATA_DIR": str(data),
        "ALLOWED_ROOTS": str(roots),
        "ML_SERVICE_URL": ml_url,
        "PORT": str(port),
        "ML_INFERENCE_BATCH_SIZE": "4",
        **extra,
    }
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator"], cwd=REPO, env=env, stdout=out, stderr=out
        )
    wait_ready(f"http://127.0.0.1:{port}", proc, 60.0, path="/health")
    return proc


def _wait(client: httpx.Client, job_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if status["state"] not in ("queued", "running", "paused"):
            return status
        time.sleep(0.2)
    raise TimeoutError(status)


def test_kill_9_mid_job_then_resume(tmp_path: Path, ml_service_url: str) -> None:
    media = tmp_path / "media"
    for n in range(DIRS):
        make_images(media / f"part{n}", FILES // DIRS, seed=n)
    data = tmp_path / "data"
    port = free_port()
    log = tmp_path / "orchestrator.log"
    proc = _start(data, tmp_path, ml_service_url, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            job_id = client.post("/jobs", json={"path": str(media)}).json()["job_id"]
            deadline = time.monotonic() + 120
            while client.get(f"/jobs/{job_id}").json()["counters"]["upserted"] < STORED_AT_KILL:
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.1)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    finally:
        stop_process(proc)

    # What survived the kill, read with the engine directly (the process is gone).
    async def stored() -> int:
        store = EdgeVectorStore(data / "qdrant_edge")
        try:
            return await store.count("media")
        finally:
            await store.close()

    before = asyncio.run(stored())
    assert STORED_AT_KILL <= before < FILES

    proc = _start(data, tmp_path, ml_service_url, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            jobs = client.get("/jobs").json()["jobs"]
            assert [j["job_id"] for j in jobs] == [job_id]  # resumed by itself, no new job
            final = _wait(client, job_id, 300)
            assert final["state"] == "completed", final
            assert final["runs"] == 2
            counters = final["counters"]
            # Files whose points were durable before the kill cost no ML call now.
            assert counters["inferred"] <= FILES - before
            assert counters["unchanged"] + counters["cache_hits"] >= before
            collections = client.get("/collections").json()["collections"]
            assert collections == [{"name": "media", "points": FILES}]  # all there, none twice
    finally:
        stop_process(proc)


def test_ml_service_down_at_start_then_up(tmp_path: Path) -> None:
    media = tmp_path / "media"
    make_images(media, 6)
    ml_port = free_port()
    port = free_port()
    proc = _start(tmp_path / "data", tmp_path, f"http://127.0.0.1:{ml_port}", port, tmp_path / "o.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            job_id = client.post("/jobs", json={"path": str(media)}).json()["job_id"]
            deadline = time.monotonic() + 30
            while not (status := client.get(f"/jobs/{job_id}").json())["waiting_for"]:
                assert time.monotonic() < deadline, status
                time.sleep(0.1)
            assert status["state"] == "running" and "ML service" in status["waiting_for"]
            # A light service (tags, text): its coming up is under test, not its models.
            with running_ml_service(port=ml_port, env=LIGHT_TAGS):
                final = _wait(client, job_id, 120)
            assert final["state"] == "completed" and final["counters"]["upserted"] == 6
            assert final["waiting_for"] is None
    finally:
        stop_process(proc)


def test_ml_deadline_fails_the_job_clearly(tmp_path: Path) -> None:
    media = tmp_path / "media"
    make_images(media, 2)
    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}"
    proc = _start(tmp_path / "data", tmp_path, dead, port, tmp_path / "o.log", ML_RETRY_DEADLINE_S="2")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            job_id = client.post("/jobs", json={"path": str(media)}).json()["job_id"]
            final = _wait(client, job_id, 30)
            assert final["state"] == "failed"
            assert "ML service unavailable after 2s" in final["error"]
    finally:
        stop_process(proc)


def test_a_restart_does_not_resume_a_job_whose_root_is_no_longer_allowed(
    tmp_path: Path, ml_service_url: str
) -> None:
    """ALLOWED_ROOTS is checked again when jobs resume: a job under a root the new setting leaves out ends
    failed with the reason (and ingests nothing more); one under a root still allowed resumes."""
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    make_images(kept / "media", 4)
    make_images(dropped / "media", 40)
    data, port, log = tmp_path / "data", free_port(), tmp_path / "orchestrator.log"
    proc = _start(data, tmp_path, ml_service_url, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            doomed = client.post("/jobs", json={"path": str(dropped / "media")}).json()["job_id"]
            assert client.post(f"/jobs/{doomed}/pause").json()["state"] == "paused"
            survivor = client.post("/jobs", json={"path": str(kept / "media"), "collection": "kept"}).json()
            before = client.get(f"/jobs/{doomed}").json()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    finally:
        stop_process(proc)

    proc = _start(data, kept, ml_service_url, port, log)  # the setting now allows only `kept`
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            final = _wait(client, doomed, 30)
            assert final["state"] == "failed", final
            assert final["error"].startswith("not resumed after a restart: ")
            assert "outside the allowed roots" in final["error"]
            assert final["runs"] == before["runs"] and final["counters"] == before["counters"]
            assert _wait(client, survivor["job_id"], 120)["state"] == "completed"
            # Nothing of the refused root was ingested after the restart, and the refusal is final.
            names = {c["name"]: c["points"] for c in client.get("/collections").json()["collections"]}
            assert names.get("media", 0) == before["counters"]["upserted"] and names["kept"] == 4
            assert client.post(f"/jobs/{doomed}/resume").status_code == 409
    finally:
        stop_process(proc)
