"""A batch that fails is split so that only the failing items fail (``predict_splitting``).

Out of memory: halves, recursively, down to single items. Any other error: each item alone. Both in
a model's own ``predict`` and in the batcher (for a served model whose ``predict`` raises).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from ml_service.batching import Batcher
from ml_service.models.base import InferenceModel, ItemResult, predict_splitting

OOM_ALWAYS = 99  # runs out of memory even alone (an enormous input)
POISON = -1  # any batch holding it raises ValueError (a corrupt input)


class Fragile(InferenceModel[int, int]):
    """Doubles ints. Runs out of memory on batches larger than ``fits`` (torch's CUDA error) and on
    ``OOM_ALWAYS``; raises ValueError on any batch holding ``POISON``. Records every call's size."""

    key: ClassVar[str] = "fragile"
    task: ClassVar[str] = "test"
    name: ClassVar[str] = "fragile"
    default_max_batch: ClassVar[int] = 64
    default_preferred_batch: ClassVar[int] = 64
    processing_version: ClassVar[str] = "1"

    def __init__(self, weights: Path, fits: int = 1000, error: type[Exception] | None = None) -> None:
        super().__init__()
        self.weights = weights
        self.fits = fits
        self.error = error or torch.cuda.OutOfMemoryError
        self.calls: list[list[int]] = []

    def weight_files(self) -> list[Path]:
        return [self.weights]

    def _load(self) -> None:
        pass

    def _predict_batch(self, batch: Sequence[int]) -> list[ItemResult[int]]:
        self.calls.append(list(batch))
        if POISON in batch:
            raise ValueError(f"corrupt input in a batch of {len(batch)}")
        if len(batch) > self.fits or OOM_ALWAYS in batch:
            raise self.error(f"CUDA out of memory. Tried to allocate {len(batch)} GiB")
        return [ItemResult(value=2 * x) for x in batch]


class Unguarded(Fragile):
    """Its predict raises whatever the batch raises (like a model outside ``InferenceModel``'s own
    splitting): the batcher must split."""

    def predict(self, batch: Sequence[int]) -> list[ItemResult[int]]:
        return self._predict_batch(batch)


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    return path


def sizes(model: Fragile) -> list[int]:
    return [len(call) for call in model.calls]


def test_out_of_memory_halves_until_batches_fit(weights: Path) -> None:
    model = Fragile(weights, fits=2)
    results = model.predict(list(range(8)))
    assert [r.value for r in results] == [2 * x for x in range(8)]
    assert all(r.ok for r in results)
    # 8 fails, 4 fails, 2 and 2 fit; the second 4 the same.
    assert sizes(model) == [8, 4, 2, 2, 4, 2, 2]


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError, MemoryError])
def test_an_item_that_runs_out_of_memory_alone_fails_alone(weights: Path, error: type[Exception]) -> None:
    model = Fragile(weights, error=error)
    batch = [1, 2, OOM_ALWAYS, 4, 5, 6]
    results = model.predict(batch)
    assert [r.value for r in results] == [2, 4, None, 8, 10, 12]
    failed = results[2]
    assert failed.error is not None and "out of memory" in failed.error
    # 6 -> 3 + 3; [1, 2, 99] -> [1] + [2, 99] -> [2] + [99]: only halves holding the item re-run.
    assert model.calls == [batch, [1, 2, OOM_ALWAYS], [1], [2, OOM_ALWAYS], [2], [OOM_ALWAYS], [4, 5, 6]]


def test_other_errors_isolate_the_poisoned_item(weights: Path) -> None:
    model = Fragile(weights)
    results = model.predict([3, POISON, 5, 7])
    assert [r.value for r in results] == [6, None, 10, 14]
    assert results[1].error is not None and "corrupt input in a batch of 1" in results[1].error
    # Not an allocation failure: each item alone at once (halving would only add calls).
    assert sizes(model) == [4, 1, 1, 1, 1]


def test_a_runtime_error_saying_out_of_memory_is_split_too(weights: Path) -> None:
    # CTranslate2 / onnxruntime raise RuntimeError with the words in the message.
    model = Fragile(weights, fits=1, error=RuntimeError)
    results = predict_splitting(model._predict_batch, [1, 2, 3, 4], model="fragile")
    assert [r.value for r in results] == [2, 4, 6, 8]
    assert sizes(model) == [4, 2, 1, 1, 2, 1, 1]


async def run_merged(model: Fragile, requests: list[list[int]]) -> list[list[ItemResult[int]]]:
    """Submit ``requests`` while the worker is held, so that they run as ONE merged batch."""
    model.load()
    gate = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(gate.wait, 10)  # the inference thread is busy until the gate opens
        batcher = Batcher(model, pool, max_queue_items=100)
        worker = asyncio.create_task(batcher.run())
        try:
            futures = [asyncio.ensure_future(batcher.submit(r)) for r in requests]
            await asyncio.sleep(0.05)  # all queued, the worker waiting on the busy thread
            gate.set()
            return list(await asyncio.gather(*futures))
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)


async def test_batcher_isolates_a_poisoned_item_across_merged_requests(weights: Path) -> None:
    model = Unguarded(weights)
    answers = await run_merged(model, [[1, 2], [3, POISON], [5]])
    assert [[r.value for r in answer] for answer in answers] == [[2, 4], [6, None], [10]]
    assert answers[1][1].error is not None and answers[1][1].error.startswith("ValueError")
    assert sizes(model)[0] == 5  # the requests were merged, then split item by item
    assert sizes(model)[1:] == [1, 1, 1, 1, 1]


async def test_batcher_halves_a_merged_batch_that_runs_out_of_memory(weights: Path) -> None:
    model = Unguarded(weights, fits=2)
    answers = await run_merged(model, [[1, 2, 3], [4, 5], [6, OOM_ALWAYS, 8]])
    assert [[r.value for r in answer] for answer in answers] == [[2, 4, 6], [8, 10], [12, None, 16]]
    assert answers[2][1].error is not None and "OutOfMemoryError" in answers[2][1].error
    # 8 -> 4 + 4 -> 2 + 2 each; the half [99, 8] -> [99] (fails alone) + [8].
    assert sizes(model) == [8, 4, 2, 2, 4, 2, 2, 1, 1]
