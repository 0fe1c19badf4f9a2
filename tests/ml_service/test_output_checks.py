"""Every vector a model returns is checked before it leaves the service (ml_service/outputs.py): a bad
whole-item vector is that item's ``invalid_output`` error; a bad face or speaker-turn vector is withdrawn
with its reason. In-process, with models that answer what a broken runtime answers (OpenCV 4.13/4.14's
batched SFace pass returned NaN face vectors)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import orjson
import pytest

from ml_service.analyze import assemble
from ml_service.audio import DecodedAudio
from ml_service.audio import assemble as assemble_audio
from ml_service.batching import Batcher
from ml_service.config import ImageTask
from ml_service.errors import ErrorCode
from ml_service.models.base import FloatArray, Image, InferenceModel, ItemResult
from ml_service.models.faces import Face
from ml_service.models.voices import Turn
from ml_service.outputs import output_check, vector_problem
from ml_service.schemas import json_response


def unit(size: int, seed: int = 0) -> FloatArray:
    vector = np.random.default_rng(seed).standard_normal(size).astype(np.float32)
    out: FloatArray = (vector / np.linalg.norm(vector)).astype(np.float32)
    return out


@pytest.mark.parametrize(
    ("vector", "size", "problem"),
    [
        (unit(8), 8, None),
        (unit(8), None, None),
        (np.array([np.nan] * 8, dtype=np.float32), 8, "8 non-finite components"),
        (np.array([1.0, np.inf, 0.0], dtype=np.float32), 3, "1 non-finite components"),
        (np.zeros(8, dtype=np.float32), 8, "zero norm"),
        (np.full(8, 1e-9, dtype=np.float32), 8, "zero norm"),
        (unit(7), 8, "7 components, expected 8"),
        (np.zeros((2, 4), dtype=np.float32), 8, "shape (2, 4)"),
        (np.zeros(0, dtype=np.float32), None, "shape (0,)"),
        (None, 8, "shape ()"),
        (["a", "b"], 2, "not numeric"),
    ],
)
def test_vector_problem(vector: Any, size: int | None, problem: str | None) -> None:
    found = vector_problem(vector, size)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


class Broken(InferenceModel[int, Any]):
    """Answers what it is told to (``answers[item]``); key and vector size set per test."""

    key: ClassVar[str] = "text"
    task: ClassVar[str] = "test"
    name: ClassVar[str] = "broken"
    default_max_batch: ClassVar[int] = 16
    default_preferred_batch: ClassVar[int] = 8
    processing_version: ClassVar[str] = "1"

    def __init__(self, weights: Path, answers: dict[int, Any]) -> None:
        super().__init__()
        self.weights = weights
        self.answers = answers

    def weight_files(self) -> list[Path]:
        return [self.weights]

    def _load(self) -> None:
        pass

    def _predict_batch(self, batch: Sequence[int]) -> list[ItemResult[Any]]:
        return [ItemResult(value=self.answers[item]) for item in batch]


class BrokenFaces(Broken):
    key: ClassVar[str] = "faces"
    vector_size: ClassVar[int | None] = 128


class BrokenTurns(Broken):
    key: ClassVar[str] = "speakers"
    vector_size: ClassVar[int | None] = 256


class BrokenText(Broken):
    key: ClassVar[str] = "text"
    vector_size: ClassVar[int | None] = 384


def through_batcher(model: Broken, items: list[int]) -> list[ItemResult[Any]]:
    """``items`` through a real batcher with the service's output check for ``model``."""
    model.load()

    async def run() -> list[ItemResult[Any]]:
        with ThreadPoolExecutor(max_workers=1) as pool:
            batcher: Batcher[int, Any] = Batcher(model, pool, 100, check=output_check(model))
            task = asyncio.create_task(batcher.run())
            try:
                return await asyncio.wait_for(batcher.submit(items), 10)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    return asyncio.run(run())


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    return path


def face(embedding: FloatArray | None) -> Face:
    return Face(box=[1.0, 2.0, 80.0, 80.0], score=0.9, landmarks=[[0.0, 0.0]] * 5, embedding=embedding)


def test_a_nan_text_vector_is_that_items_invalid_output(weights: Path) -> None:
    answers = {0: unit(384), 1: np.full(384, np.nan, dtype=np.float32), 2: unit(128)}
    results = through_batcher(BrokenText(weights, answers), [0, 1, 2])
    assert results[0].ok and results[0].value is answers[0]
    for bad in results[1:]:
        assert bad.value is None and bad.error_code is ErrorCode.INVALID_OUTPUT
    assert results[1].error is not None and "non-finite" in results[1].error
    assert results[2].error is not None and "128 components, expected 384" in results[2].error


def test_a_nan_face_vector_is_withdrawn_with_its_reason(weights: Path) -> None:
    good = unit(128, seed=1)
    answers = {
        0: [face(np.full(128, np.nan, dtype=np.float32)), face(good), face(None)],
        1: [face(np.zeros(128, dtype=np.float32))],
    }
    results = through_batcher(BrokenFaces(weights, answers), [0, 1])
    assert all(r.ok for r in results)  # the faces are still found: only their vectors are withdrawn
    nan_face, good_face, small_face = results[0].value or []
    assert nan_face["embedding"] is None and "non-finite" in nan_face["embedding_error"]
    assert good_face["embedding"] is good and good_face["embedding_error"] is None
    assert small_face["embedding"] is None and small_face["embedding_error"] is None  # too small: no error
    [zero_face] = results[1].value or []
    assert "zero norm" in zero_face["embedding_error"]

    # On the wire: no NaN anywhere, the reason beside the withdrawn vector, the item ok.
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    image = Image(rgb=pixels, bgr=pixels, width=4, height=4)
    entry = assemble("img", image, {ImageTask.FACES: results[0]})
    body = orjson.loads(json_response(entry).body)
    assert body["ok"] and body["code"] is None and body["task_errors"] == {}
    assert [f["embedding"] is None for f in body["faces"]] == [True, False, True]
    assert body["faces"][0]["embedding_error"].startswith("invalid output: ")
    assert all(isinstance(x, float) for x in body["faces"][1]["embedding"])


def test_a_bad_speaker_vector_is_withdrawn_with_its_reason(weights: Path) -> None:
    turns: list[Turn] = [
        Turn(start=0.0, end=2.0, speaker="S0", embedding=unit(256)),
        Turn(start=2.0, end=4.0, speaker="S1", embedding=unit(32)),
        Turn(start=4.0, end=6.0, speaker="S0", embedding=np.array([np.inf] * 256, dtype=np.float32)),
    ]
    [result] = through_batcher(BrokenTurns(weights, {0: turns}), [0])
    entry = assemble_audio("a", DecodedAudio(np.zeros(16000 * 6, dtype=np.float32)), None, result)
    body = orjson.loads(json_response(entry).body)
    assert body["ok"] and body["task_errors"] == {}
    first, short, infinite = body["turns"]
    assert len(first["embedding"]) == 256 and first["embedding_error"] is None
    assert short["embedding"] is None and "32 components, expected 256" in short["embedding_error"]
    assert infinite["embedding"] is None and "non-finite" in infinite["embedding_error"]


def test_models_without_vectors_are_not_checked(weights: Path) -> None:
    class Tags(Broken):
        key: ClassVar[str] = "tags"

    assert output_check(Tags(weights, {})) is None
    assert output_check(BrokenFaces(weights, {})) is not None
