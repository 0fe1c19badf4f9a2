"""A face backend with other vectors, end to end: an ML service on the tiny insightface pack (512-d ArcFace
vectors, tests/ml_service/tiny_insightface.py) feeds a real orchestrator, whose people clusters then hold
512-d faces; and a collection built with the default backend (SFace, 128-d) refuses a job from the
insightface service at its start, with both sizes named, instead of failing on its first face."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.ml_service.media import astronaut
from tests.ml_service.tiny_insightface import CELL, VECTOR_SIZE, save_tiny_insightface
from tests.support.app_factory import counting_store, make_settings
from tests.support.ml_server import NO_MODELS, MLService, running_ml_service
from tests.support.orchestrator_server import running_orchestrator


@pytest.fixture(scope="module")
def insightface_ml(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLService]:
    pack = save_tiny_insightface(tmp_path_factory.mktemp("insightface") / "tiny_pack")
    env = {
        **NO_MODELS,
        "ML_TEXT_ENABLED": "true",  # every chunk record has a text vector
        "ML_IMAGE_TASKS": "faces",
        "ML_INSIGHTFACE_MODEL_PATH": str(pack),
    }
    with running_ml_service(env=env) as service:
        yield service


def block_picture(path: Path, corner_noise: int) -> None:
    """A "face" for the tiny detector (a white block on cell (9, 9) of a 640 px grid); the noise in a far
    corner makes each file's content (and hash) its own without touching the face's crop."""
    pixels = np.zeros((640, 640, 3), np.uint8)
    pixels[9 * CELL : 10 * CELL, 9 * CELL : 10 * CELL] = 255
    pixels[:8, :8] = np.random.default_rng(corner_noise).integers(0, 60, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


async def test_insightface_faces_form_people_of_their_own_size(
    tmp_path: Path, insightface_ml: MLService
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    block_picture(media / "first.png", 1)
    block_picture(media / "second.png", 2)
    Image.fromarray(np.zeros((320, 240, 3), np.uint8)).save(media / "empty.png")
    settings = make_settings(tmp_path / "data", insightface_ml.url, [tmp_path])
    store = counting_store(settings)
    async with running_orchestrator(settings, store) as orch:
        resp = await orch.client.post("/jobs", json={"path": str(media), "collection": "arc"})
        assert resp.status_code == 202, resp.text
        status = await orch.wait_job(resp.json()["job_id"], timeout_s=120)
        assert status["state"] == "completed", status
        assert status["counters"]["upserted"] == 3, status  # type: ignore[index]
        assert await store.dense_vectors("arc_faces") == {"face": VECTOR_SIZE}
        people = (await orch.client.get("/people", params={"collection": "arc"})).json()["people"]
        # The same crop in two files: one person, seen twice.
        assert [(p["kind"], [f["count"] for f in p["faces"]], p["media_count"]) for p in people] == [
            ("face", [2], 2)
        ]


async def test_a_new_face_backend_builds_a_new_version_beside_the_old(
    tmp_path: Path, ml_service_url: str, insightface_ml: MLService
) -> None:
    """Face vectors of two models never share a collection's people: a new face backend (other vectors,
    here of another size) builds version 2 with its own people; version 1 keeps its 128-d faces."""
    media = tmp_path / "media"
    media.mkdir()
    Image.fromarray(astronaut()).save(media / "astronaut.jpg")
    data = tmp_path / "data"
    default = make_settings(data, ml_service_url, [tmp_path])
    async with running_orchestrator(default, counting_store(default)) as orch:
        resp = await orch.client.post("/jobs", json={"path": str(media), "collection": "mixed"})
        status = await orch.wait_job(resp.json()["job_id"], timeout_s=180)
        assert status["state"] == "completed", status
    block_picture(media / "block.png", 3)
    other = make_settings(data, insightface_ml.url, [tmp_path])
    store = counting_store(other)
    async with running_orchestrator(other, store) as orch:
        resp = await orch.client.post("/jobs", json={"path": str(media), "collection": "mixed"})
        status = await orch.wait_job(resp.json()["job_id"], timeout_s=120)
        assert status["state"] == "completed", status
        reanalysis = status["reanalysis"]
        assert (
            isinstance(reanalysis, dict)
            and reanalysis["kind"] == "rebuild"
            and "faces" in reanalysis["tasks"]
        )
        assert await store.dense_vectors("mixed__v2_faces") == {"face": VECTOR_SIZE}
        assert await store.dense_vectors("mixed_faces") == {"face": 128}
        assert await store.count("mixed_faces") == 1  # the astronaut, untouched in version 1
        shown = (await orch.client.get("/collections/mixed")).json()
        assert [(v["version"], v["state"]) for v in shown["versions"]] == [(1, "retired"), (2, "current")]
        assert shown["points"] == 2
