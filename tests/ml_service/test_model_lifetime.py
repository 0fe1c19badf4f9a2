"""Lazy loading (ML_LAZY_LOAD) and unloading after idle seconds (ML_MODEL_TTL_S).

The batcher owns its model's lifetime: it loads the model (on the loader thread) before a batch
when it is not loaded, and unloads it once it has been idle for the TTL.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest

from ml_service.batching import Batcher
from ml_service.models.base import InferenceModel, ItemResult
from tests.support.ml_server import running_ml_service
from tests.support.polling import until

TTL_S = 0.3


class Runtime:
    """Stands for a model's weights: the test watches it being released (weakref)."""


class Tracked(InferenceModel[int, int]):
    """Doubles ints; records where it was loaded; ``gate`` holds a load, ``broken`` fails it."""

    key: ClassVar[str] = "tracked"
    task: ClassVar[str] = "test"
    name: ClassVar[str] = "tracked"
    default_max_batch: ClassVar[int] = 16
    default_preferred_batch: ClassVar[int] = 8
    processing_version: ClassVar[str] = "1"
    runtime_attributes: ClassVar[tuple[str, ...]] = ("_runtime",)

    def __init__(self, weights: Path, key: str = "tracked") -> None:
        super().__init__()
        self.weights = weights
        self.model_key = key
        self.gate: threading.Event | None = None
        self.broken = False
        self.loaded_on: list[str] = []
        self._runtime: Runtime | None = None

    def weight_files(self) -> list[Path]:
        return [self.weights]

    def _load(self) -> None:
        if self.gate is not None:
            self.gate.wait(timeout=10)
        if self.broken:
            raise OSError("weights unreadable")
        self.loaded_on.append(threading.current_thread().name)
        self._runtime = Runtime()

    def _predict_batch(self, batch: Sequence[int]) -> list[ItemResult[int]]:
        assert self._runtime is not None, "predict before load"
        return [ItemResult(value=2 * x) for x in batch]


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    return path


class Running:
    """Batchers of the given models on one inference thread and one loader thread."""

    def __init__(self, models: list[Tracked], ttl_s: float) -> None:
        self.inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-inference")
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-loader")
        self.batchers = [
            Batcher(m, self.inference, 100, loader=self.loader, idle_unload_s=ttl_s) for m in models
        ]
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> list[Batcher[int, int]]:
        self.tasks = [asyncio.create_task(b.run()) for b in self.batchers]
        return self.batchers

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.inference.shutdown(wait=True)
        self.loader.shutdown(wait=True)


async def test_lazy_model_loads_on_first_use_on_the_loader_thread(weights: Path) -> None:
    model = Tracked(weights)
    version = model.identify()  # what ML_LAZY_LOAD does at start-up
    assert (model.loaded, model.identified, model.version) == (False, True, version)
    async with Running([model], ttl_s=0) as (batcher,):
        assert [r.value for r in await batcher.submit([1, 2])] == [2, 4]
        assert model.loaded and batcher.loads == 1
        assert model.loaded_on == ["test-loader_0"]
        await batcher.submit([3])
        assert batcher.loads == 1  # loaded once; TTL 0 never unloads
        await asyncio.sleep(0.1)
        assert model.loaded and batcher.unloads == 0


async def test_idle_model_is_unloaded_and_loaded_again(weights: Path) -> None:
    model = Tracked(weights)
    model.load()
    released = weakref.ref(model._runtime) if model._runtime is not None else None
    assert released is not None
    async with Running([model], ttl_s=TTL_S) as (batcher,):
        assert [r.value for r in await batcher.submit([5])] == [10]
        # In use (a request every TTL/3): stays loaded.
        for _ in range(4):
            await asyncio.sleep(TTL_S / 3)
            await batcher.submit([1])
        assert model.loaded and batcher.unloads == 0
        await until(lambda: batcher.unloads == 1, "the idle model unloaded", 5)
        assert not model.loaded
        gc.collect()
        assert released() is None  # the runtime object is gone, not just hidden
        assert [r.value for r in await batcher.submit([6, 7])] == [12, 14]
        assert model.loaded and batcher.loads == 1


async def test_a_failed_load_is_each_items_error_and_is_retried(weights: Path) -> None:
    model = Tracked(weights)
    model.broken = True
    async with Running([model], ttl_s=0) as (batcher,):
        results = await batcher.submit([1, 2])
        assert [r.value for r in results] == [None, None]
        assert results[0].error is not None
        assert "failed to load" in results[0].error and "weights unreadable" in results[0].error
        assert not model.loaded
        model.broken = False
        assert [r.value for r in await batcher.submit([3])] == [6]


async def test_other_models_keep_serving_while_one_loads(weights: Path) -> None:
    slow, other = Tracked(weights), Tracked(weights)
    other.load()
    slow.gate = threading.Event()
    async with Running([slow, other], ttl_s=0) as (slow_batcher, other_batcher):
        waiting = asyncio.ensure_future(slow_batcher.submit([1]))
        await until(lambda: slow_batcher.queued_items == 1, "a request queued", 5)
        # The slow model's load holds the loader thread; the other model answers meanwhile.
        assert [r.value for r in await asyncio.wait_for(other_batcher.submit([2]), 5)] == [4]
        assert not waiting.done()
        slow.gate.set()
        assert [r.value for r in await waiting] == [2]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _text_caps(url: str) -> dict[str, Any]:
    caps: dict[str, Any] = httpx.get(f"{url}/capabilities", timeout=10).json()["models"]["text"]
    return caps


def test_real_text_model_lazy_then_unloaded_after_idle_then_reloaded(ml: httpx.Client) -> None:
    """The real MiniLM: not loaded at start (ML_LAZY_LOAD), loaded by the first request, unloaded
    after ML_MODEL_TTL_S idle seconds (memory released), loaded again by the next request."""
    eager = ml.get("/capabilities").json()["models"]["text"]
    texts = ["a cat on a sofa", "stock market crash"]
    reference = np.asarray(ml.post("/v1/embed/text", json={"texts": texts}).json()["vectors"])
    env = {
        "ML_IMAGE_TASKS": "",
        "ML_ASR_ENABLED": "false",
        "ML_VOICES_ENABLED": "false",
        "ML_LAZY_LOAD": "true",
        "ML_MODEL_TTL_S": "1.0",
    }
    with running_ml_service(env=env) as service:
        pid = service.process.pid
        ready = httpx.get(f"{service.url}/ready").json()
        assert ready == {"status": "ready", "models": ["text"]}  # ready, with nothing loaded
        lazy = _text_caps(service.url)
        # Known without loading: the version (from the files), limits, device.
        assert (lazy["loaded"], lazy["version"], lazy["device"]) == (False, eager["version"], "cpu")
        idle_mb = _rss_mb(pid)

        def embed() -> np.ndarray[Any, Any]:
            response = httpx.post(f"{service.url}/v1/embed/text", json={"texts": texts}, timeout=120)
            assert response.status_code == 200, response.text
            assert response.json()["version"] == eager["version"]
            return np.asarray(response.json()["vectors"])

        assert np.allclose(embed(), reference, atol=1e-6)
        loaded_mb = _rss_mb(pid)
        deadline = time.monotonic() + 30
        while _text_caps(service.url)["loaded"]:
            assert time.monotonic() < deadline, "the idle model was not unloaded"
            time.sleep(0.1)
        unloaded_mb = _rss_mb(pid)
        assert httpx.get(f"{service.url}/ready").status_code == 200  # unloaded, still ready
        assert np.allclose(embed(), reference, atol=1e-6)  # loaded again on demand
        events = [
            json.loads(line)["event"]
            for line in service.log_path.read_text().splitlines()
            if line.startswith("{")
        ]
    assert events.count("model_loaded_on_demand") == 2 and events.count("model_unloaded") >= 1
    # Loading adds ~270 MB (torch and transformers' imports, which stay, and the weights); unloading
    # gave back ~50 MB here (the weights' pages; measured 52). Loosely: at least 25 MB.
    print(f"RSS MB: idle {idle_mb:.0f}, loaded {loaded_mb:.0f}, unloaded {unloaded_mb:.0f}")
    assert loaded_mb - idle_mb > 100
    assert loaded_mb - unloaded_mb > 25
