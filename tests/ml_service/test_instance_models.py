"""The real image models, in-process: a batch split across instances answers like one instance."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from ml_service.config import LOCAL_IMAGE_TASKS, ImageTask, MLSettings
from ml_service.models.base import Image, ItemResult
from ml_service.models.registry import ModelRegistry
from tests.ml_service.media import astronaut, captioned_scene, chelsea, rendered_text

BANNER = "BREAKING NEWS: FLOOD IN VALENCIA"
BAD = 2  # index of the image every split must keep to itself


def _image(rgb: np.ndarray[Any, Any]) -> Image:
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    return Image(rgb=np.ascontiguousarray(rgb), bgr=bgr, width=rgb.shape[1], height=rgb.shape[0])


def _batch() -> list[Image]:
    four_channels = np.zeros((40, 40, 4), dtype=np.uint8)  # the tags and objects models reject it
    images = [
        _image(np.asarray(rendered_text(BANNER))),
        _image(astronaut()),
        Image(rgb=four_channels, bgr=four_channels, width=40, height=40),
        _image(chelsea()),
        _image(captioned_scene(0)),
        _image(captioned_scene(1)),
        _image(cv2.resize(astronaut(), (200, 200), interpolation=cv2.INTER_AREA)),
    ]
    assert isinstance(images[BAD].rgb, np.ndarray) and images[BAD].rgb.shape[2] == 4
    return images


@pytest.fixture(scope="module")
def registries() -> Iterator[dict[str, ModelRegistry]]:
    # Two threads whatever the machine, so the batch really is split.
    made = {
        "split": ModelRegistry.from_settings(
            MLSettings(text_enabled=False, asr_enabled=False, voices_enabled=False, cpu_threads=2)
        ),
        "single": ModelRegistry.from_settings(
            MLSettings(
                text_enabled=False, asr_enabled=False, voices_enabled=False, cpu_threads=2, image_instances=1
            )
        ),
    }
    for registry in made.values():
        registry.load_all()
    yield made
    for registry in made.values():
        registry.close()


def _summary(task: ImageTask, result: ItemResult[Any]) -> object:
    """What must not depend on how the batch was split (scores may differ in the last digits)."""
    if not result.ok:
        return ("error", (result.error or "").split(":")[0])
    value: Any = result.value
    match task:
        case ImageTask.OCR:
            return value["text"]
        case ImageTask.FACES:
            return len(value)
        case ImageTask.TAGS | ImageTask.OBJECTS:
            return [entry["label"] for entry in value]


@pytest.mark.parametrize("task", LOCAL_IMAGE_TASKS)
def test_split_batch_matches_one_instance(registries: dict[str, ModelRegistry], task: ImageTask) -> None:
    split, single = registries["split"].image[task], registries["single"].image[task]
    assert (split.instances, split.threads, single.instances, single.threads) == (2, 1, 1, 2)
    images = _batch()
    together = split.predict(images)
    alone = single.predict(images)
    assert len(together) == len(images)
    assert [_summary(task, r) for r in together] == [_summary(task, r) for r in alone]
    # The same answers as each image on its own, so nothing was shifted between items.
    assert [_summary(task, r) for r in together] == [_summary(task, split.predict([im])[0]) for im in images]


def test_split_results_are_the_expected_ones(registries: dict[str, ModelRegistry]) -> None:
    groups = registries["split"].image
    images = _batch()
    out: dict[ImageTask, list[ItemResult[Any]]] = {
        task: groups[task].predict(images) for task in LOCAL_IMAGE_TASKS
    }
    ocr: list[Any] = [r.value for r in out[ImageTask.OCR]]
    assert ocr[0]["text"].replace(" ", "") == BANNER.replace(" ", "") and ocr[4]["text"] == "RIVER 0"
    faces: list[Any] = [r.value for r in out[ImageTask.FACES]]
    objects: list[Any] = [r.value for r in out[ImageTask.OBJECTS]]
    assert len(faces[1]) == 1 and "cat" in [o["label"] for o in objects[3]]
    # The bad image fails alone, in the middle of the batch, for the models that reject it.
    for task in (ImageTask.TAGS, ImageTask.OBJECTS):
        assert [r.ok for r in out[task]] == [i != BAD for i in range(len(images))], task
    assert all(r.ok for task in (ImageTask.OCR, ImageTask.FACES) for r in out[task])
