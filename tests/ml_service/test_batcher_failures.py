"""The batcher survives what its model does wrong, and a batcher that dies anyway leaves no one waiting
(in-process: ``Batcher`` over a small model on real executor threads)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import pytest

from ml_service.batching import Batcher, ModelFailed
from ml_service.errors import ErrorCode
from ml_service.models.base import InferenceModel, ItemResult
from tests.support.polling import until

ANSWER_TIMEOUT_S = 5.0


class Doubler(InferenceModel[int, int]):
    """Doubles ints. ``unload_error``: every unload raises it; ``gate``: each batch waits for it;
    ``broken_batching``: ``preferred_batch`` raises (a bug on the worker's own path)."""

    key: ClassVar[str] = "doubler"
    task: ClassVar[str] = "test"
    name: ClassVar[str] = "doubler"
    default_max_batch: ClassVar[int] = 16
    default_preferred_batch: ClassVar[int] = 8
    processing_version: ClassVar[str] = "1"

    def __init__(self, weights: Path) -> None:
        self.broken_batching = False
        self._preferred = 1
        super().__init__()
        self.weights = weights
        self.unload_error: Exception | None = None
        self.unload_attempts = 0
        self.gate: threading.Event | None = None
        self.batches = 0

    @property  # an attribute in the base class; a property here, to break on demand
    def preferred_batch(self) -> int:
        if self.broken_batching:
            raise RuntimeError("preferred_batch bookkeeping bug")
        return self._preferred

    @preferred_batch.setter
    def preferred_batch(self, value: int) -> None:
        self._preferred = value

    def weight_files(self) -> list[Path]:
        return [self.weights]

    def _load(self) -> None:
        pass

    def _unload(self) -> None:
        self.unload_attempts += 1
        if self.unload_error is not None:
            raise self.unload_error

    def _predict_batch(self, batch: Sequence[int]) -> list[ItemResult[int]]:
        self.batches += 1
        if self.gate is not None:
            self.gate.wait(timeout=30)
        return [ItemResult(value=2 * x) for x in batch]


@pytest.fixture
def model(tmp_path: Path) -> Doubler:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    doubler = Doubler(weights)
    doubler.load()
    return doubler


class Running:
    """A batcher's worker task on one inference thread, stopped (and the thread joined) on exit."""

    def __init__(self, batcher_of: Callable[[ThreadPoolExecutor], Batcher[int, int]]) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-inference")
        self.batcher = batcher_of(self.executor)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Batcher[int, int]:
        self.task = asyncio.create_task(self.batcher.run())
        return self.batcher

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.executor.shutdown(wait=True)


async def test_an_unload_that_raises_does_not_stop_the_batcher(model: Doubler) -> None:
    model.unload_error = RuntimeError("driver refused")
    running = Running(lambda pool: Batcher(model, pool, 100, idle_unload_s=0.1))
    async with running as batcher:
        assert [r.value for r in await batcher.submit([1])] == [2]
        await until(lambda: model.unload_attempts >= 1, "an unload attempted", 5)
        results = await asyncio.wait_for(batcher.submit([3, 4]), ANSWER_TIMEOUT_S)
        assert [r.value for r in results] == [6, 8]
        assert batcher.failure is None and not running.task.done()  # type: ignore[union-attr]
        # The model said it was unloaded (InferenceModel.unload), so it was loaded again for the batch.
        assert model.loaded and batcher.loads == 1


async def test_a_failing_metrics_observer_does_not_stop_the_answers(model: Doubler) -> None:
    def observe(model_key: str, items: int, seconds: float) -> None:
        raise ValueError("metrics registry broken")

    async with Running(lambda pool: Batcher(model, pool, 100, observe)) as batcher:
        for value in (1, 2):
            results = await asyncio.wait_for(batcher.submit([value]), ANSWER_TIMEOUT_S)
            assert [r.value for r in results] == [2 * value]
        assert batcher.failure is None


async def test_a_dead_batcher_refuses_its_queued_and_later_requests(model: Doubler) -> None:
    failures: list[tuple[str, str]] = []
    model.gate = threading.Event()
    running = Running(lambda pool: Batcher(model, pool, 100, on_failure=lambda *f: failures.append(f)))
    try:
        async with running as batcher:
            first = asyncio.ensure_future(batcher.submit([1]))
            await until(
                lambda: model.batches == 1, "the first batch running", 5
            )  # the first batch holds the inference thread
            queued = [asyncio.ensure_future(batcher.submit([n])) for n in (2, 3)]
            model.broken_batching = True  # the next batch's bookkeeping raises: the worker dies
            model.gate.set()
            assert [r.value for r in await asyncio.wait_for(first, ANSWER_TIMEOUT_S)] == [2]
            for waiting in queued:
                with pytest.raises(ModelFailed, match="bookkeeping bug") as refused:
                    await asyncio.wait_for(waiting, ANSWER_TIMEOUT_S)
                assert refused.value.final  # this process cannot serve the model again
            assert batcher.failure is not None and "bookkeeping bug" in batcher.failure
            assert failures == [("doubler", f"its batcher stopped: {batcher.failure}")]
            with pytest.raises(ModelFailed, match="'doubler' cannot serve"):
                batcher.check_capacity(1)
            with pytest.raises(ModelFailed):
                await asyncio.wait_for(batcher.submit([4]), ANSWER_TIMEOUT_S)
            assert batcher.queued_items == 0
    finally:
        model.gate.set()


async def test_a_stopped_batcher_refuses_instead_of_leaving_requests_waiting(model: Doubler) -> None:
    """Cancelled (the service stops): a request it held, and any sent after, is refused, not left waiting."""
    model.gate = threading.Event()
    running = Running(lambda pool: Batcher(model, pool, 100))
    async with running as batcher:
        # The gate opens before Running's exit joins the inference thread, which the held batch keeps busy
        # until then (else the join waits out the gate's own 30 s bound).
        try:
            first = asyncio.ensure_future(batcher.submit([1]))
            await until(lambda: model.batches == 1, "the first batch running", 5)
            assert running.task is not None
            running.task.cancel()
            await asyncio.gather(running.task, return_exceptions=True)
            with pytest.raises(ModelFailed, match="stopping") as refused:
                await asyncio.wait_for(first, ANSWER_TIMEOUT_S)
            assert not refused.value.final  # a restarted service will answer: clients retry
            with pytest.raises(ModelFailed, match="stopping"):
                batcher.enqueue([2])
            assert batcher.failure is None  # stopping is not a failure
        finally:
            model.gate.set()


async def test_a_failed_on_demand_load_is_model_unavailable(model: Doubler) -> None:
    model.unload()

    def broken_load() -> None:
        raise OSError("weights unreadable")

    model._load = broken_load  # type: ignore[method-assign]
    async with Running(lambda pool: Batcher(model, pool, 100)) as batcher:
        results = await asyncio.wait_for(batcher.submit([1, 2]), ANSWER_TIMEOUT_S)
        assert [r.error_code for r in results] == [ErrorCode.MODEL_UNAVAILABLE] * 2
        assert results[0].error is not None and "weights unreadable" in results[0].error
