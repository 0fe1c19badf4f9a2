"""Text in images with RapidOCR (PP-OCRv6 small detector and recogniser, ONNX, bundled)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypedDict

import numpy as np

from ml_service.models.base import Image, InferenceModel, ItemResult

_DET_FILE = "PP-OCRv6_det_small.onnx"
_REC_FILE = "PP-OCRv6_rec_small.onnx"
_CLS_FILE = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"


class OcrLine(TypedDict):
    text: str
    score: float
    box: list[list[float]]  # four corners, clockwise from top-left, original pixels


class OcrResult(TypedDict):
    text: str  # the lines joined with newlines, in reading order; "" when there is no text
    lines: list[OcrLine]


def _package_models_dir() -> Path:
    # find_spec locates the package without importing it (its import pulls in omegaconf etc.).
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("rapidocr is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class OcrModel(InferenceModel[Image, OcrResult]):
    key: ClassVar[str] = "ocr"
    task: ClassVar[str] = "ocr"
    name: ClassVar[str] = "rapidocr-ppocr"
    vector_size: ClassVar[int | None] = None
    # RapidOCR has no batch API for whole images (it batches text lines inside one image), so a
    # batch is a loop: 1-by-1 vs 8 at once measured 150 vs 148 ms/img at 512 px, 34 vs 34 at 256.
    # OCR is the slowest image model, so it bounds a request: 16 images at 512 px take ~4 s with
    # every task; over HTTP 8 images a request were 0-15% cheaper per image than 1, hence 8.
    default_max_batch: ClassVar[int] = 16
    default_preferred_batch: ClassVar[int] = 8
    processing_version: ClassVar[str] = "1"
    runtime_attributes: ClassVar[tuple[str, ...]] = ("_engine",)
    # Reading time follows the amount of text (10x between images), so instances take images one
    # at a time rather than equal shares.
    per_item_dispatch: ClassVar[bool] = True
    # One image, 2 threads / 1 thread (tests/ml_service/bench.py, medians of 7, alternating): 134 / 131
    # ms at 320x240, 161 / 230 at 512 px. Never slower, 30% faster on larger images: a lone image
    # gets a 2-thread engine of its own. (8 images over two 1-thread engines: 63 and 125 ms/img,
    # against 133 and 168 one after another on 2 threads.)
    single_item_on_all_threads: ClassVar[bool] = True

    def __init__(
        self,
        *,
        min_score: float = 0.5,
        det_limit_type: str = "max",
        det_limit_side_len: int = 960,
        max_batch: int | None = None,
        preferred_batch: int | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__(max_batch=max_batch, preferred_batch=preferred_batch, threads=threads)
        self.min_score = min_score
        self.det_limit_type = det_limit_type
        self.det_limit_side_len = det_limit_side_len
        self._engine: Any = None

    def weight_files(self) -> list[Path]:
        folder = _package_models_dir()
        return [folder / _DET_FILE, folder / _REC_FILE, folder / _CLS_FILE]

    def processing_options(self) -> str:
        return f"min_score={self.min_score};det={self.det_limit_type}:{self.det_limit_side_len}"

    def _load(self) -> None:
        from rapidocr import RapidOCR

        det, rec, cls = self.weight_files()
        self._engine = RapidOCR(
            params={
                "Global.log_level": "error",
                "Global.text_score": self.min_score,
                # Explicit paths: RapidOCR otherwise resolves (and may try to download) by name.
                "Det.model_path": str(det),
                "Rec.model_path": str(rec),
                "Cls.model_path": str(cls),
                "Det.limit_type": self.det_limit_type,
                "Det.limit_side_len": self.det_limit_side_len,
                "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
        )
        # RapidOCR builds its three sessions on first use; do it now, not in the first request.
        warm = np.full((64, 256, 3), 255, dtype=np.uint8)
        warm[24:40, 32:224] = 0
        self._engine(warm)

    def _predict_batch(self, batch: Sequence[Image]) -> list[ItemResult[OcrResult]]:
        return [ItemResult(value=self._read(image)) for image in batch]

    def _read(self, image: Image) -> OcrResult:
        # An ndarray is taken as BGR by RapidOCR.
        out = self._engine(image.bgr)
        if out.txts is None or out.boxes is None or out.scores is None:
            return OcrResult(text="", lines=[])
        boxes = np.asarray(out.boxes, dtype=np.float64) * image.scale
        lines = [
            OcrLine(text=str(text), score=float(score), box=[[float(x), float(y)] for x, y in box])
            for text, score, box in zip(out.txts, out.scores, boxes, strict=True)
        ]
        return OcrResult(text="\n".join(line["text"] for line in lines), lines=lines)
