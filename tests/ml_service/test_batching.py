"""Micro-batching and per-item failure handling, with a small deterministic model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import pytest

from ml_service.batching import Batcher, Overloaded
from ml_service.models.base import InferenceModel, ItemResult, weights_digest


class Doubler(InferenceModel[int, int]):
    """Doubles ints; a negative input makes the whole batch raise (like a bad tensor would)."""

    key: ClassVar[str] = "doubler"
    task: ClassVar[str] = "test"
    name: ClassVar[str] = "doubler"
    default_max_batch: ClassVar[int] = 16
    default_preferred_batch: ClassVar[int] = 8
    processing_version: ClassVar[str] = "1"

    def __init__(self, weights: Path, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.weights = weights
        self.gate = gate
        self.batches: list[list[int]] = []

    def weight_files(self) -> list[Path]:
        return [self.weights]

    def _load(self) -> None:
        pass

    def _predict_batch(self, batch: Sequence[int]) -> list[ItemResult[int]]:
        if self.gate is not None:
            self.gate.wait(timeout=10)
        self.batches.append(list(batch))
        if any(x < 0 for x in batch):
            raise ValueError(f"negative input in {list(batch)}")
        return [ItemResult(value=2 * x) for x in batch]


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights v1")
    return path


def test_version_follows_weight_content(weights: Path) -> None:
    model = Doubler(weights)
    model.load()
    first = model.version
    same = Doubler(weights)
    same.load()
    assert first.endswith("-p1") and same.version == first
    weights.write_bytes(b"weights v2")
    again = Doubler(weights)
    again.load()
    assert again.version != first
    assert weights_digest([weights]) != weights_digest([weights], extra="threshold=0.5")


def test_one_bad_item_does_not_fail_the_batch(weights: Path) -> None:
    results = Doubler(weights).predict([1, -2, 3])
    assert [r.value for r in results] == [2, None, 6]
    assert results[1].error is not None and "negative input" in results[1].error
    assert results[0].ok and not results[1].ok


async def test_concurrent_requests_share_one_batch(weights: Path) -> None:
    gate = threading.Event()
    model = Doubler(weights, gate)
    model.load()
    with ThreadPoolExecutor(max_workers=1) as pool:
        batcher = Batcher(model, pool, max_queue_items=100)
        worker = asyncio.create_task(batcher.run())
        try:
            first = asyncio.ensure_future(batcher.submit([1]))
            await asyncio.sleep(0)  # the worker takes [1] and blocks on the gate
            rest = [asyncio.ensure_future(batcher.submit([10 * i, 10 * i + 1])) for i in range(1, 6)]
            gate.set()
            assert await first == [ItemResult(value=2)]
            answers = await asyncio.gather(*rest)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
    assert [[r.value for r in a] for a in answers] == [[20 * i, 20 * i + 2] for i in range(1, 6)]
    # Requests that queued while [1] ran were merged up to preferred_batch (8 items = 4 requests).
    assert model.batches[0] == [1]
    assert [len(b) for b in model.batches[1:]] == [8, 2]


async def test_full_queue_answers_overloaded(weights: Path) -> None:
    gate = threading.Event()
    model = Doubler(weights, gate)
    model.load()
    with ThreadPoolExecutor(max_workers=1) as pool:
        batcher = Batcher(model, pool, max_queue_items=4)
        worker = asyncio.create_task(batcher.run())
        try:
            busy = asyncio.ensure_future(batcher.submit([1, 2, 3]))
            await asyncio.sleep(0)
            with pytest.raises(Overloaded) as refused:
                batcher.check_capacity(2)
            assert refused.value.retry_after >= 1
            batcher.check_capacity(1)  # still room for one
            gate.set()
            assert [r.value for r in await busy] == [2, 4, 6]
            assert batcher.queued_items == 0
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
