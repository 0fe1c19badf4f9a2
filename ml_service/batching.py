"""Dynamic micro-batching: concurrent requests to one model are merged into one ``predict`` call.

Each model has a ``Batcher`` with a bounded queue (counted in items). Its worker takes the waiting
requests, up to the model's preferred batch, and runs them as one batch on the shared inference
executor. It never waits for more work: batches form on their own while the previous one runs, so a
lone request pays no added latency.

The batcher also owns its model's lifetime: a model that is not loaded (ML_LAZY_LOAD, or unloaded
after ML_MODEL_TTL_S idle seconds) is loaded on the loader thread before its next batch, while the
other models keep running on the inference thread; a batch that raises is split
(``predict_splitting``: halves on out-of-memory, else each item alone) so that only the items that
fail get errors. Every result then passes the model's output check (``ml_service/outputs.py``).

Nothing a model does stops the worker: a failed load, unload or batch becomes item errors or a log line.
Should the worker die anyway (a bug), it says so: every request queued or sent later is refused at once
with ``ModelFailed`` (never left waiting), and ``on_failure`` tells the service, whose /ready and
/health then answer 503 naming the model and the reason.
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
from ml_service.errors import ErrorCode
from ml_service.models.base import ItemResult, ServedModel, describe_error, predict_splitting
from ml_service.outputs import OutputCheck

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


class ModelFailed(Exception):
    """The model's batcher has stopped: it answers nothing more. ``final``: it died (a bug; this process
    cannot serve the model again); else the service is stopping (a restarted one will)."""

    def __init__(self, model: str, reason: str, *, final: bool) -> None:
        super().__init__(f"model {model!r} cannot serve: {reason}")
        self.model = model
        self.reason = reason
        self.final = final


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
        check: OutputCheck | None = None,
        on_failure: Callable[[str, str], None] | None = None,
        key: str | None = None,
    ) -> None:
        self.model = model
        # How logs, metrics, refusals and ``on_failure`` name this batcher: the model's key, unless two
        # batchers serve models of one key (an earlier version for queries: ``text@<version>``).
        self.key = key or model.key
        self._check = check  # validates each batch's results (ml_service/outputs.py)
        self._on_failure = on_failure  # (model key, reason) once, if the worker dies
        # Why the worker stopped (None while it serves): requests are refused with it from then on.
        self.failure: str | None = None
        self._stop_reason: str | None = None  # set when the worker ends, for whatever reason
        self._open: set[asyncio.Future[list[ItemResult[Out]]]] = set()  # queued or running, unanswered
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
        Raise ``ModelFailed`` once the worker has stopped.
        """
        if self._stop_reason is not None:
            raise self._refusal(self._stop_reason)
        if self._queued_items and self._queued_items + count > self._max_queue_items:
            wait = self._queued_items * self._seconds_per_item
            raise Overloaded(self.key, self._queued_items, max(1, math.ceil(wait)))

    def enqueue(self, items: Sequence[In]) -> asyncio.Future[list[ItemResult[Out]]]:
        """Queue ``items``; the future resolves to one result per item, in order."""
        self.check_capacity(len(items))
        future: asyncio.Future[list[ItemResult[Out]]] = asyncio.get_running_loop().create_future()
        self._open.add(future)
        future.add_done_callback(self._open.discard)
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
        """Worker loop; ends by cancellation (the service stops) or, should it ever raise, by a bug: then
        ``failure`` says why, and every request waiting or sent later is refused (``ModelFailed``)."""
        reason = "the service is stopping"
        try:
            await self._serve()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failure = describe_error(exc)
            reason = f"its batcher stopped: {self.failure}"
            log.exception("batcher_died", model=self.key, error=self.failure)
            if self._on_failure is not None:
                self._on_failure(self.key, reason)
        finally:
            self._stop(reason)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_work(loop)
            self._wakeup.clear()
            await self._linger()
            while taken := self._take():
                await self._run_batch(loop, taken)
                await self._linger()

    def _refusal(self, reason: str) -> ModelFailed:
        return ModelFailed(self.key, reason, final=self.failure is not None)

    def _stop(self, reason: str) -> None:
        """Refuse every unanswered and later request with ``reason``."""
        self._stop_reason = reason
        for future in list(self._open):
            if not future.done():
                future.set_exception(self._refusal(reason))
        self._open.clear()
        self._pending.clear()
        self._queued_items = 0

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
                await self._unload(loop)

    async def _unload(self, loop: asyncio.AbstractEventLoop) -> None:
        """Unload the idle model; a failure is logged, and tried again after another idle period."""
        try:
            await loop.run_in_executor(self._executor, self.model.unload)
        except Exception as exc:
            # The model says itself whether it is still loaded: the next batch loads it if not.
            self._last_used = time.monotonic()
            log.exception("model_unload_failed", model=self.key, error=describe_error(exc))
            return
        self.unloads += 1
        log.info("model_unloaded", model=self.key, idle_s=self._idle_unload_s)

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
        """The model's predict, with a batch that raises split down to the items that fail, and its
        results checked (a NaN vector is not a result)."""
        results = predict_splitting(
            self.model.predict,
            batch,
            model=self.key,
            on_out_of_memory=lambda: release_memory(self.model.device),
        )
        checked = results if self._check is None else self._check(results)
        if len(checked) != len(batch):
            raise RuntimeError(f"{len(checked)} results for {len(batch)} inputs")
        return checked

    async def _ensure_loaded(self, loop: asyncio.AbstractEventLoop) -> str | None:
        """Load the model if it is not; the reason as text when that failed (it stays unloaded)."""
        if self.model.loaded:
            return None
        started = time.perf_counter()
        try:
            await loop.run_in_executor(self._loader, self.model.load)
        except Exception as exc:
            log.exception("model_load_failed", model=self.key)
            return f"model {self.key!r} failed to load: {describe_error(exc)}"
        self.loads += 1
        log.info("model_loaded_on_demand", model=self.key, seconds=round(time.perf_counter() - started, 3))
        return None

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, taken: list[_Request[In, Out]]) -> None:
        flat = [item for request in taken for item in request.items]
        self._last_batch_requests, self._last_batch_items = len(taken), len(flat)
        started = time.perf_counter()
        elapsed: float | None = None  # of the model call; None when none ran
        try:
            failed_load = await self._ensure_loaded(loop)
            started = time.perf_counter()
            if failed_load is not None:
                results: list[ItemResult[Out]] = [
                    ItemResult(error=failed_load, code=ErrorCode.MODEL_UNAVAILABLE) for _ in flat
                ]
            else:
                results = await loop.run_in_executor(self._executor, self._predict, flat)
                elapsed = time.perf_counter() - started
        except Exception as exc:
            # predict() turns item failures into results; reaching here is a bug or a broken model:
            # every item of the batch gets the error, and the worker goes on.
            log.exception("batch_crashed", model=self.key, size=len(flat))
            error = f"model {self.key!r} failed on the batch: {describe_error(exc)}"
            results = [ItemResult(error=error, code=ErrorCode.MODEL_ERROR) for _ in flat]
        finally:
            self._queued_items -= len(flat)
            self._last_used = time.monotonic()
            self._free_since = time.perf_counter()
        if elapsed is not None:
            self._measured(len(flat), elapsed)
            log.debug(
                "batch_done",
                model=self.key,
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

    def _measured(self, items: int, elapsed: float) -> None:
        """Metrics, and the per-item estimate behind Retry-After."""
        per_item = elapsed / items
        self._seconds_per_item += _EWMA_ALPHA * (per_item - self._seconds_per_item)
        if self._observe is not None:
            try:
                self._observe(self.key, items, elapsed)
            except Exception:  # metrics must never stop the answers
                log.exception("batch_observer_failed", model=self.key)
