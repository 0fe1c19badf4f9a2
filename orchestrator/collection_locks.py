"""Shared/exclusive locks per collection, for the jobs of one process.

Ingest jobs share a collection (several roots at once); a re-analysis or rebuild takes it alone, so no
ingest writes into a version while it is re-analysed or replaced, and two jobs never build two versions.
A waiting exclusive holder goes first (new shared holders wait behind it). asyncio has no
readers–writer lock and no maintained package in our lock offers one that is cancellation-safe; this one
releases synchronously (no await in a `finally`), so a cancelled job never leaves a lock held.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass(slots=True)
class _State:
    readers: int = 0
    writer: bool = False
    writers_waiting: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait_until(self, ready: Callable[[], bool]) -> None:
        while not ready():  # nothing awaits between the check and taking the event
            await self.changed.wait()

    @property
    def idle(self) -> bool:
        return not self.readers and not self.writer and not self.writers_waiting


class CollectionLocks:
    def __init__(self) -> None:
        self._states: dict[str, _State] = {}

    def _state(self, name: str) -> _State:
        return self._states.setdefault(name, _State())

    def _release(self, name: str, state: _State) -> None:
        state.notify()
        if state.idle:
            self._states.pop(name, None)

    @asynccontextmanager
    async def shared(self, name: str) -> AsyncIterator[None]:
        state = self._state(name)
        await state.wait_until(lambda: not state.writer and not state.writers_waiting)
        state.readers += 1
        try:
            yield
        finally:
            state.readers -= 1
            self._release(name, state)

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        state = self._state(name)
        state.writers_waiting += 1
        try:
            await state.wait_until(lambda: not state.writer and not state.readers)
        except BaseException:
            state.writers_waiting -= 1
            self._release(name, state)  # shared holders waiting behind it may go
            raise
        state.writers_waiting -= 1
        state.writer = True
        try:
            yield
        finally:
            state.writer = False
            self._release(name, state)

    def busy(self, name: str) -> bool:
        """Some job holds or waits for the collection."""
        state = self._states.get(name)
        return state is not None and not state.idle
