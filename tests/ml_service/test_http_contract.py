"""The HTTP contract of docs/ml-api.md against the real service: shapes, limits and errors."""

from __future__ import annotations

import re

import httpx

from ml_service.config import LOCAL_IMAGE_TASKS, MLSettings

IMAGE_TASKS = {"ocr", "faces", "tags", "objects"}
AUDIO_TASKS = {"asr", "speakers"}


def test_health_and_ready(ml: httpx.Client) -> None:
    assert ml.get("/health").json() == {"status": "ok"}
    ready = ml.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert set(ready.json()["models"]) == {"text", *IMAGE_TASKS, *AUDIO_TASKS}


def test_capabilities_describe_the_loaded_models(ml: httpx.Client) -> None:
    caps = ml.get("/capabilities").json()
    assert (caps["service"], caps["device"]) == ("archivist-ml", "cpu")
    models = caps["models"]
    assert set(models) == {"text", *IMAGE_TASKS, *AUDIO_TASKS}
    assert models["text"]["vector_size"] == 384 and models["text"]["name"] == "all-MiniLM-L6-v2"
    assert models["faces"]["vector_size"] == 128
    assert models["ocr"]["vector_size"] is None
    assert {m["task"] for m in models.values()} == {
        "text-embedding",
        "face",
        "ocr",
        "image-tags",
        "object-detection",
        "asr",
        "speaker-embedding",
    }
    for spec in models.values():
        assert re.fullmatch(r"[0-9a-f]{12}-p\d+", spec["version"])
        assert 1 <= spec["preferred_batch"] <= spec["max_batch"]
        assert spec["max_concurrency"] == 1
        assert spec["queue_capacity"] == MLSettings().max_queue_items and spec["queued_items"] >= 0
    assert len({m["version"] for m in models.values()}) == len(models)
    text = caps["endpoints"]["/v1/embed/text"]
    assert text["max_batch"] == models["text"]["max_batch"]
    # The request limit and the texts one forward pass takes (length-sorted sub-batches, packed tokens).
    assert 1 <= text["compute_batch"] == models["text"]["compute_batch"] <= text["max_batch"]
    assert models["text"]["packed_tokens"] is True
    assert "compute_batch" not in models["ocr"]  # a model that runs a batch as one unit
    images = caps["endpoints"]["/v1/analyze/images"]
    assert images["max_batch"] == min(models[t]["max_batch"] for t in IMAGE_TASKS)
    assert images["max_concurrency"] == 1  # one model batch at a time, spread over instances
    audio = caps["endpoints"]["/v1/analyze/audio"]
    assert audio["max_batch"] == min(models[t]["max_batch"] for t in AUDIO_TASKS)
    assert caps["image_tasks"] == ["ocr", "faces", "tags", "objects"]
    assert caps["audio_tasks"] == ["asr", "speakers"]


def test_capabilities_report_instances_from_the_settings(ml: httpx.Client) -> None:
    models = ml.get("/capabilities").json()["models"]
    settings = MLSettings()  # the test service runs with this environment's settings
    for task in LOCAL_IMAGE_TASKS:  # the instance groups ("caption" calls a server)
        spec = models[task.value]
        assert spec["instances"] == settings.instances_for(task)
        assert spec["instance_threads"] == settings.threads_per_instance(task)
        assert spec["instances"] * spec["instance_threads"] <= settings.cpu_threads
        # A lone image runs on every thread when there are several instances (all four models).
        lone = settings.cpu_threads if spec["instances"] > 1 else spec["instance_threads"]
        assert spec["single_image_threads"] == lone
    assert "instances" not in models["text"] and "instances" not in models["asr"]


def test_request_id_is_echoed(ml: httpx.Client) -> None:
    response = ml.get("/capabilities", headers={"X-Request-ID": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    generated = ml.get("/health").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)


def test_oversize_batches_are_413(ml: httpx.Client) -> None:
    caps = ml.get("/capabilities").json()["endpoints"]
    texts = ["x"] * (caps["/v1/embed/text"]["max_batch"] + 1)
    assert ml.post("/v1/embed/text", json={"texts": texts}).status_code == 413
    images = [{"id": str(i), "data": "AAAA"} for i in range(caps["/v1/analyze/images"]["max_batch"] + 1)]
    for path in ("/v1/analyze/images", "/api/v1/batch_embed_and_caption"):
        response = ml.post(path, json={"images": images})
        assert response.status_code == 413, path
        assert "max_batch" in response.json()["detail"]


def test_smaller_task_set_allows_its_own_limit(ml: httpx.Client) -> None:
    models = ml.get("/capabilities").json()["models"]
    # tags alone take a larger batch than all four models together.
    assert models["tags"]["max_batch"] > models["ocr"]["max_batch"]
    images = [{"id": str(i), "data": "AAAA"} for i in range(models["ocr"]["max_batch"] + 1)]
    response = ml.post("/v1/analyze/images", json={"images": images, "tasks": ["tags"]})
    assert response.status_code == 200
    assert all(not r["ok"] for r in response.json()["results"])


def test_malformed_bodies_are_422(ml: httpx.Client) -> None:
    cases = [
        ("/v1/embed/text", b"not json"),
        ("/v1/embed/text", b'{"texts": []}'),
        ("/v1/embed/text", b'{"texts": "a string"}'),
        ("/v1/embed/text", b'{"text": ["wrong key"]}'),
        ("/v1/analyze/images", b'{"images": [{"id": "a"}]}'),
        ("/v1/analyze/images", b'{"images": [{"id": "a", "data": "AAAA"}], "tasks": ["caption"]}'),
        ("/api/v1/batch_embed_and_caption", b'{"images": []}'),
        ("/v1/analyze/audio", b'{"items": []}'),
        ("/v1/analyze/audio", b'{"items": [{"id": "a", "pcm": "AAAA", "sample_rate": "fast"}]}'),
        (
            "/v1/analyze/audio",
            b'{"items": [{"id": "a", "pcm": "AAAA", "sample_rate": 16000}], "tasks": ["ocr"]}',
        ),
    ]
    for path, body in cases:
        response = ml.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, (path, body, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, list) and detail and "msg" in detail[0]


def test_only_sizes_when_no_task_is_requested(ml: httpx.Client) -> None:
    from tests.ml_service.media import b64, chelsea

    body = ml.post(
        "/v1/analyze/images", json={"images": [{"id": "c", "data": b64(chelsea(), "JPEG")}], "tasks": []}
    ).json()
    assert body["models"] == {}
    [result] = body["results"]
    assert (result["ok"], result["width"], result["height"]) == (True, 451, 300)
    assert result["ocr"] is None and result["faces"] is None and result["tags"] is None


def test_openapi_documents_the_request_bodies(ml: httpx.Client) -> None:
    doc = ml.get("/openapi.json").json()
    body = doc["paths"]["/v1/analyze/images"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/AnalyzeImagesRequest"}
    schemas = doc["components"]["schemas"]
    assert schemas["AnalyzeImagesRequest"]["properties"]["images"]["items"] == {
        "$ref": "#/components/schemas/ImageItem"
    }
    assert schemas["EmbedTextRequest"]["required"] == ["texts"]
    audio = doc["paths"]["/v1/analyze/audio"]["post"]["requestBody"]["content"]["application/json"]
    assert audio["schema"] == {"$ref": "#/components/schemas/AnalyzeAudioRequest"}
    assert set(schemas["AudioItem"]["required"]) == {"id", "pcm", "sample_rate"}
