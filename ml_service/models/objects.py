"""COCO objects from SSD-MobileNet-v2 (TensorFlow frozen graph run by OpenCV DNN, bundled)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypedDict

import numpy as np

from ml_service.models.base import Image, InferenceModel, ItemResult
from ml_service.models.tags import openpibo_models_dir

_GRAPH_FILE = "frozen_inference_graph.pb"
_CONFIG_FILE = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
_INPUT_SIDE = 300

# The TensorFlow Object Detection API's mscoco_label_map: ids 1..90, of which the 80 below were
# trained (12, 26, 29, 30, 45, 66, 68, 69, 71 and 83 are unused ids of the original COCO paper).
COCO_LABELS: dict[int, str] = {
    1: "person",
    2: "bicycle",
    3: "car",
    4: "motorcycle",
    5: "airplane",
    6: "bus",
    7: "train",
    8: "truck",
    9: "boat",
    10: "traffic light",
    11: "fire hydrant",
    13: "stop sign",
    14: "parking meter",
    15: "bench",
    16: "bird",
    17: "cat",
    18: "dog",
    19: "horse",
    20: "sheep",
    21: "cow",
    22: "elephant",
    23: "bear",
    24: "zebra",
    25: "giraffe",
    27: "backpack",
    28: "umbrella",
    31: "handbag",
    32: "tie",
    33: "suitcase",
    34: "frisbee",
    35: "skis",
    36: "snowboard",
    37: "sports ball",
    38: "kite",
    39: "baseball bat",
    40: "baseball glove",
    41: "skateboard",
    42: "surfboard",
    43: "tennis racket",
    44: "bottle",
    46: "wine glass",
    47: "cup",
    48: "fork",
    49: "knife",
    50: "spoon",
    51: "bowl",
    52: "banana",
    53: "apple",
    54: "sandwich",
    55: "orange",
    56: "broccoli",
    57: "carrot",
    58: "hot dog",
    59: "pizza",
    60: "donut",
    61: "cake",
    62: "chair",
    63: "couch",
    64: "potted plant",
    65: "bed",
    67: "dining table",
    70: "toilet",
    72: "tv",
    73: "laptop",
    74: "mouse",
    75: "remote",
    76: "keyboard",
    77: "cell phone",
    78: "microwave",
    79: "oven",
    80: "toaster",
    81: "sink",
    82: "refrigerator",
    84: "book",
    85: "clock",
    86: "vase",
    87: "scissors",
    88: "teddy bear",
    89: "hair drier",
    90: "toothbrush",
}


class DetectedObject(TypedDict):
    label: str
    score: float
    box: list[float]  # x, y, w, h in original pixels


class ObjectModel(InferenceModel[Image, list[DetectedObject]]):
    key: ClassVar[str] = "objects"
    task: ClassVar[str] = "object-detection"
    name: ClassVar[str] = "ssd-mobilenet-v2-coco"
    vector_size: ClassVar[int | None] = None
    # One blobFromImages pass over 8 images measured 2-12% faster per image than one pass each
    # (2 threads: 57.8 -> 54.0 ms at 512 px, 60.0 -> 54.6 at 256; 1 thread: 102 -> 100), with no
    # gain from 4 to 8 images; passes are chunked at preferred_batch (8).
    default_max_batch: ClassVar[int] = 32
    default_preferred_batch: ClassVar[int] = 8
    processing_version: ClassVar[str] = "1"
    runtime_attributes: ClassVar[tuple[str, ...]] = ("_net",)
    # OpenCV DNN has no per-net thread setting: its pool is process-wide (sized per run).
    threads_fixed_at_load: ClassVar[bool] = False
    # One image, 2 threads / 1 thread (tests/ml_service/bench.py, medians of 7, alternating): 70 / 115
    # ms at 320x240, 66 / 107 at 512 px, so a lone image runs on every thread. (8 images over two
    # instances: 53 and 51 ms/img, against 68 and 62 in one 2-thread pass.)
    single_item_on_all_threads: ClassVar[bool] = True

    def __init__(
        self,
        *,
        min_score: float = 0.4,
        max_batch: int | None = None,
        preferred_batch: int | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__(max_batch=max_batch, preferred_batch=preferred_batch, threads=threads)
        self.min_score = min_score
        self._net: Any = None

    def weight_files(self) -> list[Path]:
        folder = openpibo_models_dir()
        return [folder / _GRAPH_FILE, folder / _CONFIG_FILE]

    def processing_options(self) -> str:
        return f"min_score={self.min_score};input={_INPUT_SIDE}"

    def _load(self) -> None:
        import cv2

        graph, config = self.weight_files()
        self._net = cv2.dnn.readNetFromTensorflow(str(graph), str(config))
        self._forward([np.zeros((_INPUT_SIDE, _INPUT_SIDE, 3), dtype=np.uint8)])

    def _forward(self, pixels: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        import cv2

        # The graph wants RGB (it was trained from TF-decoded images) and scales inputs itself.
        self._net.setInput(cv2.dnn.blobFromImages(pixels, size=(_INPUT_SIDE, _INPUT_SIDE), swapRB=False))
        # Rows: [image index in the batch, class id, score, x1, y1, x2, y2 (relative)].
        return np.asarray(self._net.forward(), dtype=np.float32).reshape(-1, 7)

    def _predict_batch(self, batch: Sequence[Image]) -> list[ItemResult[list[DetectedObject]]]:
        results: list[list[DetectedObject]] = [[] for _ in batch]
        for start in range(0, len(batch), self.preferred_batch):
            chunk = batch[start : start + self.preferred_batch]
            for row in self._forward([image.rgb for image in chunk]):
                index, class_id, score = int(row[0]), int(row[1]), float(row[2])
                label = COCO_LABELS.get(class_id)
                if score < self.min_score or label is None or not 0 <= index < len(chunk):
                    continue
                image = chunk[index]
                width, height = image.width, image.height  # boxes in original pixels
                x1, y1, x2, y2 = (float(np.clip(v, 0.0, 1.0)) for v in row[3:7])
                results[start + index].append(
                    DetectedObject(
                        label=label,
                        score=round(score, 4),
                        box=[x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height],
                    )
                )
        return [ItemResult(value=objects) for objects in results]
