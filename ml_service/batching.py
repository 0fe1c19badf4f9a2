"""Dynamic micro-batching: concurrent requests to one model are merged into one ``predict`` call.

Each model has a ``Batcher`` with a bounded queue (counted in items). Its worker takes the waiting
requests, up to the model's preferred batch, and runs them as one batch on the shared inference
executor. It never waits for more work: batches form on their own while the previous one runs, so a
lone request pays no added latency.

The batcher also owns its model's lifetime: a model that is not loaded (ML_LAZY_LOAD, or unloaded
after ML_MODEL_TTL_S idle seconds) is loaded on the loader thread before its next batch, while the
other models keep running on the inference thread; a batch that raises is split
(``predict_splitting``: halves on out-of-memory, else each item alone) so that only the items that
fail get errors.
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

from ml_service.device import release_memory
from ml_service.models.base import ItemResult, ServedModel, describe_error, predict_splitting

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
        *,
        loader: Executor | None = None,
        idle_unload_s: float = 0.0,
        max_wait_s: float = 0.0,
    ) -> None:
        self.model = model
        self._observe = observe  # (model key, items, seconds) after each model call: metrics
        self._executor = executor
        # Loads on demand run here (default: the inference executor), so other models keep serving.
        self._loader = loader or executor
        self._idle_unload_s = idle_unload_s  # 0: never unload
        self._last_used = time.monotonic()
        self.loads = 0  # loads on demand (not the one at start-up)
        self.unloads = 0
        # How long a batch may wait for more requests (ML_BATCH_WAIT_MS), counted from the oldest
        # waiting request's arrival; only while requests come concurrently (see ``_linger``).
        self._max_wait_s = max_wait_s
        self._last_batch_requests = 0
        self._last_batch_items = 0
        self._free_since = 0.0  # perf_counter() when the last batch ended
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
                await self._wait_for_work(loop)
                self._wakeup.clear()
                await self._linger()
                while taken := self._take():
                    await self._run_batch(loop, taken)
                    await self._linger()
        finally:
            for request in self._pending:
                request.future.cancel()
            self._pending.clear()

    async def _wait_for_work(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait for a request; meanwhile unload the model once it has been idle long enough."""
        while True:
            idle_left = self._idle_left()
            if idle_left is None:
                await self._wakeup.wait()
                return
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=idle_left)
                return
            except TimeoutError:
                pass
            # No await between this check and handing the unload to the executor: a request that
            # arrives later finds the model unloaded and loads it again.
            if not self._pending and self._idle_left() == 0.0:
                await loop.run_in_executor(self._executor, self.model.unload)
                self.unloads += 1
                log.info("model_unloaded", model=self.model.key, idle_s=self._idle_unload_s)

    async def _linger(self) -> None:
        """Let a batch fill up when clients send concurrently: wait, at most ``max_wait_s`` after the
        batcher became free (or the oldest request arrived, if later), until as many items wait as
        the last batch held (at most the preferred batch).

        Without it, concurrent one-item clients alternate with the batches: a request that queued
        while a batch ran starts the next batch alone, and the others, answered a moment later,
        queue behind it. Measured with 16 clients of one text each: batches of 1 and 15 in turn
        (mean 7.1 items; docs/ml-api.md, "Measurements"). A lone client (a batch of one request)
        never waits; a load that shrinks waits ``max_wait_s`` once, then expects the smaller batch.
        """
        if self._max_wait_s <= 0 or self._last_batch_requests < 2:
            return
        target = min(self._last_batch_items, self.model.preferred_batch)
        while self._pending and self._queued_items < target:
            opened = max(self._pending[0].enqueued_at, self._free_since)
            remaining = opened + self._max_wait_s - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)
            except TimeoutError:
                return

    def _idle_left(self) -> float | None:
        """Seconds until the loaded model is due to be unloaded; None when it never will be."""
        if self._idle_unload_s <= 0 or not self.model.loaded:
            return None
        return max(0.0, self._idle_unload_s - (time.monotonic() - self._last_used))

    def _predict(self, batch: list[In]) -> list[ItemResult[Out]]:
        """The model's predict, with a batch that raises split down to the items that fail."""
        return predict_splitting(
            self.model.predict,
            batch,
            model=self.model.key,
            on_out_of_memory=lambda: release_memory(self.model.device),
        )

    async def _ensure_loaded(self, loop: asyncio.AbstractEventLoop) -> str | None:
        """Load the model if it is not; the reason as text when that failed (it stays unloaded)."""
        if self.model.loaded:
            return None
        started = time.perf_counter()
        try:
            await loop.run_in_executor(self._loader, self.model.load)
        except Exception as exc:
            log.exception("model_load_failed", model=self.model.key)
            return f"model {self.model.key!r} failed to load: {describe_error(exc)}"
        self.loads += 1
        log.info(
            "model_loaded_on_demand", model=self.model.key, seconds=round(time.perf_counter() - started, 3)
        )
        return None

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, taken: list[_Request[In, Out]]) -> None:
        flat = [item for request in taken for item in request.items]
        self._last_batch_requests, self._last_batch_items = len(taken), len(flat)
        try:
            failed_load = await self._ensure_loaded(loop)
            started = time.perf_counter()
            if failed_load is not None:
                results: list[ItemResult[Out]] = [ItemResult(error=failed_load) for _ in flat]
            else:
                results = await loop.run_in_executor(self._executor, self._predict, flat)
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
            self._last_used = time.monotonic()
            self._free_since = time.perf_counter()
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
