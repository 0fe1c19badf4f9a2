"""Scene descriptions from a VLM (ml_service/models/vlm.py) against the stand-in server.

Three layers: the answer parser alone; the model in-process against a stand-in of its own (headers, JSON
mode fallback, connection errors, retry bounds, versions); and a real ML service process whose only image
task is "caption" (session fixture ``vlm_ml_service``), where good answers, fenced ones, bad ones, HTTP
errors, timeouts and busy answers share requests and each item gets its own outcome.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from ml_service.config import ImageTask, MLSettings
from ml_service.models.base import Image
from ml_service.models.registry import build_caption_model
from ml_service.models.vlm import (
    MAX_RETRIES,
    CaptionModel,
    SceneError,
    chat_completions_url,
    packaged_prompt_file,
    parse_scene,
    retry_after_seconds,
)
from tests.support.ml_server import MLService, free_port
from tests.support.vlm_standin import (
    PALETTE,
    STANDIN_CONCURRENCY,
    STANDIN_MODEL,
    VLMStandIn,
    ml_env,
    running_vlm_standin,
    scene_for,
    solid_image,
)

GOOD = {
    "description": "A dog on a beach.",
    "objects": ["dog", "ball"],
    "on_screen_text": "",
    "setting": "beach",
}
GOOD_JSON = json.dumps(GOOD)


# --- the parser ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        GOOD_JSON,
        f"  {GOOD_JSON}\n",
        f"```json\n{GOOD_JSON}\n```",
        f"```\n{GOOD_JSON}\n```",
        f"Here is the JSON you asked for:\n\n{GOOD_JSON}\n\nI hope this helps!",
        f"Sure {{not json}} then {GOOD_JSON} and {{'another': 1}}",
    ],
)
def test_parser_extracts_the_object(text: str) -> None:
    assert parse_scene(text).as_dict() == GOOD


def test_parser_takes_the_first_object_and_normalises() -> None:
    first = (
        '{"description": "  A sign saying {OPEN}.  ", "objects": [" sign ", "", "door"], '
        '"on_screen_text": "OPEN", "setting": " shop front ", "mood": "calm"}'
    )
    second = '{"description": "other", "objects": [], "on_screen_text": "", "setting": "x"}'
    scene = parse_scene(f"{first}\n{second}").as_dict()
    # Braces inside strings are not objects; whitespace is trimmed, blank objects and extra keys dropped.
    assert scene == {
        "description": "A sign saying {OPEN}.",
        "objects": ["sign", "door"],
        "on_screen_text": "OPEN",
        "setting": "shop front",
    }


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("I cannot describe this image.", "no JSON object"),
        ('{"description": "A broken answer", "objects": ["x",], setting: }', "not valid JSON"),
        (f"[{GOOD_JSON}]", "not an object"),
        ('"A dog on a beach."', "not an object"),
        ('{"description": "A dog.", "objects": ["dog"], "on_screen_text": ""}', "setting: Field required"),
        ('{"objects": [], "on_screen_text": "", "setting": "x"}', "description: Field required"),
        ('{"description": "  ", "objects": [], "on_screen_text": "", "setting": "x"}', "description"),
        (
            '{"description": "A dog.", "objects": "dog, ball", "on_screen_text": "", "setting": "x"}',
            "objects",
        ),
        (
            '{"description": "A dog.", "objects": ["dog", 3], "on_screen_text": "", "setting": "x"}',
            "objects.1",
        ),
        ('{"description": 42, "objects": [], "on_screen_text": "", "setting": "x"}', "description"),
        (
            '{"description": "A dog.", "objects": [], "on_screen_text": null, "setting": "x"}',
            "on_screen_text",
        ),
    ],
)
def test_parser_rejects_anything_else(text: str, reason: str) -> None:
    with pytest.raises(SceneError, match=reason):
        parse_scene(text)


def test_urls_and_retry_after() -> None:
    for base in ("http://vllm:8000", "http://vllm:8000/", "http://vllm:8000/v1", "http://vllm:8000/v1/"):
        assert chat_completions_url(base) == "http://vllm:8000/v1/chat/completions"
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    from datetime import UTC, datetime

    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Wed, 01 May 2024 12:00:07 GMT", now=now) == 7.0
    assert retry_after_seconds("Wed, 01 May 2024 11:00:00 GMT", now=now) == 0.0


# --- the model in-process ------------------------------------------------------------------------


def _image(colour: str, size: tuple[int, int] = (320, 200)) -> Image:
    rgb = np.empty((size[1], size[0], 3), dtype=np.uint8)
    rgb[:] = PALETTE[colour]
    return Image(rgb=rgb, bgr=np.ascontiguousarray(rgb[:, :, ::-1]), width=size[0], height=size[1])


def _model(url: str, **options: Any) -> CaptionModel:
    settings: dict[str, Any] = {"model": STANDIN_MODEL, "timeout_s": 2.0, "concurrency": 2, **options}
    model = CaptionModel(url=url, **settings)
    model.load()
    return model


def test_bearer_key_and_image_size() -> None:
    with running_vlm_standin(model=STANDIN_MODEL, api_key="s3cret", max_side=128) as vlm:
        good = _model(vlm.url, api_key="s3cret", image_max_side=128)
        wrong = _model(vlm.url, api_key="guess", image_max_side=128)
        try:
            [ok] = good.predict([_image("red", (1000, 500))])
            [refused] = wrong.predict([_image("red")])
        finally:
            good.close()
            wrong.close()
        assert ok.value == scene_for("red")
        assert vlm.requests[0].image_size == (128, 64) and vlm.requests[0].image_format == "JPEG"
        assert refused.error is not None and "HTTP 400" in refused.error and "Authorization" in refused.error


def test_json_mode_is_dropped_when_the_server_has_none() -> None:
    with running_vlm_standin(model=STANDIN_MODEL, require_json_mode=False) as vlm:
        vlm.set_mode("red", "no_json_mode")
        model = _model(vlm.url, concurrency=1)
        try:
            results = model.predict([_image("red"), _image("blue")])
        finally:
            model.close()
        assert [r.value for r in results] == [scene_for("red"), scene_for("blue")]
        # The first request asked for JSON mode and was refused; every later one goes without.
        assert [r.status for r in vlm.requests] == [400, 200, 200]
        assert ["response_format" in r.body for r in vlm.requests] == [True, False, False]
        assert vlm.problems == []


def test_connection_errors_and_endless_429_are_item_errors() -> None:
    closed = CaptionModel(url=f"http://127.0.0.1:{free_port()}", model=STANDIN_MODEL, timeout_s=2.0)
    closed.load()  # the probe fails quietly: a VLM server may start later
    try:
        [result] = closed.predict([_image("red")])
    finally:
        closed.close()
    assert result.error is not None and "ConnectError" in result.error
    with running_vlm_standin(model=STANDIN_MODEL) as vlm:
        vlm.set_mode("red", "always_429")
        model = _model(vlm.url)
        try:
            busy, fine = model.predict([_image("red"), _image("green")])
        finally:
            model.close()
        assert busy.error is not None and f"HTTP 429 after {MAX_RETRIES} retries" in busy.error
        assert vlm.count("red") == 1 + MAX_RETRIES
        assert fine.value == scene_for("green")


def test_version_follows_prompt_model_and_settings(tmp_path: Path, vlm_standin: VLMStandIn) -> None:
    prompt = tmp_path / "scene.txt"  # the file's name is part of the digest too (weights_digest)
    prompt.write_text(packaged_prompt_file().read_text())

    def version(**options: Any) -> str:
        settings = {"url": vlm_standin.url, "model": STANDIN_MODEL, "prompt_file": prompt, **options}
        model = CaptionModel(**settings)
        model.load()
        model.close()
        return model.version

    packaged = version(prompt_file=None)
    assert version() == packaged  # same content, same version
    assert version(url="http://elsewhere:8000/v1") == packaged  # where it is served does not matter
    prompt.write_text(packaged_prompt_file().read_text() + "\nAnswer in French.")
    changed = version()
    assert len({packaged, changed, version(model="other-vlm"), version(image_max_side=512)}) == 4
    assert changed.endswith("-p1") and len(changed.split("-")[0]) == 12


def test_settings_enable_caption_only_with_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ML_IMAGE_TASKS", "ML_VLM_URL", "ML_CPU_THREADS", "ML_IMAGE_INSTANCES"):
        monkeypatch.delenv(name, raising=False)
    assert ImageTask.CAPTION not in MLSettings().image_tasks
    monkeypatch.setenv("ML_VLM_URL", "")  # docker-compose.yml's ${ML_VLM_URL:-}
    assert MLSettings().vlm_url is None and ImageTask.CAPTION not in MLSettings().image_tasks
    monkeypatch.setenv("ML_VLM_URL", "http://vllm:8000/v1/")
    settings = MLSettings()
    assert settings.vlm_url == "http://vllm:8000/v1" and settings.image_tasks[-1] is ImageTask.CAPTION
    monkeypatch.setenv("ML_IMAGE_TASKS", "ocr")
    assert MLSettings().image_tasks == (ImageTask.OCR,)
    monkeypatch.setenv("ML_VLM_URL", "vllm:8000")
    with pytest.raises(ValueError, match="http"):
        MLSettings()


# --- through the ML service ----------------------------------------------------------------------


@pytest.fixture
def vlm(vlm_standin: VLMStandIn) -> Iterator[VLMStandIn]:
    vlm_standin.reset()
    yield vlm_standin
    assert vlm_standin.problems == [], "the ML service sent a request the stand-in refused"


@pytest.fixture(scope="module")
def service(vlm_ml_service: MLService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=vlm_ml_service.url, timeout=60.0) as client:
        yield client


def _item(colour: str, size: tuple[int, int] = (96, 64), fmt: str = "PNG") -> dict[str, str]:
    return {"id": colour, "data": base64.b64encode(solid_image(colour, size, fmt)).decode()}


def _analyze(service: httpx.Client, colours: list[str], path: str = "/v1/analyze/images") -> dict[str, Any]:
    response = service.post(path, json={"images": [_item(c) for c in colours]})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert [r["id"] for r in body["results"]] == colours
    return body


def test_capabilities_list_the_caption_task(
    service: httpx.Client, vlm_standin: VLMStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    caps = service.get("/capabilities").json()
    assert caps["image_tasks"] == ["caption"]
    captions = caps["models"]["captions"]
    assert (captions["task"], captions["name"], captions["vector_size"]) == (
        "scene-description",
        STANDIN_MODEL,
        None,
    )
    assert (
        captions["preferred_batch"] == STANDIN_CONCURRENCY
        and captions["max_batch"] == 2 * STANDIN_CONCURRENCY
    )
    assert caps["endpoints"]["/v1/analyze/images"]["max_batch"] == 2 * STANDIN_CONCURRENCY
    # The same settings in-process give the same version (the packaged prompt, this model name, ...).
    for name, value in ml_env(vlm_standin.url).items():
        monkeypatch.setenv(name, value)
    model = build_caption_model(MLSettings())
    model.load()
    model.close()
    assert model.version == captions["version"]


def test_good_answers_in_request_order(service: httpx.Client, vlm: VLMStandIn) -> None:
    colours = ["red", "green", "blue", "yellow", "gray"]
    big = {"id": "cyan", "data": base64.b64encode(solid_image("cyan", (900, 600), "JPEG")).decode()}
    response = service.post("/v1/analyze/images", json={"images": [*(_item(c) for c in colours), big]})
    assert response.status_code == 200, response.text
    body = response.json()
    captions = service.get("/capabilities").json()["models"]["captions"]
    assert body["models"] == {"caption": captions["version"]}
    for result, colour in zip(body["results"], [*colours, "cyan"], strict=True):
        assert result["ok"] and result["error"] is None, result
        assert result["scene"] == scene_for(colour)
        assert result["caption"] == scene_for(colour)["description"]
        assert result["ocr"] is None and result["tags"] is None  # not requested here
    assert (body["results"][-1]["width"], body["results"][-1]["height"]) == (900, 600)
    # Sent shrunk to ML_VLM_IMAGE_MAX_SIDE (the stand-in refuses larger ones), one request per image.
    assert sorted(r.colour or "" for r in vlm.requests) == sorted([*colours, "cyan"])
    assert max(r.image_size or (0, 0) for r in vlm.requests if r.colour == "cyan") == (256, 171)


def test_fenced_and_wrapped_answers_are_accepted(service: httpx.Client, vlm: VLMStandIn) -> None:
    vlm.set_mode("red", "fenced")
    vlm.set_mode("blue", "prose")
    body = _analyze(service, ["red", "blue"])
    assert [r["scene"] for r in body["results"]] == [scene_for("red"), scene_for("blue")]


def test_bad_answers_are_item_errors(service: httpx.Client, vlm: VLMStandIn) -> None:
    modes = {
        "green": ("invalid_json", "not valid JSON"),
        "blue": ("missing_keys", "setting: Field required"),
        "yellow": ("http_500", "HTTP 500"),
        "magenta": ("slow", "did not answer within ML_VLM_TIMEOUT_S=2 s"),
        "cyan": ("wrong_types", "objects: Input should be a valid list"),
        "gray": ("truncated", "cut at ML_VLM_MAX_TOKENS"),
    }
    # The caption task's failure, structured (docs/ml-api.md, "Item errors"): an answer that is no scene
    # description is invalid_output; no usable answer at all (an HTTP error, a timeout) model_unavailable.
    codes = {"yellow": "model_unavailable", "magenta": "model_unavailable"}
    for colour, (mode, _) in modes.items():
        vlm.set_mode(colour, mode)
    colours = ["red", *modes, "white"]
    started = time.perf_counter()
    body = _analyze(service, colours)
    elapsed = time.perf_counter() - started
    results = {r["id"]: r for r in body["results"]}
    for colour in ("red", "white"):
        assert results[colour]["ok"] and results[colour]["scene"] == scene_for(colour)
    for colour, (_, reason) in modes.items():
        result = results[colour]
        assert not result["ok"] and result["caption"] is None and result["scene"] is None
        assert result["error"].startswith("caption: ") and reason in result["error"], result["error"]
        assert (result["width"], result["height"]) == (96, 64)  # decoded; only the caption failed
        code = codes.get(colour, "invalid_output")
        assert result["code"] == code and set(result["task_errors"]) == {"caption"}, result
        assert result["task_errors"]["caption"]["code"] == code
        assert reason in result["task_errors"]["caption"]["message"]
    # Neither a 500 nor a timeout is retried; the slow answer cost one timeout, not the request's time.
    assert vlm.count("yellow") == 1 and vlm.count("magenta") == 1
    assert elapsed < 15
    # The service is fine afterwards.
    assert _analyze(service, ["green"])["results"][0]["ok"] is False
    vlm.set_mode("green", "good")
    assert _analyze(service, ["green"])["results"][0]["scene"] == scene_for("green")


def test_busy_answers_are_retried_after_retry_after(service: httpx.Client, vlm: VLMStandIn) -> None:
    vlm.set_mode("orange", "busy_429")
    vlm.set_mode("black", "busy_503")
    started = time.perf_counter()
    body = _analyze(service, ["orange", "black", "red"])
    elapsed = time.perf_counter() - started
    assert [r["scene"] for r in body["results"]] == [scene_for(c) for c in ("orange", "black", "red")]
    assert vlm.count("orange") == 2 and vlm.count("black") == 2 and vlm.count("red") == 1
    statuses = [r.status for r in vlm.requests if r.colour == "orange"]
    assert statuses == [429, 200]
    assert elapsed >= vlm.retry_after_s  # waited as told


def test_alias_text_is_the_caption(service: httpx.Client, vlm: VLMStandIn) -> None:
    images = [
        _item("red"),
        {"id": "broken", "data": base64.b64encode(b"not an image").decode()},
        _item("blue"),
    ]
    response = service.post("/api/v1/batch_embed_and_caption", json={"images": images})
    assert response.status_code == 200, response.text
    red, broken, blue = response.json()["results"]
    assert red["text"] == scene_for("red")["description"] and len(red["text_vector"]) == 384
    assert blue["text"] == scene_for("blue")["description"]
    assert not broken["ok"] and "cannot decode" in broken["error"] and broken["scene"] is None
    assert vlm.count("red") == 1 and vlm.count("blue") == 1  # the broken item never reached the VLM


def test_unknown_task_is_still_422(service: httpx.Client, vlm: VLMStandIn) -> None:
    response = service.post("/v1/analyze/images", json={"images": [_item("red")], "tasks": ["ocr"]})
    assert response.status_code == 422 and "caption" in response.text
