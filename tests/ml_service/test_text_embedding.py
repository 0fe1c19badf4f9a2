"""POST /v1/embed/text with the real MiniLM model."""

from __future__ import annotations

import httpx
import numpy as np

from tests.ml_service.media import cosine


def embed(ml: httpx.Client, texts: list[str]) -> list[list[float]]:
    response = ml.post("/v1/embed/text", json={"texts": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["dim"]) == ("all-MiniLM-L6-v2", 384)
    assert body["version"] == ml.get("/capabilities").json()["models"]["text"]["version"]
    vectors: list[list[float]] = body["vectors"]
    return vectors


def test_meaning_decides_similarity(ml: httpx.Client) -> None:
    cat, kitten, market = embed(ml, ["a cat on a sofa", "a kitten resting on a couch", "stock market crash"])
    assert cosine(cat, kitten) > 0.6
    assert cosine(cat, market) < 0.2
    assert cosine(cat, kitten) > cosine(cat, market) + 0.4


def test_vectors_are_unit_length_and_in_request_order(ml: httpx.Client) -> None:
    texts = [
        f"sentence number {i} about {topic}"
        for i, topic in enumerate(["rockets", "coffee", "cats", "elections", "football", "rain", "", "piano"])
    ]
    batch = np.asarray(embed(ml, texts))
    assert batch.shape == (8, 384)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-4)
    singles = np.asarray([embed(ml, [t])[0] for t in reversed(texts)])[::-1]
    # Same text, same vector, whether it came alone or in a batch (padding must not leak in).
    assert np.allclose(batch, singles, atol=2e-4)
    assert len({tuple(np.round(v, 3)) for v in batch}) == len(texts)
