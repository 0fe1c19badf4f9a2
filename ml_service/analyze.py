"""Image analysis requests: decode, run the requested models, assemble one result per image."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from ml_service.batching import Batcher
from ml_service.config import IMAGE_TEXT, ImageTask
from ml_service.errors import ErrorCode, fail_item, fail_task, new_item
from ml_service.images import ImageDecodeError, decode_image
from ml_service.models.base import FloatArray, Image, ItemResult
from ml_service.models.clip import ImageOrText
from ml_service.models.faces import Face
from ml_service.models.objects import DetectedObject
from ml_service.models.ocr import OcrResult
from ml_service.models.tags import Tag
from ml_service.schemas import ImageItem

# Vectors go out rounded to 6 decimals: for unit vectors that moves a cosine by ~1e-6, and it cut
# a 32x384 response by 23% (150 -> 115 KB) and the client's orjson parse by 28% (0.69 -> 0.49 ms).
VECTOR_DECIMALS = 6


def round_vector(vector: FloatArray) -> FloatArray:
    return np.round(vector, VECTOR_DECIMALS)


def decode_all(
    items: Sequence[ImageItem], *, max_pixels: int, max_side: int
) -> list[Image | ImageDecodeError]:
    """Decode every item; a failure becomes that item's error. Runs in a worker thread."""
    decoded: list[Image | ImageDecodeError] = []
    for item in items:
        try:
            decoded.append(decode_image(item.data, max_pixels=max_pixels, max_side=max_side))
        except ImageDecodeError as exc:
            decoded.append(exc)
    return decoded


def coco_tags(objects: list[DetectedObject]) -> list[Tag]:
    """One tag per COCO class found, with its best score: "cat" for search text and filters."""
    best: dict[str, float] = {}
    for obj in objects:
        best[obj["label"]] = max(best.get(obj["label"], 0.0), obj["score"])
    return [
        Tag(label=label, score=score, source="coco")
        for label, score in sorted(best.items(), key=lambda kv: -kv[1])
    ]


def describe(tags: list[Tag] | None, ocr: OcrResult | None) -> str:
    """Searchable text for an image without a caption model: its labels, then the text it shows."""
    names: dict[str, None] = {}
    for tag in tags or []:
        names[tag["label"]] = None
        for alias in tag.get("aliases", []):
            names[alias] = None
    parts = [", ".join(names)] if names else []
    if ocr and ocr["text"]:
        parts.append(" ".join(ocr["text"].split()))
    return ". ".join(parts)


_FIELDS = ("width", "height", "ocr", "faces", "tags", "objects", "caption", "scene", "image_vector")


def failed_result(item_id: str, error: ImageDecodeError) -> dict[str, Any]:
    """The response entry of an image that could not be decoded."""
    result = new_item(item_id, _FIELDS)
    fail_item(result, error.code, str(error))
    return result


def _record_failures(result: dict[str, Any], outputs: dict[str, ItemResult[Any]]) -> None:
    for task, out in outputs.items():
        if out.error is not None:
            fail_task(result, task, out.error_code or ErrorCode.MODEL_ERROR, out.error)


def assemble(item_id: str, image: Image, outputs: dict[ImageTask, ItemResult[Any]]) -> dict[str, Any]:
    """The response entry of one decoded image; a failed task is in ``task_errors`` (and ``error``)."""
    result = new_item(item_id, _FIELDS)
    result["width"], result["height"] = image.width, image.height
    _record_failures(result, {task.value: out for task, out in outputs.items()})
    ocr = outputs.get(ImageTask.OCR)
    if ocr is not None and ocr.ok:
        result["ocr"] = ocr.value
    faces = outputs.get(ImageTask.FACES)
    if faces is not None and faces.ok:
        face_list: list[Face] = faces.value or []
        result["faces"] = [
            {
                **face,
                "embedding": None if face["embedding"] is None else round_vector(face["embedding"]),
                # Set by the output check (ml_service/outputs.py) when it withdrew a bad vector.
                "embedding_error": face.get("embedding_error"),
            }
            for face in face_list
        ]
    tags: list[Tag] | None = None
    imagenet = outputs.get(ImageTask.TAGS)
    if imagenet is not None and imagenet.ok:
        tags = list(imagenet.value or [])
    objects = outputs.get(ImageTask.OBJECTS)
    if objects is not None and objects.ok:
        result["objects"] = objects.value
        tags = [*(tags or []), *coco_tags(objects.value or [])]
    result["tags"] = tags
    scene = outputs.get(ImageTask.CAPTION)
    if scene is not None and scene.ok and scene.value is not None:
        # The VLM's validated answer (ml_service/models/vlm.py); its description is the caption.
        result["caption"], result["scene"] = scene.value["description"], scene.value
    return result


def add_image_vector(result: dict[str, Any], vector: ItemResult[FloatArray]) -> None:
    """``image_vector`` from the image–text model, or its failure in the item's ``task_errors``."""
    if vector.ok and vector.value is not None:
        result["image_vector"] = round_vector(vector.value)
        return
    _record_failures(result, {IMAGE_TEXT: _failure(vector)})


def _failure(vector: ItemResult[FloatArray]) -> ItemResult[FloatArray]:
    """A vector's result that is not ok, or, should it be ok without a vector, an error saying so."""
    return vector if not vector.ok else ItemResult(error="no vector", code=ErrorCode.INVALID_OUTPUT)


class ImageAnalyzer:
    """Runs analysis requests over the image models' batchers (and the text model for the alias)."""

    def __init__(
        self,
        image_batchers: dict[ImageTask, Batcher[Image, Any]],
        text_batcher: Batcher[str, FloatArray] | None,
        decode_executor: Executor,
        *,
        max_pixels: int,
        max_side: int,
        image_text_batcher: Batcher[ImageOrText, FloatArray] | None = None,
    ) -> None:
        self._image = image_batchers
        self._text = text_batcher
        self._image_text = image_text_batcher
        self._decode_executor = decode_executor
        self._max_pixels = max_pixels
        self._max_side = max_side

    async def analyze(
        self,
        items: Sequence[ImageItem],
        tasks: Sequence[ImageTask],
        with_text: bool = False,
        image_vectors: bool = False,
    ) -> dict[str, Any]:
        """Results for ``items`` in order; raises ``Overloaded`` when a model's queue is full.

        ``image_vectors``: also each image's ``image_vector`` (the image–text model must exist).
        """
        batchers = [self._image[task] for task in tasks]
        vector_batcher = self._image_text if image_vectors else None
        # Fail fast, before decoding, if any model could not take the batch.
        for batcher in batchers:
            batcher.check_capacity(len(items))
        if vector_batcher is not None:
            vector_batcher.check_capacity(len(items))
        loop = asyncio.get_running_loop()
        decoded = await loop.run_in_executor(
            self._decode_executor,
            lambda: decode_all(items, max_pixels=self._max_pixels, max_side=self._max_side),
        )
        images = [d for d in decoded if isinstance(d, Image)]
        per_task: dict[ImageTask, list[ItemResult[Any]]] = {}
        vectors: list[ItemResult[FloatArray]] | None = None
        if images:
            for batcher in batchers:  # checked again: other requests ran while this one decoded
                batcher.check_capacity(len(images))
            if vector_batcher is not None:
                vector_batcher.check_capacity(len(images))
                vector_future = vector_batcher.enqueue(images)
            futures = [batcher.enqueue(images) for batcher in batchers]
            per_task = dict(zip(tasks, await asyncio.gather(*futures), strict=True))
            if vector_batcher is not None:
                vectors = await vector_future
        results: list[dict[str, Any]] = []
        position = 0
        for item, image in zip(items, decoded, strict=True):
            if isinstance(image, ImageDecodeError):
                results.append(failed_result(item.id, image))
                continue
            outputs = {task: per_task[task][position] for task in tasks}
            vector = vectors[position] if vectors is not None else None
            position += 1
            results.append(assemble(item.id, image, outputs))
            if vector is not None:
                add_image_vector(results[-1], vector)
        if with_text:
            await self._add_text(results)
        models = {task.value: self._image[task].model.version for task in tasks}
        if with_text and self._text is not None:
            models["text"] = self._text.model.version
        if vector_batcher is not None:
            models[IMAGE_TEXT] = vector_batcher.model.version
        return {"results": results, "models": models}

    async def _add_text(self, results: list[dict[str, Any]]) -> None:
        """Alias endpoint: ``text`` is the caption (else tags and OCR), and its vector from the text model
        (a failed one is the item's task error ``text``)."""
        wanted: list[tuple[dict[str, Any], str]] = []
        for result in results:
            text = None
            if result["width"] is not None:
                text = result["caption"] or describe(result["tags"], result["ocr"])
            result["text"], result["text_vector"] = text, None
            if text and self._text is not None:
                wanted.append((result, text))
        if not wanted or self._text is None:
            return
        limit = self._text.model.max_batch
        chunks = [wanted[i : i + limit] for i in range(0, len(wanted), limit)]
        answers = await asyncio.gather(*(self._text.submit([t for _, t in c]) for c in chunks))
        for chunk, answer in zip(chunks, answers, strict=True):
            for (result, _), vector in zip(chunk, answer, strict=True):
                if vector.ok and vector.value is not None:
                    result["text_vector"] = round_vector(vector.value)
                else:
                    _record_failures(result, {"text": _failure(vector)})
