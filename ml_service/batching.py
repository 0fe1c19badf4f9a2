"""Dynamic micro-batching: concurrent requests to one model are merged into one ``predict`` call.

Each model has a ``Batcher`` with a bounded queue (counted in items). Its worker takes the waiting
requests, up to the model's preferred batch, and runs them as one batch on the shared inference
executor. It never waits for more work: batches form on their own while the previous one runs, so a
lone request pays no added latency.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import structlog

from ml_service.models.base import ItemResult, ServedModel

In = TypeVar("In")
Out = TypeVar("Out")

log = structlog.get_logger(__name__)

# Weight of the newest batch in the per-item time estimate behind Retry-After.
_EWMA_ALPHA = 0.3


class Overloaded(Exception):
    """The model's queue is full; the client should retry after ``retry_after`` seconds."""

    def __init__(self, model: str, queued: int, retry_after: int) -> None:
        super().__init__(f"model {model!r} has {queued} items queued; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(slots=True)
class _Request(Generic[In, Out]):
    items: Sequence[In]
    future: asyncio.Future[list[ItemResult[Out]]]
    enqueued_at: float = field(default_factory=time.perf_counter)


class Batcher(Generic[In, Out]):
    """Queue and worker for one model; ``run()`` must be running (as a task) for results to come."""

    def __init__(
        self,
        model: ServedModel[In, Out],
        executor: Executor,
        max_queue_items: int,
        observe: Callable[[str, int, float], None] | None = None,
    ) -> None:
        self.model = model
        self._observe = observe  # (model key, items, seconds) after each model call: metrics
        self._executor = executor
        self._max_queue_items = max_queue_items
        self._pending: deque[_Request[In, Out]] = deque()
        self._queued_items = 0  # waiting or running
        self._wakeup = asyncio.Event()
        self._seconds_per_item = 0.05  # replaced by measurements after the first batch

    @property
    def queued_items(self) -> int:
        return self._queued_items

    def check_capacity(self, count: int) -> None:
        """Raise ``Overloaded`` if ``count`` more items would overflow the queue.

        An empty queue always accepts a request (it was already checked against ``max_batch``).
        """
        if self._queued_items and self._queued_items + count > self._max_queue_items:
            wait = self._queued_items * self._seconds_per_item
            raise Overloaded(self.model.key, self._queued_items, max(1, math.ceil(wait)))

    def enqueue(self, items: Sequence[In]) -> asyncio.Future[list[ItemResult[Out]]]:
        """Queue ``items``; the future resolves to one result per item, in order."""
        self.check_capacity(len(items))
        future: asyncio.Future[list[ItemResult[Out]]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(items, future))
        self._queued_items += len(items)
        self._wakeup.set()
        return future

    async def submit(self, items: Sequence[In]) -> list[ItemResult[Out]]:
        return await self.enqueue(items)

    def _take(self) -> list[_Request[In, Out]]:
        taken: list[_Request[In, Out]] = []
        count = 0
        while self._pending:
            request = self._pending[0]
            if request.future.done():  # the caller went away; nothing to compute
                self._pending.popleft()
                self._queued_items -= len(request.items)
                continue
            if taken and count + len(request.items) > self.model.preferred_batch:
                break
            taken.append(self._pending.popleft())
            count += len(request.items)
        return taken

    async def run(self) -> None:
        """Worker loop; ends only by cancellation."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while taken := self._take():
                    await self._run_batch(loop, taken)
        finally:
            for request in self._pending:
                request.future.cancel()
            self._pending.clear()

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, taken: list[_Request[In, Out]]) -> None:
        flat = [item for request in taken for item in request.items]
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.model.predict, flat)
        except asyncio.CancelledError:
            for request in taken:
                request.future.cancel()
            raise
        except Exception as exc:
            # predict() turns item failures into results; reaching here is a bug or a broken model.
            log.exception("batch_crashed", model=self.model.key, size=len(flat))
            for request in taken:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        finally:
            self._queued_items -= len(flat)
        elapsed = time.perf_counter() - started
        if self._observe is not None:
            self._observe(self.model.key, len(flat), elapsed)
        per_item = elapsed / len(flat)
        self._seconds_per_item += _EWMA_ALPHA * (per_item - self._seconds_per_item)
        log.debug(
            "batch_done",
            model=self.model.key,
            size=len(flat),
            requests=len(taken),
            ms=round(elapsed * 1000, 1),
            waited_ms=round((started - taken[0].enqueued_at) * 1000, 1),
        )
        offset = 0
        for request in taken:
            part = results[offset : offset + len(request.items)]
            offset += len(request.items)
            if not request.future.done():
                request.future.set_result(part)
