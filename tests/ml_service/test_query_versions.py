"""Earlier model versions served for queries (ML_TEXT_QUERY_MODEL_PATHS, ML_CLIP_QUERY_MODEL_PATHS).

While the orchestrator builds a collection with an upgraded model, search keeps embedding its queries with the
model the searched collection was built with: /v1/embed/text takes a "version", /capabilities lists the
versions per space ("query_versions"). The earlier models here are copies of the real ones with noisy token
embeddings (tests/support/model_variants.py): another version, other vectors of the same size.

One service for the module: the packaged MiniLM and its variant, the tiny CLIP and its variant, lazily loaded
(each model loads on its first request), no image tasks or audio models.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from ml_service.config import MLSettings, packaged_text_model
from ml_service.models.clip import ClipModel
from ml_service.models.registry import ModelRegistry
from ml_service.models.text import TextEmbedder
from tests.ml_service.media import cosine
from tests.ml_service.tiny_clip import VECTOR_SIZE, save_tiny_clip
from tests.support.ml_server import ml_client
from tests.support.model_variants import clip_model_variant, text_model_variant

TEXTS = ["a cat on a sofa", "a kitten resting on a couch", "stock market crash"]


@dataclass(frozen=True)
class Models:
    text_variant: Path
    clip: Path
    clip_variant: Path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("query-models")
    clip = save_tiny_clip(root / "tiny-clip")
    return Models(
        text_variant=text_model_variant(root / "minilm-variant"),
        clip=clip,
        clip_variant=clip_model_variant(clip, root / "tiny-clip-variant"),
    )


@dataclass(frozen=True)
class Versions:
    text: str
    text_variant: str
    clip: str
    clip_variant: str


@pytest.fixture(scope="module")
def versions(models: Models) -> Versions:
    """Each model's version as the model class computes it (from its files, without loading it)."""
    return Versions(
        text=TextEmbedder(packaged_text_model(), device="cpu").identify(),
        text_variant=TextEmbedder(models.text_variant, device="cpu").identify(),
        clip=ClipModel(models.clip, device="cpu").identify(),
        clip_variant=ClipModel(models.clip_variant, device="cpu").identify(),
    )


@pytest.fixture(scope="module")
def ml(models: Models) -> Iterator[httpx.Client]:
    env = {
        "ML_TEXT_ENABLED": "true",
        "ML_TEXT_QUERY_MODEL_PATHS": str(models.text_variant),
        "ML_CLIP_MODEL_PATH": str(models.clip),
        # A JSON list, and the current model listed again (served once, as the current one).
        "ML_CLIP_QUERY_MODEL_PATHS": f'["{models.clip_variant}", "{models.clip}"]',
        "ML_LAZY_LOAD": "true",
    }
    with ml_client(env, timeout_s=120) as client:
        yield client


def embed(ml: httpx.Client, texts: list[str], **fields: str) -> tuple[str, np.ndarray]:
    """The answer's version and vectors (checked: 200, unit vectors of the advertised size)."""
    response = ml.post("/v1/embed/text", json={"texts": texts, **fields})
    assert response.status_code == 200, response.text
    body = response.json()
    vectors = np.asarray(body["vectors"], dtype=np.float64)
    assert vectors.shape == (len(texts), body["dim"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    return str(body["version"]), vectors


def test_variants_are_other_versions_of_the_same_size(versions: Versions) -> None:
    assert versions.text_variant != versions.text
    assert versions.clip_variant != versions.clip


def test_capabilities_list_the_query_versions(ml: httpx.Client, versions: Versions) -> None:
    caps = ml.get("/capabilities").json()
    assert caps["query_versions"] == {
        "text": [versions.text, versions.text_variant],
        "image_text": [versions.clip, versions.clip_variant],
    }
    # The models' own entries stay the current models'.
    assert caps["models"]["text"]["version"] == versions.text
    assert caps["models"]["image_text"]["version"] == versions.clip
    assert set(caps["models"]) == {"text", "image_text"}
    # /ready names the current models only.
    assert sorted(ml.get("/ready").json()["models"]) == ["image_text", "text"]


def test_each_text_version_embeds_with_its_model(ml: httpx.Client, versions: Versions) -> None:
    default_version, default = embed(ml, TEXTS)
    current_version, current = embed(ml, TEXTS, version=versions.text)
    variant_version, variant = embed(ml, TEXTS, version=versions.text_variant)
    assert (default_version, current_version, variant_version) == (
        versions.text,
        versions.text,
        versions.text_variant,
    )
    assert default.shape == variant.shape == (3, 384)
    # No version and the current version are the same model ...
    assert np.allclose(default, current, atol=1e-5)
    # ... the earlier version another one: every sentence moves, yet keeps its meaning.
    same_sentence = [cosine(a, b) for a, b in zip(current, variant, strict=True)]
    assert max(same_sentence) < 0.999 and min(same_sentence) > 0.9, same_sentence
    cat, kitten, market = variant
    assert cosine(cat, kitten) > cosine(cat, market) + 0.4
    # Deterministic: the same version again gives the same vectors.
    assert np.allclose(embed(ml, TEXTS, version=versions.text_variant)[1], variant, atol=1e-5)


def test_each_image_text_version_embeds_with_its_model(ml: httpx.Client, versions: Versions) -> None:
    default_version, default = embed(ml, TEXTS, space="image_text")
    variant_version, variant = embed(ml, TEXTS, space="image_text", version=versions.clip_variant)
    assert (default_version, variant_version) == (versions.clip, versions.clip_variant)
    assert default.shape == variant.shape == (3, VECTOR_SIZE)
    assert max(cosine(a, b) for a, b in zip(default, variant, strict=True)) < 0.999
    # A version of the other space is not one of this space's.
    response = ml.post("/v1/embed/text", json={"texts": TEXTS, "version": versions.clip_variant})
    assert response.status_code == 404 and response.json()["code"] == "version_not_served"


def test_an_unknown_version_is_404_naming_the_served_ones(ml: httpx.Client, versions: Versions) -> None:
    response = ml.post("/v1/embed/text", json={"texts": TEXTS, "version": "000000000000-p1"})
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "version_not_served"
    for named in ("000000000000-p1", versions.text, versions.text_variant):
        assert named in body["detail"]
    # An empty version is no version at all: refused as malformed.
    assert ml.post("/v1/embed/text", json={"texts": TEXTS, "version": ""}).status_code == 422


def test_query_models_get_batchers_of_their_own(ml: httpx.Client, versions: Versions) -> None:
    embed(ml, ["warm"], version=versions.text_variant)
    metrics = ml.get("/metrics").text
    assert f'archivist_ml_queue_items{{model="text@{versions.text_variant}"}}' in metrics
    assert 'archivist_ml_queue_items{model="text"}' in metrics


# --- settings and registry, in-process -----------------------------------------------------------------


@pytest.mark.parametrize("raw", ["/models/a, /models/b,/models/a", '["/models/a", "/models/b"]'])
def test_query_paths_from_env(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("ML_TEXT_QUERY_MODEL_PATHS", raw)
    assert MLSettings().text_query_model_paths == (Path("/models/a"), Path("/models/b"))


def test_query_paths_default_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ML_TEXT_QUERY_MODEL_PATHS", raising=False)
    monkeypatch.setenv("ML_CLIP_QUERY_MODEL_PATHS", "")
    settings = MLSettings()
    assert (settings.text_query_model_paths, settings.clip_query_model_paths) == ((), ())


def test_query_paths_need_their_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_TEXT_ENABLED", "false")
    monkeypatch.setenv("ML_TEXT_QUERY_MODEL_PATHS", "/models/a")
    with pytest.raises(ValidationError, match="ML_TEXT_ENABLED"):
        MLSettings()
    monkeypatch.delenv("ML_TEXT_QUERY_MODEL_PATHS")
    monkeypatch.delenv("ML_CLIP_MODEL_PATH", raising=False)
    monkeypatch.setenv("ML_CLIP_QUERY_MODEL_PATHS", "/models/clip")
    with pytest.raises(ValidationError, match="ML_CLIP_MODEL_PATH"):
        MLSettings()


def test_a_repeated_version_is_served_once(models: Models, versions: Versions) -> None:
    settings = MLSettings(
        device="cpu",
        image_tasks=(),
        asr_enabled=False,
        voices_enabled=False,
        text_enabled=False,
        clip_model_path=models.clip,
        clip_query_model_paths=(models.clip, models.clip_variant, models.clip_variant),
    )
    registry = ModelRegistry.from_settings(settings)
    registry.load_all(lazy=True)  # identifies, loads nothing
    assert registry.query_versions() == {"image_text": [versions.clip, versions.clip_variant]}
    assert [m.model_path for m in registry.image_text_queries] == [models.clip_variant]
    assert not any(m.loaded for m in [*registry.all_models(), *registry.query_models()])
