"""The insightface faces backend, on a tiny model pack the test writes (tests/ml_service/tiny_insightface.py).

insightface's own code routes the ONNX files, letterboxes, decodes SCRFD's anchors and NMS, and aligns
crops to the ArcFace template; the tiny pack's detector answers a known box for a white block, so the
boxes, landmarks and scale handling are checked against numbers, and the recogniser's random
projection proves batching, vector size and unit length. Then the same pack through the HTTP service.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from ml_service.models.base import Image, weights_digest
from ml_service.models.insightface import MIN_EMBED_FACE_PX, InsightFaceModel
from tests.ml_service.media import b64
from tests.ml_service.tiny_insightface import BOX, CELL, VECTOR_SIZE, face_box, save_tiny_insightface
from tests.support.ml_server import ml_client


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_insightface(tmp_path_factory.mktemp("insightface") / "tiny_pack")


@pytest.fixture(scope="module")
def model(pack: Path) -> InsightFaceModel:
    loaded = InsightFaceModel(pack, device="cpu")
    loaded.load()
    return loaded


def picture(side: int, cells: list[tuple[int, int]], texture: int = 0) -> np.ndarray[Any, Any]:
    """A ``side`` px square, black (or a seeded texture), with a white block on each 640-px grid cell."""
    rng = np.random.default_rng(texture)
    pixels = np.zeros((side, side, 3), np.uint8)
    if texture:
        pixels[:] = rng.integers(0, 90, (side, side, 3), dtype=np.uint8)  # dark: never a "face"
    k = side / 640
    for cx, cy in cells:
        x, y, w = round(cx * CELL * k), round(cy * CELL * k), round(CELL * k)
        pixels[y : y + w, x : x + w] = 255
    return pixels


def as_image(rgb: np.ndarray[Any, Any], scale: int = 1) -> Image:
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    return Image(rgb=rgb, bgr=bgr, width=rgb.shape[1] * scale, height=rgb.shape[0] * scale)


def test_loads_the_pack_and_reports_it(model: InsightFaceModel, pack: Path) -> None:
    caps = model.capabilities()
    assert (caps["name"], caps["task"], caps["vector_size"], caps["weights"]) == (
        "insightface",
        "face",
        VECTOR_SIZE,
        "tiny_pack",
    )
    assert caps["device"] == "cpu" and caps["loaded"] is True and caps["det_size"] == 640
    files = sorted(pack.glob("*.onnx"))
    assert [f.name for f in files] == ["det_tiny.onnx", "rec_tiny.onnx"]
    assert caps["version"] == f"{weights_digest(files, extra=model.processing_options())}-p1"


def test_boxes_landmarks_and_vectors(model: InsightFaceModel) -> None:
    one = picture(640, [(9, 9)])
    batch = [
        as_image(one),
        as_image(picture(640, [(3, 4), (15, 12)], texture=1)),
        as_image(picture(640, [])),
        as_image(one.copy()),
        # 1280 px letterboxed into 640: boxes come back in the image's own pixels (x2).
        as_image(picture(1280, [(9, 9)])),
        # A working copy shrunk 3x from a 1920 px original: boxes in the original's pixels (Image.scale).
        as_image(picture(640, [(9, 9)]), scale=3),
    ]
    results = model.predict(batch)
    assert all(r.ok for r in results)
    faces = [r.value for r in results]
    assert faces[2] == []
    assert [len(f or []) for f in faces] == [1, 2, 0, 1, 1, 1]
    [face] = faces[0] or []
    assert face["box"] == pytest.approx(face_box(9, 9), abs=0.5)
    assert face["score"] > 0.99
    # Five points, inside the box, eyes above the mouth, right eye (image left) first.
    points = np.asarray(face["landmarks"])
    x, y, w, _ = face["box"]
    assert points.shape == (5, 2)
    assert (points[:, 0] > x).all() and (points[:, 0] < x + w).all() and (points[:, 1] > y).all()
    assert points[0, 0] < points[1, 0] and points[0, 1] < points[3, 1]
    two = sorted(faces[1] or [], key=lambda f: f["box"][0])
    assert [f["box"] for f in two] == [
        pytest.approx(face_box(3, 4), abs=0.5),
        pytest.approx(face_box(15, 12), abs=0.5),
    ]
    for scaled in (faces[4], faces[5]):
        [big] = scaled or []
        factor = 2 if scaled is faces[4] else 3
        assert big["box"] == pytest.approx([v * factor for v in face_box(9, 9)], abs=factor)
    vectors = [f["embedding"] for image in faces for f in image or []]
    assert all(v is not None and v.shape == (VECTOR_SIZE,) for v in vectors)
    assert all(abs(float(np.linalg.norm(v)) - 1) < 1e-5 for v in vectors if v is not None)
    same, other = (faces[3] or [])[0]["embedding"], two[0]["embedding"]
    assert same is not None and other is not None and face["embedding"] is not None
    assert float(face["embedding"] @ same) == pytest.approx(1.0, abs=1e-6)  # equal crops, equal vectors
    assert float(face["embedding"] @ other) < 0.99  # another crop, another vector


def test_small_face_is_found_without_a_vector(model: InsightFaceModel) -> None:
    # 160 px: the detector sees it 4x larger, so the block's box is 96 / 4 = 24 px in the image.
    assert BOX / 4 < MIN_EMBED_FACE_PX
    [result] = model.predict([as_image(picture(160, [(9, 9)]))])
    [face] = result.value or []
    assert face["box"][2] == pytest.approx(BOX / 4, abs=0.5) and face["embedding"] is None


def test_a_pack_without_a_recogniser_is_refused(pack: Path, tmp_path: Path) -> None:
    (tmp_path / "det_only").mkdir()
    (tmp_path / "det_only" / "det_tiny.onnx").write_bytes((pack / "det_tiny.onnx").read_bytes())
    with pytest.raises(FileNotFoundError, match="no recognition model"):
        InsightFaceModel(tmp_path / "det_only", device="cpu").load()
    with pytest.raises(FileNotFoundError, match=r"no insightface model pack \(\*\.onnx\)"):
        InsightFaceModel(tmp_path, device="cpu").identify()


@pytest.fixture(scope="module")
def faces_ml(pack: Path) -> Iterator[httpx.Client]:
    with ml_client({"ML_INSIGHTFACE_MODEL_PATH": str(pack), "ML_IMAGE_TASKS": "faces"}) as client:
        yield client


def test_served_over_http(faces_ml: httpx.Client) -> None:
    spec = faces_ml.get("/capabilities").json()["models"]["faces"]
    assert (spec["name"], spec["vector_size"], spec["weights"]) == ("insightface", VECTOR_SIZE, "tiny_pack")
    images = [
        {"id": "one", "data": b64(picture(640, [(9, 9)]))},
        {"id": "none", "data": b64(picture(640, [], texture=2))},
        {"id": "two", "data": b64(picture(640, [(3, 4), (15, 12)]), "JPEG", quality=95)},
    ]
    response = faces_ml.post("/v1/analyze/images", json={"images": images, "tasks": ["faces"]})
    assert response.status_code == 200, response.text
    by_id = {r["id"]: r for r in response.json()["results"]}
    assert [len(by_id[i]["faces"]) for i in ("one", "none", "two")] == [1, 0, 2]
    [face] = by_id["one"]["faces"]
    assert face["box"] == pytest.approx(face_box(9, 9), abs=0.5)
    assert len(face["embedding"]) == VECTOR_SIZE
    assert abs(float(np.linalg.norm(face["embedding"])) - 1) < 1e-4
