"""The real ML app over loopback HTTP, serving a text model of the test's own (``create_app(settings,
registry)``): for failures no real model shows on demand (an unload that raises, a batcher bug, NaN vectors).

    async with serving(text, model_ttl_s=0.2) as (service, client):   # client: httpx.AsyncClient
        await client.post("/v1/embed/text", json={"texts": ["nan"]})
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import uvicorn

from ml_service.app import create_app
from ml_service.config import MLSettings
from ml_service.models.base import FloatArray, ItemResult
from ml_service.models.registry import ModelRegistry
from ml_service.models.text import TextEmbedder
from ml_service.service import MLService
from scripts.ml_process import free_port

DIM = 384
_START_TIMEOUT_S = 60.0
_POLL_S = 0.02


def unit_vector(text: str) -> FloatArray:
    """A deterministic unit vector for ``text``."""
    rng = np.random.default_rng(zlib.crc32(text.encode()))
    vector = rng.standard_normal(DIM).astype(np.float32)
    unit: FloatArray = (vector / np.linalg.norm(vector)).astype(np.float32)
    return unit


class FakeText(TextEmbedder):
    """The text model's interface without torch. Texts "nan", "zero" and "short" get a NaN, an all-zero and a
    10-d vector (what a broken runtime answers); the others a unit vector. Hooks: ``gate`` holds each batch
    until set, ``unload_error`` is raised by every unload, ``broken_batching`` makes ``preferred_batch`` raise
    (a bug in the batcher's own bookkeeping path)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "weights.bin").write_bytes(b"fake text weights")
        self.broken_batching = False
        self._preferred = 1
        super().__init__(folder, device="cpu")
        self.gate: threading.Event | None = None
        self.unload_error: Exception | None = None
        self.unload_attempts = 0
        self.batches = 0

    @property  # an attribute in the base class; a property here, to break on demand
    def preferred_batch(self) -> int:
        if self.broken_batching:
            raise RuntimeError("preferred_batch bookkeeping bug")
        return self._preferred

    @preferred_batch.setter
    def preferred_batch(self, value: int) -> None:
        self._preferred = value

    def _load(self) -> None:
        pass

    def _unload(self) -> None:
        self.unload_attempts += 1
        if self.unload_error is not None:
            raise self.unload_error

    def _predict_batch(self, batch: Sequence[str]) -> list[ItemResult[FloatArray]]:
        self.batches += 1
        if self.gate is not None:
            self.gate.wait(timeout=30)
        results: list[ItemResult[FloatArray]] = []
        for text in batch:
            if text == "nan":
                vector = np.full(DIM, np.nan, dtype=np.float32)
            elif text == "zero":
                vector = np.zeros(DIM, dtype=np.float32)
            elif text == "short":
                vector = unit_vector(text)[:10]
            else:
                vector = unit_vector(text)
            results.append(ItemResult(value=vector))
        return results


@asynccontextmanager
async def serving(
    text: FakeText, *, api_key: str | None = None, **settings: object
) -> AsyncIterator[tuple[MLService, httpx.AsyncClient]]:
    """The app with ``text`` as its only model, on a free loopback port, ready; ``settings`` are MLSettings
    fields (e.g. ``model_ttl_s``)."""
    values: dict[str, object] = {
        "image_tasks": (),
        "text_enabled": False,  # the registry below is used instead
        "asr_enabled": False,
        "voices_enabled": False,
        "cpu_threads": 1,
        "api_key": api_key,
        **settings,
    }
    ml_settings = MLSettings(**values)  # type: ignore[arg-type]
    registry = ModelRegistry(text, {}, cpu_threads=1, audio={}, device="cpu")
    app = create_app(ml_settings, registry)
    service: MLService = app.state.service
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=5,  # a test that failed may leave a request hanging
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            deadline = asyncio.get_running_loop().time() + _START_TIMEOUT_S
            while not server.started or (await client.get("/ready")).status_code != 200:
                assert not task.done(), "the server exited during start-up"
                assert asyncio.get_running_loop().time() < deadline, "the service was not ready in time"
                await asyncio.sleep(_POLL_S)
            yield service, client
    finally:
        if text.gate is not None:
            text.gate.set()  # never leave the inference thread waiting
        server.should_exit = True
        await task
