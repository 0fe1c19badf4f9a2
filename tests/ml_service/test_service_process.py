"""The service as a process: startup without models, failed loading, and the test helper itself."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest

from tests.support.ml_server import MLServiceFailed, running_ml_service

NO_AUDIO = {"ML_ASR_ENABLED": "false", "ML_VOICES_ENABLED": "false"}
NO_MODELS = {"ML_IMAGE_TASKS": "", "ML_TEXT_ENABLED": "false", **NO_AUDIO}


def test_service_without_models_is_ready_and_says_what_is_missing() -> None:
    with running_ml_service(env=NO_MODELS, ready_timeout_s=60) as ml:
        caps = httpx.get(f"{ml.url}/capabilities").json()
        assert caps["models"] == {} and caps["endpoints"] == {}
        assert httpx.post(f"{ml.url}/v1/embed/text", json={"texts": ["x"]}).status_code == 404
        response = httpx.post(f"{ml.url}/v1/analyze/images", json={"images": [{"id": "a", "data": ""}]})
        assert response.status_code == 404
        response = httpx.post(
            f"{ml.url}/v1/analyze/audio", json={"items": [{"id": "a", "pcm": "", "sample_rate": 1}]}
        )
        assert response.status_code == 404
        ml.process.send_signal(signal.SIGTERM)
        ml.process.wait(timeout=15)
        # uvicorn re-raises the signal after a graceful shutdown, so the exit status is -SIGTERM;
        # the log shows the lifespan ran to its end.
        assert ml.process.returncode == -signal.SIGTERM
        events = [
            json.loads(line)["event"] for line in ml.log_path.read_text().splitlines() if line.startswith("{")
        ]
        assert "service_stopped" in events


def test_health_answers_while_models_load() -> None:
    seen: list[tuple[int, int]] = []
    # Text and the speaker model, no ASR: the loaded replica also shows that a task it did not
    # load is refused (422), while the other audio task is served.
    env = {"ML_IMAGE_TASKS": "", "ML_ASR_ENABLED": "false"}
    with running_ml_service(env=env, wait_ready=False) as ml:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"{ml.url}/health", timeout=2)
            except httpx.TransportError:
                time.sleep(0.02)  # not listening yet
                continue
            ready = httpx.get(f"{ml.url}/ready", timeout=2)
            seen.append((health.status_code, ready.status_code))
            if ready.status_code == 200:
                break
            assert ready.json()["status"] == "loading"
            refused = httpx.post(f"{ml.url}/v1/embed/text", json={"texts": ["early"]}, timeout=2)
            if refused.status_code == 200:  # loading ended between the two requests
                assert httpx.get(f"{ml.url}/ready", timeout=2).status_code == 200
                continue
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            time.sleep(0.05)
        caps = httpx.get(f"{ml.url}/capabilities").json()
        assert caps["audio_tasks"] == ["speakers"] and "asr" not in caps["models"]
        item = {"id": "a", "pcm": "AAAAAAAA", "sample_rate": 16000}
        refused = httpx.post(f"{ml.url}/v1/analyze/audio", json={"items": [item], "tasks": ["asr"]})
        assert refused.status_code == 422 and "not enabled here" in refused.text
        answered = httpx.post(f"{ml.url}/v1/analyze/audio", json={"items": [item]}, timeout=30).json()
        assert answered["models"].keys() == {"speakers"} and answered["results"][0]["turns"] == []
    # Loading the text model takes seconds (torch alone): /health was up well before /ready.
    assert seen[0] == (200, 503), seen[:3]
    assert seen[-1] == (200, 200)


def test_failed_model_load_is_reported_not_hung() -> None:
    env = {**NO_MODELS, "ML_TEXT_ENABLED": "true", "ML_TEXT_MODEL_PATH": "/nonexistent/model"}
    with pytest.raises(MLServiceFailed, match="no model files under /nonexistent/model"):
        with running_ml_service(env=env, ready_timeout_s=60):
            pass


def test_killed_service_is_still_cleaned_up() -> None:
    with running_ml_service(env=NO_MODELS, ready_timeout_s=60) as ml:
        ml.process.kill()
        ml.process.wait(timeout=10)
    assert ml.process.returncode == -signal.SIGKILL
    assert not ml.log_path.exists()
