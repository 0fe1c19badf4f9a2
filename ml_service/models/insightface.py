"""Faces with an insightface model pack (SCRFD detector + ArcFace recogniser) from a local directory.

``ML_INSIGHTFACE_MODEL_PATH`` names a directory of ONNX files as insightface ships them (``buffalo_l``:
``det_10g.onnx``, ``w600k_r50.onnx`` and others); insightface routes each file by its inputs and
outputs, and this backend keeps the detector and the recogniser. Nothing is downloaded: insightface's
model packs are not installable here (docs/models.md), so the tests write a tiny pack of the same interface
(tests/ml_service/tiny_insightface.py). When the path is unset, faces use YuNet + SFace (faces.py).

It answers like the default backend (``Face``: box, score, five landmarks in the same order, unit
embedding), with the recogniser's own vector size (512 for ArcFace packs): one batch detects per image
and embeds every face of every image in one recogniser pass.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ml_service.device import DeviceSetting
from ml_service.models.base import FloatArray, Image, InferenceModel, ItemResult, unit_rows
from ml_service.models.faces import Face, attach_embeddings

# ArcFace is trained on 112 px aligned crops; a face much smaller than a third of that is upscaled
# into invented detail, and its vector would join clusters at random. Such faces are still reported,
# without an embedding (as the default backend does below its own limit).
MIN_EMBED_FACE_PX = 32
# SCRFD's usual input: images are letterboxed to this square (insightface's buffalo_l default).
DEFAULT_DET_SIZE = 640


def onnx_providers(setting: DeviceSetting) -> tuple[str, list[str]]:
    """(device, onnxruntime providers): CUDA when asked for or, with "auto", when onnxruntime has it."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    cuda = "CUDAExecutionProvider" in available
    if setting == "cuda" and not cuda:
        raise RuntimeError(f"ML_DEVICE=cuda, but onnxruntime has no CUDAExecutionProvider ({available})")
    if setting != "cpu" and cuda:
        return "cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return "cpu", ["CPUExecutionProvider"]


class InsightFaceModel(InferenceModel[Image, list[Face]]):
    key: ClassVar[str] = "faces"
    task: ClassVar[str] = "face"
    name: ClassVar[str] = "insightface"
    # From the recogniser's output (``dim``, known once loaded); capabilities report it as vector_size.
    vector_size: ClassVar[int | None] = None
    # Detection runs per image (SCRFD's input is one letterboxed image); the recogniser takes all
    # faces of a batch at once. Image requests follow the image endpoint's limits (16 / 8).
    default_max_batch: ClassVar[int] = 16
    default_preferred_batch: ClassVar[int] = 8
    processing_version: ClassVar[str] = "1"
    runtime_attributes: ClassVar[tuple[str, ...]] = ("_detector", "_recognizer")

    def __init__(
        self,
        model_path: Path,
        *,
        min_score: float = 0.6,
        det_size: int = DEFAULT_DET_SIZE,
        device: DeviceSetting = "auto",
        max_batch: int | None = None,
        preferred_batch: int | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__(max_batch=max_batch, preferred_batch=preferred_batch, threads=threads)
        self.model_path = model_path
        self.min_score = min_score
        self.det_size = det_size
        self.requested_device: DeviceSetting = device
        self.providers: list[str] = []
        self.dim = 0  # the recogniser's vector size, read when loaded
        self._detector: Any = None
        self._recognizer: Any = None

    def weight_files(self) -> list[Path]:
        files = sorted(self.model_path.glob("*.onnx"))
        if not files:
            raise FileNotFoundError(f"no insightface model pack (*.onnx) under {self.model_path}")
        return files

    def processing_options(self) -> str:
        return f"min_score={self.min_score};det_size={self.det_size};min_embed={MIN_EMBED_FACE_PX}"

    def capabilities(self) -> dict[str, object]:
        return {
            **super().capabilities(),
            "vector_size": self.dim or None,
            "weights": self.model_path.name,
            "det_size": self.det_size,
        }

    def _resolve(self) -> None:
        # The device (CUDA or CPU) does not change results beyond float noise: not part of the version.
        self.device, self.providers = onnx_providers(self.requested_device)

    def _load(self) -> None:
        import onnxruntime
        from insightface.app import FaceAnalysis

        # insightface's alignment calls a scikit-image method deprecated in 0.26 (same result).
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface\.utils\.face_align")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        app = FaceAnalysis(
            name=str(self.model_path),
            allowed_modules=["detection", "recognition"],
            providers=self.providers,
            sess_options=options,
        )
        if "recognition" not in app.models:
            raise FileNotFoundError(f"{self.model_path}: a detector but no recognition model (ArcFace)")
        side = self.det_size
        gpu = 0 if self.device == "cuda" else -1
        app.prepare(ctx_id=gpu, det_thresh=self.min_score, det_size=(side, side))
        self._detector = app.det_model
        self._recognizer = app.models["recognition"]
        self.dim = int(self._recognizer.get_feat([np.zeros((112, 112, 3), np.uint8)]).shape[-1])
        self._detector.detect(np.zeros((side, side, 3), np.uint8))  # warm: the first run sizes buffers

    def _embed(self, crops: list[np.ndarray[Any, Any]]) -> FloatArray:
        return unit_rows(np.asarray(self._recognizer.get_feat(crops)).reshape(len(crops), -1))

    def _predict_batch(self, batch: Sequence[Image]) -> list[ItemResult[list[Face]]]:
        from insightface.utils.face_align import norm_crop

        per_image: list[list[Face]] = []
        crops: list[np.ndarray[Any, Any]] = []
        owners: list[Face] = []
        crop_side = int(self._recognizer.input_size[0])
        for image in batch:
            boxes, points = self._detector.detect(image.bgr, max_num=0)
            faces: list[Face] = []
            s = image.scale
            for i, (x1, y1, x2, y2, score) in enumerate(np.asarray(boxes, dtype=np.float64).tolist()):
                face = Face(
                    box=[x1 * s, y1 * s, (x2 - x1) * s, (y2 - y1) * s],
                    score=score,
                    landmarks=[] if points is None else [[px * s, py * s] for px, py in points[i].tolist()],
                    embedding=None,
                )
                faces.append(face)
                if points is not None and min(x2 - x1, y2 - y1) >= MIN_EMBED_FACE_PX:
                    crops.append(norm_crop(image.bgr, landmark=points[i], image_size=crop_side))
                    owners.append(face)
            per_image.append(faces)
        attach_embeddings(owners, crops, self._embed)
        return [ItemResult(value=faces) for faces in per_image]
