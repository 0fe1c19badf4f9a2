"""The plug-in contract every model follows (after Immich's ``InferenceModel``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import blake3
import numpy as np
import structlog

In = TypeVar("In")
Out = TypeVar("Out")
In_contra = TypeVar("In_contra", contravariant=True)

log = structlog.get_logger(__name__)

# Hex digits of the weights digest that go into a version string: 48 bits is plenty to tell
# model files apart while keeping cache keys short.
_DIGEST_CHARS = 12


@dataclass(frozen=True, slots=True)
class ItemResult(Generic[Out]):
    """One item's outcome: a value, or the reason it has none."""

    value: Out | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


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


def describe_error(exc: BaseException) -> str:
    """A short, single-line error text for an item's ``error`` field."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    def loaded(self) -> bool: ...
    @property
    def version(self) -> str: ...
    def load(self) -> None: ...
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

    def __init__(
        self, *, max_batch: int | None = None, preferred_batch: int | None = None, threads: int = 1
    ) -> None:
        self.max_batch = max_batch or self.default_max_batch
        self.preferred_batch = min(preferred_batch or self.default_preferred_batch, self.max_batch)
        self.threads = threads
        self.max_concurrency = 1
        self._version: str | None = None

    @property
    def loaded(self) -> bool:
        return self._version is not None

    @property
    def version(self) -> str:
        if self._version is None:
            raise RuntimeError(f"model {self.key!r} is not loaded")
        return self._version

    def load(self) -> None:
        """Load weights (blocking) and fix the version string from their content."""
        files = self.weight_files()
        self._load()
        digest = weights_digest(files, extra=self.processing_options())
        self._version = f"{digest}-p{self.processing_version}"

    def predict(self, batch: Sequence[In]) -> list[ItemResult[Out]]:
        """Run the model over ``batch``; an item that fails gets an error, the rest still a value."""
        if not batch:
            return []
        try:
            results = self._predict_batch(batch)
        except Exception as exc:
            if len(batch) == 1:
                return [ItemResult(error=describe_error(exc))]
            # One bad input must not cost the others their results: retry them one by one.
            log.warning(
                "batch_failed_retrying_items", model=self.key, size=len(batch), error=describe_error(exc)
            )
            return [self._predict_one(item) for item in batch]
        if len(results) != len(batch):
            raise RuntimeError(f"{self.key}: {len(results)} results for {len(batch)} inputs")
        return results

    def _predict_one(self, item: In) -> ItemResult[Out]:
        try:
            return self._predict_batch([item])[0]
        except Exception as exc:
            return ItemResult(error=describe_error(exc))

    def capabilities(self) -> dict[str, object]:
        return {
            "task": self.task,
            "name": self.name,
            "version": self.version,
            "vector_size": self.vector_size,
            "max_batch": self.max_batch,
            "preferred_batch": self.preferred_batch,
            "max_concurrency": self.max_concurrency,
        }

    def processing_options(self) -> str:
        """Settings that change results (thresholds, sizes); folded into the version."""
        return ""

    @abstractmethod
    def weight_files(self) -> list[Path]:
        """The files whose content defines the model."""

    @abstractmethod
    def _load(self) -> None:
        """Build the runtime objects; called once, off the event loop."""

    @abstractmethod
    def _predict_batch(self, batch: Sequence[In]) -> list[ItemResult[Out]]:
        """Results for the whole batch; may raise, then items are retried one at a time."""
