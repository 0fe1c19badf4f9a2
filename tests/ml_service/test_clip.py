"""The image–text (CLIP) backend, with a tiny random CLIP saved by the test (tests/ml_service/tiny_clip.py).

Random weights prove the plumbing, not the meaning: loading from ML_CLIP_MODEL_PATH, batching,
vector sizes, unit length, the version convention, image vectors in /v1/analyze/images, and text
queries embedded into the same space ("space": "image_text") for text→image search.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from ml_service.models.base import weights_digest
from ml_service.models.clip import ClipModel
from orchestrator.clients.ml import Capabilities
from tests.ml_service.media import astronaut, b64, captioned_scene, chelsea, cosine, rendered_text
from tests.ml_service.tiny_clip import CONTEXT_LENGTH, IMAGE_SIZE, VECTOR_SIZE, save_tiny_clip
from tests.support.ml_server import ml_client


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="module")
def clip_ml(clip_dir: Path) -> Iterator[httpx.Client]:
    """A service with the tiny CLIP and one cheap image model (tags); no text or audio models."""
    with ml_client({"ML_CLIP_MODEL_PATH": str(clip_dir), "ML_IMAGE_TASKS": "tags"}) as client:
        yield client


def images() -> list[dict[str, str]]:
    pictures = [astronaut(), chelsea(), np.asarray(rendered_text("FLOOD IN VALENCIA"))]
    pictures += [captioned_scene(seed) for seed in range(3)]
    return [{"id": f"img{i}", "data": b64(p)} for i, p in enumerate(pictures)]


def embed(client: httpx.Client, texts: list[str], space: str = "image_text") -> dict[str, object]:
    response = client.post("/v1/embed/text", json={"texts": texts, "space": space})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_capabilities_list_the_image_text_model(clip_ml: httpx.Client, clip_dir: Path) -> None:
    caps = clip_ml.get("/capabilities").json()
    spec = caps["models"]["image_text"]
    assert (spec["task"], spec["name"], spec["vector_size"]) == ("image-text-embedding", "clip", VECTOR_SIZE)
    assert (spec["device"], spec["loaded"], spec["weights"]) == ("cpu", True, "tiny-clip")
    assert (spec["image_size"], spec["context_length"], spec["half_precision"]) == (
        IMAGE_SIZE,
        CONTEXT_LENGTH,
        False,
    )
    # The version follows the weights-digest convention: every file of the directory + options.
    assert re.fullmatch(r"[0-9a-f]{12}-p1", spec["version"])
    files = [p for p in sorted(clip_dir.rglob("*")) if p.is_file() and p.suffix != ".md"]
    assert spec["version"] == f"{weights_digest(files, extra='normalize=1')}-p1"
    assert caps["device"] == "cpu" and "text" not in caps["models"]
    assert caps["image_tasks"] == ["tags", "image_text"]  # a client naming tasks can ask for vectors
    # Image requests with the default tasks (tags + image vectors) fit both models.
    limits = caps["endpoints"]["/v1/analyze/images"]
    assert limits["max_batch"] == min(spec["max_batch"], caps["models"]["tags"]["max_batch"])
    # The orchestrator creates its "image" named vector from this.
    assert Capabilities.parse(caps).image_dim == VECTOR_SIZE


def test_other_weights_give_another_version(clip_dir: Path, tmp_path: Path) -> None:
    other = save_tiny_clip(tmp_path / "tiny-clip", seed=1)
    same = ClipModel(clip_dir).identify()  # versions are known without loading
    assert ClipModel(other).identify() != same
    assert ClipModel(clip_dir).identify() == same


def test_several_images_get_unit_vectors_in_one_batch(clip_ml: httpx.Client) -> None:
    items = images()
    body = clip_ml.post("/v1/analyze/images", json={"images": items}).json()
    assert [r["id"] for r in body["results"]] == [i["id"] for i in items]
    assert body["models"].keys() == {"tags", "image_text"}
    vectors = np.asarray([r["image_vector"] for r in body["results"]])
    assert vectors.shape == (len(items), VECTOR_SIZE)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert all(r["ok"] and r["tags"] is not None for r in body["results"])
    assert len({tuple(np.round(v, 4)) for v in vectors}) == len(items)
    # The 6 images went through the model as one batch (micro-batch histogram, le="8" bucket).
    metrics = clip_ml.get("/metrics").text
    assert 'archivist_ml_model_batch_items_bucket{le="4.0",model="image_text"} 0.0' in metrics
    assert re.search(r'archivist_ml_model_batch_items_count\{model="image_text"\} [1-9]', metrics)
    # An image alone gets the vector it got in the batch (no padding or batch effects).
    alone = clip_ml.post("/v1/analyze/images", json={"images": items[1:2], "tasks": ["image_text"]}).json()
    assert np.allclose(alone["results"][0]["image_vector"], vectors[1], atol=1e-5)


def test_tasks_select_image_vectors(clip_ml: httpx.Client) -> None:
    item = images()[:1]
    only = clip_ml.post("/v1/analyze/images", json={"images": item, "tasks": ["image_text"]}).json()
    assert only["results"][0]["tags"] is None and len(only["results"][0]["image_vector"]) == VECTOR_SIZE
    assert only["models"].keys() == {"image_text"}
    tags = clip_ml.post("/v1/analyze/images", json={"images": item, "tasks": ["tags"]}).json()
    assert tags["results"][0]["image_vector"] is None and tags["results"][0]["tags"] is not None
    sizes = clip_ml.post("/v1/analyze/images", json={"images": item, "tasks": []}).json()
    assert sizes["results"][0]["image_vector"] is None and sizes["results"][0]["width"] == 512
    bad = clip_ml.post("/v1/analyze/images", json={"images": item, "tasks": ["faces"]})
    assert bad.status_code == 422 and "image_text" in bad.text  # lists what is enabled


def test_text_queries_share_the_image_space(clip_ml: httpx.Client) -> None:
    body = embed(clip_ml, ["an astronaut", "a cat", ""])
    assert (body["model"], body["dim"]) == ("clip", VECTOR_SIZE)
    version = clip_ml.get("/capabilities").json()["models"]["image_text"]["version"]
    assert body["version"] == version
    queries = np.asarray(body["vectors"])
    assert queries.shape == (3, VECTOR_SIZE)
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-4)
    # Same text, same vector, alone or in a batch of longer ones (padding must not leak in).
    assert np.allclose(embed(clip_ml, ["a cat"])["vectors"][0], queries[1], atol=1e-5)  # type: ignore[index]
    # Query flow: a stored image vector is found again by the same image, before a different one,
    # and text vectors are comparable with image vectors (same size, one space).
    stored = clip_ml.post("/v1/analyze/images", json={"images": images()[:2], "tasks": ["image_text"]}).json()
    astro, cat = (r["image_vector"] for r in stored["results"])
    again = clip_ml.post("/v1/analyze/images", json={"images": images()[:1], "tasks": ["image_text"]}).json()
    query = again["results"][0]["image_vector"]
    assert cosine(query, astro) > 0.9999 and cosine(query, astro) > cosine(query, cat)
    scores = [cosine(queries[0].tolist(), v) for v in (astro, cat)]
    assert all(-1.0 <= s <= 1.0 for s in scores)
    # Without a text model the default space has nothing to embed with.
    assert clip_ml.post("/v1/embed/text", json={"texts": ["x"]}).status_code == 404
    assert clip_ml.post("/v1/embed/text", json={"texts": ["x"], "space": "audio"}).status_code == 422
    too_many = {"texts": ["x"] * 1000, "space": "image_text"}
    assert clip_ml.post("/v1/embed/text", json=too_many).status_code == 413


def test_without_a_clip_model_image_text_is_refused(ml: httpx.Client) -> None:
    item = {"id": "a", "data": b64(captioned_scene(0))}
    assert "image_text" not in ml.get("/capabilities").json()["models"]
    refused = ml.post("/v1/analyze/images", json={"images": [item], "tasks": ["image_text"]})
    assert refused.status_code == 422 and "not enabled here: ['image_text']" in refused.text
    assert ml.post("/v1/embed/text", json={"texts": ["x"], "space": "image_text"}).status_code == 404
    default = ml.post("/v1/analyze/images", json={"images": [item], "tasks": ["tags"]}).json()
    assert default["results"][0]["image_vector"] is None


async def test_orchestrator_client_embeds_queries_in_the_image_space(clip_ml: httpx.Client) -> None:
    from orchestrator.clients.ml import MLClient

    client = MLClient([str(clip_ml.base_url).rstrip("/")], timeout_s=30, retry_deadline_s=5)
    try:
        (vector,) = await client.embed_text(["an astronaut"], space="image_text")
    finally:
        await client.close()
    assert vector is not None and len(vector) == VECTOR_SIZE
    assert np.allclose(vector, embed(clip_ml, ["an astronaut"])["vectors"][0], atol=1e-6)  # type: ignore[index]
