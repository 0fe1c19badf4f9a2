"""Spoken language with the default multilingual whisper base: detected per item (Spanish and English
espeak-ng voices), forced by ML_ASR_LANGUAGE, and detected with one encoder pass over the item's window."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml_service.models.asr import AsrInput, AsrModel
from ml_service.models.packaged_whisper import multilingual_base_model
from scripts.language_corpus import ENGLISH, ENGLISH_VOICES, SPANISH, SPANISH_VOICES
from scripts.speech import silence, synthesize


def _item(text: str, voice: Any, language: str | None = None) -> AsrInput:
    samples = np.concatenate([silence(0.5), synthesize(text, voice, speed_wpm=140), silence(0.5)])
    return AsrInput(samples.astype(np.float32) / 32768.0, language)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return multilingual_base_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def detecting(base: Path) -> Iterator[AsrModel]:
    model = AsrModel(base, device="cpu", threads=2)
    model.identify()
    model.load()
    yield model
    model.unload()


def test_spanish_and_english_are_told_apart(detecting: AsrModel) -> None:
    items = [_item(SPANISH[4].text, SPANISH_VOICES[0]), _item(ENGLISH[0].text, ENGLISH_VOICES[0])]
    spanish, english = (r.value for r in detecting.predict(items))
    assert spanish is not None and english is not None
    assert (spanish["language"], english["language"]) == ("es", "en")
    said = " ".join(s["text"] for s in spanish["segments"]).lower()
    assert "selección" in said and "campeonato europeo" in said, said
    assert "library" in " ".join(s["text"] for s in english["segments"]).lower()
    # Word times as with English-only models: inside the item, in order.
    words = [w for s in spanish["segments"] for w in s["words"]]
    assert words and all(0.0 <= w["start"] <= w["end"] <= len(items[0].samples) / 16000 for w in words)


def test_detection_shares_the_encoder_pass_with_decoding(detecting: AsrModel) -> None:
    assert detecting._model is not None
    parent: Any = type(detecting._model).__mro__[1]
    calls: list[int] = []
    original = parent.encode

    def counted(self: Any, features: Any) -> Any:
        calls.append(1)
        return original(self, features)

    parent.encode = counted
    try:
        result = detecting.predict([_item(SPANISH[5].text, SPANISH_VOICES[1])])[0].value
    finally:
        parent.encode = original
    assert result is not None and result["language"] == "es"
    assert len(calls) == 1  # detection and decoding of one window: one encoder pass (was two)


def test_an_item_language_is_decoded_in_and_reported(detecting: AsrModel) -> None:
    # The orchestrator sends a chunk again in its file's language when the chunk's own detection was unsure.
    result = detecting.predict([_item(SPANISH[3].text, SPANISH_VOICES[0], "es")])[0].value
    assert result is not None and (result["language"], result["language_probability"]) == ("es", 1.0)
    assert "exposición" in " ".join(s["text"] for s in result["segments"]).lower()


def test_a_forced_language_is_kept(base: Path) -> None:
    model = AsrModel(base, device="cpu", threads=1, language="es")
    model.identify()
    model.load()
    try:
        result = model.predict([_item(SPANISH[0].text, SPANISH_VOICES[0])])[0].value
    finally:
        model.unload()
    assert result is not None
    assert (result["language"], result["language_probability"]) == ("es", 1.0)
    assert "language=es" in model.processing_options()
