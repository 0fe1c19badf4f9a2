"""Sentence embeddings with sentence-transformers (all-MiniLM-L6-v2 from a local directory)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import structlog

from ml_service.device import require_cuda
from ml_service.models.base import FloatArray, ItemResult, describe_error
from ml_service.models.local_torch import LocalTorchModel
from ml_service.models.packed_bert import PackedBert
from ml_service.models.sub_batches import run_length_sorted

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = structlog.get_logger(__name__)


class TextEmbedder(LocalTorchModel[str, FloatArray]):
    """L2-normalised text vectors; a batch runs as length-sorted passes of ``compute_batch`` texts, on packed
    tokens where the model allows it (packed_bert.py), else through sentence-transformers' encode."""

    key: ClassVar[str] = "text"
    task: ClassVar[str] = "text-embedding"
    name: ClassVar[str] = "all-MiniLM-L6-v2"
    vector_size: ClassVar[int | None] = 384
    # Over HTTP, 2 cores, 2 threads (docs/ml-api.md, "Measurements"): batch 1 55 texts/s, 8 225,
    # 32 428, 64 503 (127 ms a request), 128 524 (244 ms). Past 64 throughput stops growing while
    # latency doubles: prefer 64, accept up to 128.
    default_max_batch: ClassVar[int] = 128
    default_preferred_batch: ClassVar[int] = 64
    # Texts per forward pass; a larger merged batch runs as length-sorted sub-batches (sub_batches.py).
    # CPU: measured by scripts/measure_compute_batch.py (docs/ml-api.md, "Compute batches"). CUDA: a larger
    # pass keeps a GPU busy; 128 is a default no GPU here has checked.
    default_compute_batch: ClassVar[dict[str, int] | None] = {"cpu": 32, "cuda": 128}
    # On packed tokens a pass pads nothing (packed_bert.py), so its size is only about memory and per-pass
    # costs: measured the same way, 128 (a full request in one pass).
    packed_compute_batch: ClassVar[int] = 128
    processing_version: ClassVar[str] = "1"  # mean pooling from the model config + L2 norm
    runtime_attributes: ClassVar[tuple[str, ...]] = ("_model", "_packed")
    # Probe texts at load: the packed encoder must give encode's vectors (PackedBert) before it is used.
    packed_probe: ClassVar[tuple[str, ...]] = (
        "",
        "a cat",
        "Residents were evacuated after the river flooded the harbour district on Tuesday morning.",
        "Officials said the new railway line will reopen next summer, according to a spokesperson.",
    )
    packed_tolerance: ClassVar[float] = 1e-4  # largest difference of a vector component

    # The loaded model (``runtime_attributes``: None again after an unload). Construction: LocalTorchModel.
    _model: SentenceTransformer | None = None
    # The same model on packed tokens (no padding in its matrix products; packed_bert.py), when it is a
    # model that module computes exactly; None: sentence-transformers' encode.
    _packed: PackedBert | None = None

    @property
    def packed_tokens(self) -> bool:
        """The loaded model runs on packed tokens (packed_bert.py), not sentence-transformers' encode."""
        return self._packed is not None

    @property
    def compute_batch(self) -> int:
        """Texts per pass: ML_COMPUTE_BATCH, else ``packed_compute_batch`` on packed tokens, else the device's
        default (at most ``max_batch``)."""
        if self._packed is not None and self.configured_compute_batch is None:
            return max(1, min(self.packed_compute_batch, self.max_batch))
        return super().compute_batch

    def capabilities(self) -> dict[str, object]:
        return {**super().capabilities(), "packed_tokens": self.packed_tokens}

    def memory_probe(self, size: int) -> Sequence[str] | None:
        # Worst case: texts as long as the model reads (max_seq_length tokens; longer are cut).
        limit = (self._model.max_seq_length if self._model is not None else None) or 512
        return [" ".join(["memory"] * limit)] * size

    def _load(self) -> None:
        # Nothing may be fetched at run time: make the Hugging Face libraries fail instead of
        # reaching for the hub if a file is missing from the local model directory.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        # A tqdm bar on stderr would break the JSON log stream. (transformers leaves it unannotated.)
        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        # torch's pool is process-wide; the service runs one model at a time, so it may use all of
        # the configured threads (OMP_WAIT_POLICY is set by the registry, before torch loads).
        torch.set_num_threads(self.threads)
        if self.device == "cuda":
            require_cuda()
        model = SentenceTransformer(str(self.model_path), device=self.device, local_files_only=True)
        self._model = model.half() if self.half else model
        dim = self._model.get_embedding_dimension()
        if dim != self.vector_size:
            raise ValueError(f"text model at {self.model_path} gives {dim}-d vectors, expected 384")
        self._packed = self._checked_packed(PackedBert.build(self._model, self.device))

    def _checked_packed(self, packed: PackedBert | None) -> PackedBert | None:
        """``packed`` if it gives encode's vectors for the probe texts, else None (logged)."""
        if packed is None:
            return None
        texts = list(self.packed_probe)
        expected = np.stack(self._encode_stock(texts))
        try:
            difference = float(np.max(np.abs(packed.encode(texts) - expected)))
        except Exception as exc:  # a layout the checks in PackedBert.build did not foresee: encode serves
            log.warning("packed_encoder_failed", model=self.key, error=describe_error(exc))
            return None
        if difference > self.packed_tolerance:
            log.warning("packed_encoder_differs", model=self.key, max_difference=difference)
            return None
        return packed

    def _predict_batch(self, batch: Sequence[str]) -> list[ItemResult[FloatArray]]:
        if self._model is None:
            raise RuntimeError("text model is not loaded")
        texts = list(batch)
        lengths = self.token_lengths(texts) if len(texts) > self.compute_batch else [0] * len(texts)
        rows = run_length_sorted(texts, lengths, self.compute_batch, self._encode)
        return [ItemResult(value=row) for row in rows]

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads of each text (special tokens included, cut at ``max_seq_length``)."""
        if self._model is None:
            raise RuntimeError("text model is not loaded")
        ids = self._model.tokenizer(
            list(texts), add_special_tokens=True, truncation=True, max_length=self._model.max_seq_length
        )["input_ids"]
        return [len(row) for row in ids]

    def _encode(self, texts: list[str]) -> list[FloatArray]:
        """One forward pass over ``texts``: unit vectors, in order."""
        if self._packed is not None:
            return list(self._packed.encode(texts))
        return self._encode_stock(texts)

    def _encode_stock(self, texts: list[str]) -> list[FloatArray]:
        """sentence-transformers' encode, one pass padded to the longest of ``texts``."""
        if self._model is None:
            raise RuntimeError("text model is not loaded")
        vectors = self._model.encode(
            texts,
            batch_size=len(texts),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        matrix = np.asarray(vectors, dtype=np.float32)  # float16 on a GPU with half precision
        return list(matrix)
