"""GET /metrics on the real ML service: request latency, model batch sizes, queue depths."""

from __future__ import annotations

import re

import httpx


def _value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} ([0-9.e+]+)$", text, flags=re.MULTILINE)
    assert match, f"{series} not in metrics"
    return float(match.group(1))


def test_metrics_count_requests_and_batches(ml_service_url: str) -> None:
    with httpx.Client(base_url=ml_service_url, timeout=60) as client:
        before = client.get("/metrics").text
        calls = 'archivist_ml_http_request_seconds_count{path="/v1/embed/text",status="200"}'
        batches = 'archivist_ml_model_batch_items_count{model="text"}'
        start_calls = _value(before, calls) if calls in before else 0.0
        start_batches = _value(before, batches) if batches in before else 0.0
        for _ in range(3):
            assert client.post("/v1/embed/text", json={"texts": ["a", "b", "c"]}).status_code == 200
        assert client.get("/nope").status_code == 404
        after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert _value(text, calls) == start_calls + 3
    assert _value(text, batches) >= start_batches + 1  # concurrent requests may share a batch
    assert 'archivist_ml_http_request_seconds_count{path="other",status="404"}' in text
    assert _value(text, 'archivist_ml_queue_items{model="text"}') == 0.0


def test_metrics_count_audio_batches(ml_service_url: str) -> None:
    quiet = {"id": "q", "pcm": "AAAAAAAA", "sample_rate": 16000}  # 4 samples of silence
    with httpx.Client(base_url=ml_service_url, timeout=60) as client:
        before = client.get("/metrics").text
        series = {
            "calls": 'archivist_ml_http_request_seconds_count{path="/v1/analyze/audio",status="200"}',
            "asr": 'archivist_ml_model_batch_items_count{model="asr"}',
            "speakers": 'archivist_ml_model_batch_items_count{model="speakers"}',
        }
        start = {k: _value(before, s) if s in before else 0.0 for k, s in series.items()}
        assert client.post("/v1/analyze/audio", json={"items": [quiet]}).status_code == 200
        text = client.get("/metrics").text
    for key, name in series.items():
        assert _value(text, name) >= start[key] + 1, key
    assert _value(text, 'archivist_ml_queue_items{model="asr"}') == 0.0
