"""The `archivist` CLI as a person runs it: a real subprocess against a real orchestrator over HTTP."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from scripts.make_samples import SampleManifest
from tests.support.app_factory import counting_store, make_settings
from tests.support.ml_server import MLService
from tests.support.orchestrator_server import running_orchestrator

pytestmark = pytest.mark.slow


async def _cli(url: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator.cli",
        *args,
        "--url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_cli_ingest_search_jobs_and_request_ids(
    tmp_path: Path, ml_service: MLService, samples: SampleManifest, sample_copy: Path
) -> None:
    settings = make_settings(tmp_path / "data", ml_service.url, [tmp_path])
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        code, out = await _cli(orch.url, "ingest", str(sample_copy), "--collection", "cli")
        assert code == 0, out
        assert "completed" in out and "upserted" in out
        assert "truncated.jpg" in out  # failures are shown, with their reason

        code, out = await _cli(orch.url, "search", "invoice total due", "-c", "cli", "-n", "3")
        assert code == 0, out
        first = next(line for line in out.splitlines() if line.strip().startswith("1."))
        assert "invoice_0173.png" in first
        assert "INVOICE" in out and "more: --offset 3" in out  # the snippet, and where the next page starts
        code, out = await _cli(orch.url, "search", "submarine volcano tax audit", "-c", "cli", "-n", "2")
        assert code == 0 and "no good match" in out, out

        # A re-analysis: nothing is stale, but the tags are asked again (--tasks), whatever the cache holds.
        code, out = await _cli(orch.url, "reanalyze", "cli", "--tasks", "tags")
        assert code == 0, out
        assert "completed" in out and "collection cli: version 1" in out
        again = (await orch.client.get("/jobs")).json()["jobs"][0]
        assert again["kind"] == "reanalyze" and set(again["ml_calls_by_task"]) <= {"tags", "text"}
        assert again["ml_calls_by_task"]["tags"] >= 1
        code, out = await _cli(orch.url, "reanalyze", "nothing-here")
        assert code == 2 and "404" in out

        # People: name the astronaut's face, find her photo by that name, undo.
        code, out = await _cli(orch.url, "people", "list", "-c", "cli")
        assert code == 0 and "person-" in out, out
        face = next(w for w in out.split() if w.startswith("person-"))
        code, out = await _cli(orch.url, "people", "name", face, "Eileen Collins", "-c", "cli")
        assert code == 0 and "Eileen Collins" in out, out
        code, out = await _cli(orch.url, "search", "photo", "-c", "cli", "--person", "eileen collins")
        assert code == 0 and "1." in out, out
        code, out = await _cli(orch.url, "people", "undo", "-c", "cli")
        assert code == 0 and f"undone: rename of {face}" in out, out
        code, out = await _cli(orch.url, "people", "undo", "-c", "cli")
        assert code == 2 and "409" in out

        code, out = await _cli(orch.url, "jobs")
        assert code == 0 and "completed" in out and "(reanalyze)" in out
        job_id = (await orch.client.get("/jobs")).json()["jobs"][-1]["job_id"]  # the ingest
        code, out = await _cli(orch.url, "pause", job_id)
        assert code == 2 and "409" in out  # a finished job cannot be paused: said, and a non-zero exit

        code, out = await _cli(orch.url, "ingest", str(tmp_path / "nowhere"))
        assert code == 2 and "400" in out

        # One search can be followed across both services by its request id.
        await orch.client.get(
            "/search", params={"q": "flood", "collection": "cli"}, headers={"x-request-id": "req-7f3a"}
        )
        log = await asyncio.to_thread(ml_service.log_path.read_text)
        assert '"request_id": "req-7f3a"' in log
        assert f'"request_id": "{job_id}"' in log  # and a job's batches by its job id


async def test_cli_ingest_exits_non_zero_when_the_job_fails(tmp_path: Path, sample_copy: Path) -> None:
    settings = make_settings(tmp_path / "data", "http://127.0.0.1:9", [tmp_path], ml_retry_deadline_s=1.0)
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        code, out = await _cli(orch.url, "ingest", str(sample_copy))
        assert code == 1, out
        assert "failed" in out and "ML service unavailable" in out
