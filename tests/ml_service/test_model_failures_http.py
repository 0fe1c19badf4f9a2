"""What a broken model does to the service, over HTTP: an unload that raises, a batcher that dies, and
vectors that are NaN, zero or of the wrong size (tests/ml_service/fake_service.py serves a model that does
each on demand). Nothing may hang, and nothing invalid may leave the service."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import orjson

from tests.ml_service.fake_service import DIM, FakeText, serving, unit_vector
from tests.support.polling import until

# Bounds, not pauses: each is far above what the step takes, and only reached when something is broken.
ANSWER_TIMEOUT_S = 10.0
TTL_S = 0.2


async def test_an_unload_that_raises_leaves_the_model_serving(tmp_path: Path) -> None:
    """ML_MODEL_TTL_S unloads the idle model; its unload raising must not stop the batcher (it did: later
    requests waited for ever while /ready said ready)."""
    text = FakeText(tmp_path / "text")
    text.unload_error = RuntimeError("CUDA driver refused to free")
    async with serving(text, model_ttl_s=TTL_S) as (service, client):
        first = await client.post("/v1/embed/text", json={"texts": ["a cat"]})
        assert first.status_code == 200, first.text
        await until(lambda: text.unload_attempts >= 1, "an unload attempted", 10)
        answer = await asyncio.wait_for(
            client.post("/v1/embed/text", json={"texts": ["a dog", "a cat"]}), ANSWER_TIMEOUT_S
        )
        assert answer.status_code == 200, answer.text
        vectors = np.asarray(answer.json()["vectors"])
        assert np.allclose(vectors, np.stack([unit_vector("a dog"), unit_vector("a cat")]), atol=1e-6)
        ready = await client.get("/ready")
        assert ready.status_code == 200 and (await client.get("/health")).status_code == 200
        assert service.text_batcher is not None and service.text_batcher.failure is None


async def test_a_dead_batcher_answers_its_queued_and_later_requests_and_fails_ready(tmp_path: Path) -> None:
    text = FakeText(tmp_path / "text")
    text.preferred_batch = 64
    text.gate = threading.Event()
    async with serving(text) as (service, client):
        batcher = service.text_batcher
        assert batcher is not None
        running = asyncio.ensure_future(client.post("/v1/embed/text", json={"texts": ["running"]}))
        await until(
            lambda: text.batches == 1, "the first batch running", 10
        )  # the first batch holds the inference thread
        queued = [
            asyncio.ensure_future(client.post("/v1/embed/text", json={"texts": [f"queued {i}"]}))
            for i in range(2)
        ]
        await until(lambda: batcher.queued_items == 3, "three requests queued", 10)
        # The next batch's bookkeeping raises: a bug in the worker itself, which kills it.
        text.broken_batching = True
        text.gate.set()
        assert (await asyncio.wait_for(running, ANSWER_TIMEOUT_S)).status_code == 200
        for answer in await asyncio.wait_for(asyncio.gather(*queued), ANSWER_TIMEOUT_S):
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == "models_failed"
            assert "'text'" in answer.json()["detail"] and "bookkeeping bug" in answer.json()["detail"]
        assert batcher.failure is not None and "bookkeeping bug" in batcher.failure

        ready = await client.get("/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "failed"
        assert "model 'text'" in body["error"] and "bookkeeping bug" in body["error"], body
        health = await client.get("/health")
        assert health.status_code == 503 and "model 'text'" in health.json()["error"]
        # A later request is answered at once, and says the replica cannot serve (clients stop retrying it).
        later = await asyncio.wait_for(
            client.post("/v1/embed/text", json={"texts": ["later"]}), ANSWER_TIMEOUT_S
        )
        assert later.status_code == 503 and later.json()["code"] == "models_failed"


async def test_invalid_vectors_are_item_errors_never_nan_in_the_answer(tmp_path: Path) -> None:
    text = FakeText(tmp_path / "text")
    async with serving(text) as (_, client):
        texts = ["fine", "nan", "zero", "short", "also fine"]
        answer = await client.post("/v1/embed/text", json={"texts": texts})
        assert answer.status_code == 200, answer.text
        body = orjson.loads(answer.content)
        vectors = body["vectors"]
        assert vectors[1] is None and vectors[2] is None and vectors[3] is None
        for index, word in ((0, "fine"), (4, "also fine")):
            assert len(vectors[index]) == DIM and None not in vectors[index]
            assert np.allclose(vectors[index], unit_vector(word), atol=1e-6)
        assert set(body["errors"]) == {"1", "2", "3"} and set(body["error_codes"]) == {"1", "2", "3"}
        assert set(body["error_codes"].values()) == {"invalid_output"}
        assert "non-finite" in body["errors"]["1"]
        assert "zero norm" in body["errors"]["2"]
        assert f"10 components, expected {DIM}" in body["errors"]["3"]
        # JSON has no NaN: a NaN component would have been sent as null inside a vector.
        assert all(v is None or all(isinstance(x, float) for x in v) for v in vectors)
        # An answer of valid vectors only keeps its plain shape.
        clean = (await client.post("/v1/embed/text", json={"texts": ["fine"]})).json()
        assert "errors" not in clean and len(clean["vectors"][0]) == DIM
