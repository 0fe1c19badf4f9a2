"""Sentence embeddings with sentence-transformers (all-MiniLM-L6-v2 from a local directory)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ml_service.device import require_cuda
from ml_service.models.base import FloatArray, ItemResult
from ml_service.models.local_torch import LocalTorchModel

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class TextEmbedder(LocalTorchModel[str, FloatArray]):
    """L2-normalised text vectors; one forward pass per batch."""

    key: ClassVar[str] = "text"
    task: ClassVar[str] = "text-embedding"
    name: ClassVar[str] = "all-MiniLM-L6-v2"
    vector_size: ClassVar[int | None] = 384
    # Over HTTP, 2 cores, 2 threads (docs/ml-api.md, "Measurements"): batch 1 55 texts/s, 8 225,
    # 32 428, 64 503 (127 ms a request), 128 524 (244 ms). Past 64 throughput stops growing while
    # latency doubles: prefer 64, accept up to 128.
    default_max_batch: ClassVar[int] = 128
    default_preferred_batch: ClassVar[int] = 64
    processing_version: ClassVar[str] = "1"  # mean pooling from the model config + L2 norm
    runtime_attributes: ClassVar[tuple[str, ...]] = ("_model",)

    # The loaded model (``runtime_attributes``: None again after an unload). Construction: LocalTorchModel.
    _model: SentenceTransformer | None = None

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

    def _predict_batch(self, batch: Sequence[str]) -> list[ItemResult[FloatArray]]:
        if self._model is None:
            raise RuntimeError("text model is not loaded")
        vectors = self._model.encode(
            list(batch),
            batch_size=len(batch),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        matrix = np.asarray(vectors, dtype=np.float32)  # float16 on a GPU with half precision
        return [ItemResult(value=row) for row in matrix]
