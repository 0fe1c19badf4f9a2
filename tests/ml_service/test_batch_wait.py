"""ML_BATCH_WAIT_MS: concurrent one-item clients get full batches; a lone client never waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import pytest

from ml_service.batching import Batcher
from ml_service.models.base import InferenceModel, ItemResult

CLIENTS = 16
ROUNDS = 12


class Timed(InferenceModel[int, int]):
    """Each batch costs 10 ms plus 0.5 ms per item (a model with a fixed cost per call)."""

    key: ClassVar[str] = "timed"
    task: ClassVar[str] = "test"
    name: ClassVar[str] = "timed"
    default_max_batch: ClassVar[int] = 64
    default_preferred_batch: ClassVar[int] = 64
    processing_version: ClassVar[str] = "1"

    def __init__(self, weights: Path) -> None:
        super().__init__()
        self.weights = weights
        self.sizes: list[int] = []

    def weight_files(self) -> list[Path]:
        return [self.weights]

    def _load(self) -> None:
        pass

    def _predict_batch(self, batch: Sequence[int]) -> list[ItemResult[int]]:
        self.sizes.append(len(batch))
        time.sleep(0.010 + 0.0005 * len(batch))
        return [ItemResult(value=x) for x in batch]


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    return path


async def closed_loop_clients(weights: Path, max_wait_s: float) -> list[int]:
    """16 clients, each sending one item, then the next when answered (after a short think time,
    like the HTTP round trip). Returns the model's batch sizes after the first round."""
    model = Timed(weights)
    model.load()
    with ThreadPoolExecutor(max_workers=1) as pool:
        batcher = Batcher(model, pool, max_queue_items=1000, max_wait_s=max_wait_s)
        worker = asyncio.create_task(batcher.run())

        async def client(index: int) -> None:
            for round_ in range(ROUNDS):
                assert [r.value for r in await batcher.submit([index + round_])] == [index + round_]
                await asyncio.sleep(0.0005 * (index % 4))  # answers reach clients at different times

        try:
            await asyncio.gather(*(client(i) for i in range(CLIENTS)))
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
    return model.sizes[2:]


async def test_waiting_a_few_ms_fills_batches_of_concurrent_clients(weights: Path) -> None:
    eager = await closed_loop_clients(weights, max_wait_s=0.0)
    waiting = await closed_loop_clients(weights, max_wait_s=0.005)
    # Without waiting, a request answered early starts the next batch nearly alone.
    assert min(eager) <= 4
    # With a 5 ms window every batch (after the first two) holds (nearly) every client.
    assert min(waiting) >= CLIENTS - 2, waiting
    assert len(waiting) < len(eager)


async def test_a_lone_client_never_waits(weights: Path) -> None:
    model = Timed(weights)
    model.load()
    with ThreadPoolExecutor(max_workers=1) as pool:
        batcher = Batcher(model, pool, max_queue_items=100, max_wait_s=1.0)  # an absurd window
        worker = asyncio.create_task(batcher.run())
        try:
            started = time.perf_counter()
            for i in range(5):
                await batcher.submit([i])
            elapsed = time.perf_counter() - started
            # Two requests at once make the next batch wait for company: still bounded by the window.
            pair = await asyncio.gather(batcher.submit([1]), batcher.submit([2]))
            assert [r[0].value for r in pair] == [1, 2]
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
    assert elapsed < 0.5  # 5 batches of ~10.5 ms; any wait would have cost 1 s
    assert model.sizes == [1, 1, 1, 1, 1, 2]
