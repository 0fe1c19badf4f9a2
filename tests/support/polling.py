"""Waiting, bounded, for a condition the code under test brings about without an event to await."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

POLL_S = 0.02


async def until(condition: Callable[[], bool], what: str, timeout_s: float) -> None:
    """Poll `condition` until it holds; fail the test, naming `what`, when it has not within `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        await asyncio.sleep(POLL_S)
