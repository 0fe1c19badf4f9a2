"""The plug-in contract every model follows (after Immich's ``InferenceModel``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import blake3
import numpy as np
import structlog

from ml_service.device import (
    DEFAULT_MEMORY_FRACTION,
    cuda_free_bytes,
    is_out_of_memory,
    max_batch_from_memory,
    measure_per_item_bytes,
    release_memory,
)
from ml_service.errors import ErrorCode

In = TypeVar("In")
Out = TypeVar("Out")
In_contra = TypeVar("In_contra", contravariant=True)

log = structlog.get_logger(__name__)

# Hex digits of the weights digest that go into a version string: 48 bits is plenty to tell
# model files apart while keeping cache keys short.
_DIGEST_CHARS = 12


@dataclass(frozen=True, slots=True)
class ItemResult(Generic[Out]):
    """One item's outcome: a value, or the reason it has none (``error``, and its ``code``)."""

    value: Out | None = None
    error: str | None = None
    code: ErrorCode | None = None  # None with an error: the model raised (``error_code``)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def error_code(self) -> ErrorCode | None:
        """None when ``ok``; else the code given, ``model_error`` when none was."""
        if self.error is None:
            return None
        return self.code or ErrorCode.MODEL_ERROR


PixelArray = np.ndarray[Any, np.dtype[np.uint8]]
FloatArray = np.ndarray[Any, np.dtype[np.float32]]


@dataclass(frozen=True, slots=True)
class Image:
    """A decoded image as the image models take it: the same pixels in both channel orders.

    The pixels may be a downscaled working copy; ``scale`` maps their coordinates back to the
    original image (original = working * scale), so every box a model reports is in original pixels.
    """

    rgb: PixelArray
    bgr: PixelArray
    width: int  # of the original image
    height: int

    @property
    def scale(self) -> float:
        return self.width / int(self.rgb.shape[1])


def weights_digest(paths: Iterable[Path], extra: str = "") -> str:
    """blake3 over the given files (in order) and ``extra``; the model's identity for caches."""
    hasher = blake3.blake3()
    for path in paths:
        hasher.update(path.name.encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
    hasher.update(extra.encode())
    digest: str = hasher.hexdigest()
    return digest[:_DIGEST_CHARS]


def unit_rows(matrix: Any) -> FloatArray:
    """Each row of a 2-d array L2-normalised, as float32 (a zero row stays zero)."""
    rows = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: FloatArray = (rows / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def predict_each(predict_one: Callable[[In], Out], batch: Sequence[In]) -> list[ItemResult[Out]]:
    """Items one after another (models without batching); one that raises gets its error, the rest values."""
    results: list[ItemResult[Out]] = []
    for item in batch:
        try:
            results.append(ItemResult(value=predict_one(item)))
        except Exception as exc:
            results.append(ItemResult(error=describe_error(exc)))
    return results


def describe_error(exc: BaseException) -> str:
    """A short, single-line error text for an item's ``error`` field."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def predict_splitting(
    predict: Callable[[Sequence[In]], list[ItemResult[Out]]],
    batch: Sequence[In],
    *,
    model: str,
    on_out_of_memory: Callable[[], None] | None = None,
) -> list[ItemResult[Out]]:
    """``predict(batch)``; when it raises, the batch is split so that only failing items fail.

    - Out of memory (``is_out_of_memory``): the batch is halved and each half tried again,
      recursively, down to single items; ``on_out_of_memory`` runs before each retry (frees the
      allocator's cache). An item that runs out of memory alone gets that error.
    - Any other exception: every item is tried alone, so one poisoned item fails alone (a batch
      either fails for one of its items or for all of them; halving would only add calls).
    """
    if not batch:
        return []
    try:
        results = predict(batch)
    except Exception as exc:
        if len(batch) == 1:
            return [ItemResult(error=describe_error(exc))]
        if is_out_of_memory(exc):
            if on_out_of_memory is not None:
                on_out_of_memory()
            half = len(batch) // 2
            log.warning("batch_out_of_memory_split", model=model, size=len(batch), error=describe_error(exc))
            return [
                *predict_splitting(predict, batch[:half], model=model, on_out_of_memory=on_out_of_memory),
                *predict_splitting(predict, batch[half:], model=model, on_out_of_memory=on_out_of_memory),
            ]
        log.warning("batch_failed_retrying_items", model=model, size=len(batch), error=describe_error(exc))
        return [_predict_alone(predict, item) for item in batch]
    if len(results) != len(batch):
        raise RuntimeError(f"{model}: {len(results)} results for {len(batch)} inputs")
    return results


def _predict_alone(predict: Callable[[Sequence[In]], list[ItemResult[Out]]], item: In) -> ItemResult[Out]:
    try:
        results = predict([item])
    except Exception as exc:
        return ItemResult(error=describe_error(exc))
    if len(results) != 1:
        return ItemResult(error=f"RuntimeError: {len(results)} results for 1 input")
    return results[0]


class ServedModel(Protocol[In_contra, Out]):
    """What the service serves: one model (``InferenceModel``) or a group of its instances."""

    @property
    def key(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def vector_size(self) -> int | None: ...
    @property
    def max_batch(self) -> int: ...
    @property
    def preferred_batch(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def loaded(self) -> bool: ...
    @property
    def identified(self) -> bool: ...
    @property
    def version(self) -> str: ...
    def identify(self) -> str: ...
    def load(self) -> None: ...
    def unload(self) -> None: ...
    def predict(self, batch: Sequence[In_contra]) -> list[ItemResult[Out]]: ...
    def capabilities(self) -> dict[str, object]: ...


class InferenceModel(ABC, Generic[In, Out]):
    """A loaded model that maps a batch of inputs to one result per input.

    ``predict`` is synchronous and runs in an executor; the service never calls it concurrently for
    the same instance (``max_concurrency`` is 1 for every model here). Several instances of one model
    may run at once (``ml_service/models/instances.py``), each on its own thread.
    """

    key: ClassVar[str]  # the name used in requests and capabilities: "text", "faces", ...
    task: ClassVar[str]  # what it does, as reported in /capabilities: "text-embedding", ...
    name: ClassVar[str]
    vector_size: ClassVar[int | None] = None
    default_max_batch: ClassVar[int]
    default_preferred_batch: ClassVar[int]
    # Bumped by hand whenever pre- or post-processing changes results; part of ``version``.
    processing_version: ClassVar[str]
    # How an InstanceGroup runs this model (ml_service/models/instances.py):
    # - True when the runtime's thread count is fixed when an instance is built (onnxruntime
    #   session, tflite interpreter), so running on more threads needs an instance of its own;
    #   False for OpenCV DNN, whose pool is process-wide and sized before each run.
    threads_fixed_at_load: ClassVar[bool] = True
    # True when a batch of one image ran measurably faster on all threads than on one instance's
    # share; the numbers are beside each model's setting.
    single_item_on_all_threads: ClassVar[bool] = False
    # True when the cost per item varies widely (OCR: with the amount of text), so instances take
    # items one at a time; otherwise each instance takes one contiguous, equal share.
    per_item_dispatch: ClassVar[bool] = False

    # Attributes holding the loaded runtime (sessions, weights); ``unload`` sets them back to None so
    # that their memory can be released. A model with more to release overrides ``_unload``.
    runtime_attributes: ClassVar[tuple[str, ...]] = ()
    # Items one forward pass takes, per device ("cpu", "cuda"), for a model that pads a pass's items to
    # the longest: a larger batch runs as length-sorted sub-batches of this size (``sub_batches.py``).
    # None: the model does not cut batches (``compute_batch`` is then ``max_batch``).
    default_compute_batch: ClassVar[dict[str, int] | None] = None

    def __init__(
        self,
        *,
        max_batch: int | None = None,
        preferred_batch: int | None = None,
        threads: int = 1,
        compute_batch: int | None = None,
    ) -> None:
        # What configuration allows; on a GPU ``load`` may lower max_batch to what fits in memory.
        self.configured_max_batch = max_batch or self.default_max_batch
        self.configured_preferred_batch = min(
            preferred_batch or self.default_preferred_batch, self.configured_max_batch
        )
        self.configured_compute_batch = compute_batch  # ML_COMPUTE_BATCH; None: the device's default
        self.max_batch = self.configured_max_batch
        self.preferred_batch = self.configured_preferred_batch
        self.threads = threads
        self.max_concurrency = 1
        # Where it runs ("cpu" or "cuda"); a model that can use a GPU decides in ``_resolve``.
        self.device = "cpu"
        # Share of the free GPU memory a batch may take (ML_GPU_MEMORY_FRACTION); CUDA only.
        self.memory_fraction = DEFAULT_MEMORY_FRACTION
        # Bytes one item costs on the GPU, measured at load (None: not measured, e.g. on the CPU).
        self.per_item_bytes: int | None = None
        self._version: str | None = None
        self._loaded = False

    @property
    def loaded(self) -> bool:
        """The runtime is in memory (False before the first load and after an unload)."""
        return self._loaded

    @property
    def identified(self) -> bool:
        """The version is known (``identify`` ran); it may be, while the model is not loaded."""
        return self._version is not None

    @property
    def compute_batch(self) -> int:
        """Items per forward pass (at most ``max_batch``): ML_COMPUTE_BATCH, else the measured default for
        the device the model runs on, else ``max_batch`` (the batch in one pass)."""
        defaults = self.default_compute_batch or {}
        size = self.configured_compute_batch or defaults.get(self.device) or self.max_batch
        return max(1, min(size, self.max_batch))

    @property
    def version(self) -> str:
        if self._version is None:
            raise RuntimeError(f"model {self.key!r} is not identified (neither loaded nor identified)")
        return self._version

    def identify(self) -> str:
        """Fix the version from the weight files and settings, without loading the runtime.

        Runs once (files are read once per process); ``load`` calls it first. With ML_LAZY_LOAD the
        service calls it at start-up so that /capabilities knows every version before any load.
        """
        if self._version is None:
            self._resolve()
            digest = weights_digest(self.weight_files(), extra=self.processing_options())
            self._version = f"{digest}-p{self.processing_version}"
        return self._version

    def load(self) -> None:
        """Load weights (blocking); on a GPU, size the batch limit from the free memory."""
        self.identify()
        self._load()
        if self.device == "cuda":
            self._fit_batch_to_memory()
        self._loaded = True

    def unload(self) -> None:
        """Drop the runtime and release its memory; the next ``load`` builds it again."""
        if not self._loaded:
            return
        try:
            self._unload()
            release_memory(self.device)
        finally:
            self._loaded = False  # last: "loaded": false means the memory is given back

    def predict(self, batch: Sequence[In]) -> list[ItemResult[Out]]:
        """Run the model over ``batch``; an item that fails gets an error, the rest still a value.

        A batch that raises is split (``predict_splitting``): halves on out-of-memory, else each
        item alone.
        """
        return predict_splitting(
            self._predict_batch, batch, model=self.key, on_out_of_memory=lambda: release_memory(self.device)
        )

    def capabilities(self) -> dict[str, object]:
        caps: dict[str, object] = {
            "task": self.task,
            "name": self.name,
            "version": self.version,
            "vector_size": self.vector_size,
            "max_batch": self.max_batch,
            "preferred_batch": self.preferred_batch,
            "max_concurrency": self.max_concurrency,
            "device": self.device,
            "loaded": self.loaded,
        }
        if self.default_compute_batch:
            # Only the models that cut a batch into sub-batches: the others run a batch as one unit.
            caps["compute_batch"] = self.compute_batch
        return caps

    def processing_options(self) -> str:
        """Settings that change results (thresholds, sizes); folded into the version."""
        return ""

    def memory_probe(self, size: int) -> Sequence[In] | None:
        """``size`` worst-case inputs for measuring the GPU memory of a batch; None: not measured."""
        return None

    def _fit_batch_to_memory(self) -> None:
        """CUDA only (unchecked here): max_batch = min(configured, what fits the free memory)."""
        if self.memory_probe(1) is None:
            return

        def run(size: int) -> None:
            probe = self.memory_probe(size)
            if probe is not None:
                self._predict_batch(probe)

        try:
            self.per_item_bytes = measure_per_item_bytes(run)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            # Not even the probe batch fits: serve one item at a time (its own error if it does not fit).
            release_memory(self.device)
            self.max_batch = self.preferred_batch = 1
            log.warning("batch_probe_out_of_memory", model=self.key, error=describe_error(exc))
            return
        free = cuda_free_bytes()
        self.max_batch = max_batch_from_memory(
            free, self.per_item_bytes, self.memory_fraction, self.configured_max_batch
        )
        self.preferred_batch = min(self.configured_preferred_batch, self.max_batch)
        log.info(
            "batch_sized_from_memory",
            model=self.key,
            free_mb=round(free / 2**20),
            per_item_mb=round(self.per_item_bytes / 2**20, 2),
            max_batch=self.max_batch,
        )

    def _resolve(self) -> None:
        """Decide what the version depends on besides the files (device, precision); no loading."""

    def _unload(self) -> None:
        for attribute in self.runtime_attributes:
            setattr(self, attribute, None)

    @abstractmethod
    def weight_files(self) -> list[Path]:
        """The files whose content defines the model."""

    @abstractmethod
    def _load(self) -> None:
        """Build the runtime objects; called off the event loop (again after an unload)."""

    @abstractmethod
    def _predict_batch(self, batch: Sequence[In]) -> list[ItemResult[Out]]:
        """Results for the whole batch; may raise, then the batch is split (``predict``)."""
