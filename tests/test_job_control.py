"""JobControl.begin_finishing: a job's finishing steps start only while it runs."""

from __future__ import annotations

import asyncio

from orchestrator.pipeline.context import JobControl


async def _turns(n: int = 10) -> None:
    for _ in range(n):  # let every ready task take its step (no wall-clock wait)
        await asyncio.sleep(0)


async def test_finishing_waits_while_paused_even_after_a_resume_and_pause_in_one_turn() -> None:
    control = JobControl()
    control.pause()
    finishing = asyncio.create_task(control.begin_finishing())
    await _turns()
    assert not finishing.done() and not control.finishing
    control.resume()
    control.pause()  # before the waiting task got to run: it must wait on, not start the finishing steps
    await _turns()
    assert not finishing.done() and not control.finishing
    control.resume()
    await asyncio.wait_for(finishing, 5)
    assert control.finishing


async def test_a_running_job_begins_finishing_at_once() -> None:
    control = JobControl()
    await asyncio.wait_for(control.begin_finishing(), 5)
    assert control.finishing
