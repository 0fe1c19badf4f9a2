"""Image–text embeddings (CLIP family) with transformers' ``CLIPModel``, from a local directory.

One model embeds both images (``/v1/analyze/images`` → ``image_vector``) and texts
(``/v1/embed/text`` with ``"space": "image_text"``) into the same space, so a text query finds
images by cosine. ``ML_CLIP_MODEL_PATH`` names a directory written by ``save_pretrained`` (the model's
``config.json`` and weights, its tokenizer, and its image processor config); nothing is downloaded.
No CLIP weights are installable here (docs/models.md): the tests build a tiny random CLIP and save it.

A batch may mix images and texts (both go through one batcher): the images run as one vision
batch and the texts as one text batch; results keep the batch order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ml_service.device import require_cuda
from ml_service.errors import ErrorCode
from ml_service.models.base import FloatArray, Image, ItemResult, unit_rows
from ml_service.models.local_torch import LocalTorchModel, directory_files
from ml_service.models.sub_batches import run_length_sorted

if TYPE_CHECKING:
    import torch

ImageOrText = Image | str


def _config_value(config: dict[str, Any], key: str, section: str) -> Any:
    """``key`` from the top level of a CLIP config.json, else from its text/vision section."""
    if key in config:
        return config[key]
    return config.get(section, {}).get(key)


class ClipModel(LocalTorchModel[ImageOrText, FloatArray]):
    """L2-normalised image and text vectors of one CLIP model, in one space."""

    key: ClassVar[str] = "image_text"
    task: ClassVar[str] = "image-text-embedding"
    name: ClassVar[str] = "clip"
    # The size comes from the weights (config.json's projection_dim): see ``dim``; capabilities
    # report it as vector_size.
    vector_size: ClassVar[int | None] = None
    # A ViT-B/32 image is ~4.4 GFLOPs, ~50-100 ms on one CPU core: a batch of 16 is about a
    # second. Image requests follow the image endpoint's limits (16 / 8).
    default_max_batch: ClassVar[int] = 32
    default_preferred_batch: ClassVar[int] = 16
    # Texts per forward pass of the text tower (padded to the longest): a larger batch of texts runs as
    # length-sorted sub-batches (sub_batches.py). Images are all resized to one size: one pass, no padding.
    # No CLIP weights are installable here to measure it on. On the CPU, the text model's padded path
    # (sentence-transformers' encode) ran sorted passes of 16 as fast as of 32 (125.6 vs 126.1 texts per
    # CPU-second, docs/ml-api.md "Compute batches"), so a full request of 32 texts runs as two sorted passes;
    # 128 on CUDA (unchecked).
    default_compute_batch: ClassVar[dict[str, int] | None] = {"cpu": 16, "cuda": 128}
    processing_version: ClassVar[str] = "1"  # the model's own processor, projection, L2 norm
    runtime_attributes: ClassVar[tuple[str, ...]] = ("_model", "_tokenizer", "_image_processor")

    # Read from config.json by ``identify`` (``_resolve``); construction is LocalTorchModel's.
    dim = 0  # projection_dim
    image_size = 0
    context_length = 0
    # The loaded runtime (``runtime_attributes``: None again after an unload).
    _model: Any = None
    _tokenizer: Any = None
    _image_processor: Any = None

    def weight_files(self) -> list[Path]:
        files = directory_files(self.model_path)
        if not any(p.name == "config.json" for p in files):
            raise FileNotFoundError(f"no CLIP model (config.json) under {self.model_path}")
        return files

    def capabilities(self) -> dict[str, object]:
        return {
            **super().capabilities(),
            "vector_size": self.dim,
            "weights": self.model_path.name,
            "image_size": self.image_size,
            "context_length": self.context_length,
        }

    def _resolve(self) -> None:
        super()._resolve()
        config_file = self.model_path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"no CLIP model (config.json) under {self.model_path}")
        config = json.loads(config_file.read_text(encoding="utf-8"))
        self.dim = int(config.get("projection_dim") or 0)
        self.image_size = int(_config_value(config, "image_size", "vision_config") or 224)
        self.context_length = int(_config_value(config, "max_position_embeddings", "text_config") or 77)
        if self.dim < 1:
            raise ValueError(f"{config_file}: no projection_dim, not a CLIP model")

    def _load(self) -> None:
        # Nothing may be fetched at run time (as for the text model).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        import transformers
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        # No progress bars or advice on stderr, outside the JSON log stream (e.g. transformers 5
        # noting that it uses the PIL image processor because torchvision is not installed).
        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        torch.set_num_threads(self.threads)  # process-wide; one model runs at a time
        if self.device == "cuda":
            require_cuda()
        path = str(self.model_path)
        model: Any = CLIPModel.from_pretrained(path, local_files_only=True)
        if int(model.config.projection_dim) != self.dim:
            raise ValueError(
                f"{path}: projection_dim {model.config.projection_dim}, config.json says {self.dim}"
            )
        model = model.to(self.device)
        if self.half:
            model = model.half()
        self._model = model.eval()
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        # One small pass of each kind, so the first request does not pay for the runtime's warm-up.
        self._predict_batch([self._blank_image(), "warm up"])

    def _blank_image(self) -> Image:
        side = max(self.image_size, 1)
        pixels = np.full((side, side, 3), 127, dtype=np.uint8)
        return Image(rgb=pixels, bgr=pixels, width=side, height=side)

    def memory_probe(self, size: int) -> Sequence[ImageOrText] | None:
        # Images: every image is resized to image_size, so one probe image is the worst case, and a
        # ViT image costs more than a text of context_length tokens (B/32: 50 tokens of width 768
        # against 77 of width 512). Batches of texts alone are therefore over-provisioned.
        return [self._blank_image() for _ in range(size)]

    def _predict_batch(self, batch: Sequence[ImageOrText]) -> list[ItemResult[FloatArray]]:
        if self._model is None:
            raise RuntimeError("image-text model is not loaded")
        images = [(i, item) for i, item in enumerate(batch) if isinstance(item, Image)]
        texts = [(i, item) for i, item in enumerate(batch) if isinstance(item, str)]
        vectors: list[FloatArray | None] = [None] * len(batch)
        if images:
            for (index, _), vector in zip(images, self.embed_images([im for _, im in images]), strict=True):
                vectors[index] = vector
        if texts:
            for (index, _), vector in zip(texts, self.embed_texts([t for _, t in texts]), strict=True):
                vectors[index] = vector
        missing: ItemResult[FloatArray] = ItemResult(error="no vector", code=ErrorCode.INVALID_OUTPUT)
        return [ItemResult(value=v) if v is not None else missing for v in vectors]

    def embed_images(self, images: Sequence[Image]) -> FloatArray:
        """Unit vectors of ``images`` (their RGB pixels, through the model's image processor)."""
        import torch

        inputs = self._image_processor(images=[image.rgb for image in images], return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, dtype=self._model.dtype)
        with torch.inference_mode():
            features = self._model.get_image_features(pixel_values=pixels)
        return self._unit(features)

    def embed_texts(self, texts: Sequence[str]) -> FloatArray:
        """Unit vectors of ``texts`` (truncated to the model's context length), in length-sorted sub-batches
        of ``compute_batch`` when there are more."""
        batch = list(texts)
        lengths = self.token_lengths(batch) if len(batch) > self.compute_batch else [0] * len(batch)
        return np.stack(run_length_sorted(batch, lengths, self.compute_batch, self._embed_text_pass))

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokens the text tower reads of each text (cut at the context length)."""
        ids = self._tokenizer(list(texts), truncation=True, max_length=self.context_length)["input_ids"]
        return [len(row) for row in ids]

    def _embed_text_pass(self, texts: list[str]) -> list[FloatArray]:
        """One forward pass of the text tower over ``texts``, padded to the longest of them."""
        import torch

        tokens = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.context_length, return_tensors="pt"
        )
        with torch.inference_mode():
            features = self._model.get_text_features(
                input_ids=tokens["input_ids"].to(self.device),
                attention_mask=tokens["attention_mask"].to(self.device),
            )
        return list(self._unit(features))

    @staticmethod
    def _unit(features: torch.Tensor | Any) -> FloatArray:
        import torch

        # transformers 4 returns the projected features; 5 an output whose pooler_output they are.
        tensor = features if isinstance(features, torch.Tensor) else features.pooler_output
        return unit_rows(tensor.float().cpu().numpy())
