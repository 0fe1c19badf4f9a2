"""Pause and cancel at each of a job's last steps, over real HTTP with the real ML service: the final upsert,
then the finishing steps (people merge, prune, index build). Each step is held at a gate the test opens, so
the request lands exactly there. A pause or cancel never turns a job that did its work into a failed one:
a pause during the final upsert holds the finishing steps until resume; during the finishing steps a pause
is refused (409) and a cancel waits for them, then ends the job cancelled."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.clients.vectors import PointRecord, VectorStore
from orchestrator.clients.vectors_edge import EdgeVectorStore
from orchestrator.people import PeopleIndex
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.prune import prune
from scripts.bench_pipeline import make_images
from tests.support.app_factory import make_settings
from tests.support.counting_store import CountingStore
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator
from tests.support.polling import until

pytestmark = pytest.mark.slow

FILES = 3
COLLECTION = "media"
STEPS = ("upsert", "merge", "prune", "optimize")


@dataclass
class Gates:
    """Holds the armed step when it is reached, until the test releases it; records the order of steps."""

    armed: str | None = None
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[str] = field(default_factory=list)

    async def at(self, step: str) -> None:
        self.calls.append(step)
        if step == self.armed:
            self.reached.set()
            await self.release.wait()


class GatedStore(CountingStore):
    """The real store; the upsert that completes the collection's FILES points and optimize pass the gates."""

    def __init__(self, inner: VectorStore, gates: Gates) -> None:
        super().__init__(inner)
        self.gates = gates
        self.points = 0

    async def upsert(self, name: str, points: list[PointRecord]) -> None:
        if name == COLLECTION:
            self.points += len(points)
            if self.points >= FILES:
                await self.gates.at("upsert")  # the last one: every file was analysed
        await super().upsert(name, points)

    async def optimize(self, name: str) -> None:
        await self.gates.at("optimize")
        await super().optimize(name)


@pytest.fixture
def gates(monkeypatch: pytest.MonkeyPatch) -> Gates:
    gates = Gates()
    merge = PeopleIndex.merge

    async def gated_merge(self: PeopleIndex) -> int:
        await gates.at("merge")
        return await merge(self)

    async def gated_prune(ctx: PipelineContext) -> int:
        await gates.at("prune")
        return await prune(ctx)

    monkeypatch.setattr(PeopleIndex, "merge", gated_merge)
    monkeypatch.setattr("orchestrator.pipeline.runner.prune", gated_prune)
    return gates


def _awaiting(task: asyncio.Task[Any] | None, function: str) -> bool:
    """True when the task is suspended inside `function` (its chain of awaited coroutines)."""
    coro: Any = task.get_coro() if task is not None else None
    while coro is not None:
        code = getattr(coro, "cr_code", None)
        if code is not None and code.co_name == function:
            return True
        coro = getattr(coro, "cr_await", None)
    return False


async def _post(orch: RunningOrchestrator, job_id: str, action: str) -> tuple[int, Any]:
    resp = await orch.client.post(f"/jobs/{job_id}/{action}")
    return resp.status_code, resp.json()


@pytest.mark.parametrize("action", ["pause", "cancel"])
@pytest.mark.parametrize("step", STEPS)
async def test_pause_or_cancel_at_each_last_step(
    tmp_path: Path, ml_service_url: str, gates: Gates, step: str, action: str
) -> None:
    await asyncio.to_thread(make_images, tmp_path / "media", FILES)
    # ann_index_threshold=1: the job's end builds the index (the optimize step) even for three points.
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path], ann_index_threshold=1)
    store = GatedStore(EdgeVectorStore(settings.qdrant_dir), gates)
    gates.armed = step
    async with running_orchestrator(settings, store) as orch:
        job_id = (await orch.client.post("/jobs", json={"path": str(tmp_path / "media")})).json()["job_id"]
        job = await orch.app.state.jobs.get(job_id)  # the live job
        await asyncio.wait_for(gates.reached.wait(), 120)
        status = (await orch.client.get(f"/jobs/{job_id}")).json()
        assert status["state"] == "running" and status["finishing"] is (step != "upsert")

        if step == "upsert" and action == "pause":  # accepted; what is in flight finishes, then it holds
            assert await _post(orch, job_id, "pause") == (200, {"job_id": job_id, "state": "paused"})
            gates.release.set()
            await until(
                lambda: _awaiting(job.task, "begin_finishing") or "merge" in gates.calls,
                "the stages to end",
                60,
            )
            assert "merge" not in gates.calls  # the finishing steps wait for resume ...
            status = (await orch.client.get(f"/jobs/{job_id}")).json()
            assert status["state"] == "paused" and not status["finishing"]
            assert status["counters"]["upserted"] == FILES  # ... once the work in flight was written
            assert await _post(orch, job_id, "resume") == (200, {"job_id": job_id, "state": "running"})
            expected = "completed"
        elif step == "upsert":  # an ordinary cancel: the write in flight lands, nothing else starts
            assert await _post(orch, job_id, "cancel") == (200, {"job_id": job_id, "state": "cancelled"})
            gates.release.set()
            expected = "cancelled"
        elif action == "pause":  # refused: the finishing steps are short and not interruptible
            code, body = await _post(orch, job_id, "pause")
            assert code == 409 and body["detail"]["state"] == "running", body
            assert "finishing" in body["detail"]["detail"]
            gates.release.set()
            expected = "completed"
        else:  # cancel waits for the finishing steps, then the job is cancelled
            cancel = asyncio.create_task(_post(orch, job_id, "cancel"))
            await until(lambda: job.cancel_requested, "the cancel to arrive", 60)
            assert not cancel.done()  # it waits while the step is held
            assert (await orch.client.get(f"/jobs/{job_id}")).json()["state"] == "running"
            gates.release.set()
            assert await asyncio.wait_for(cancel, 60) == (200, {"job_id": job_id, "state": "cancelled"})
            expected = "cancelled"

        final = await orch.wait_job(job_id, timeout_s=120)
        # A cancelled job's state changes at once; its task ends once the write in flight has landed
        # (and been marked done): wait for that before counting.
        await asyncio.wait_for(orch.app.state.jobs.wait(job_id), 60)
        assert final["state"] == expected and final["error"] is None, final
        assert final["finishing"] is False
        stored = await store.count(COLLECTION)
        assert await orch.services.index.count(COLLECTION) == stored  # what is stored is marked done
        if expected == "completed" or step != "upsert":
            assert stored == FILES
            # Every finishing step ran, in order, and to its end.
            assert gates.calls[-3:] == ["merge", "prune", "optimize"]
