"""The pyannote speaker-turn backend, on a tiny random pipeline the test writes (tiny_pyannote.py).

Random weights prove the plumbing, not the meaning: ``Pipeline.from_pretrained`` on a local directory,
offline; the exclusive diarization turned into time-ordered turns with local labels; each speaker's
vector from the pipeline's embedding model, unit length; the version convention; and the service
answering /v1/analyze/audio with it. The tiny segmenter always hears one speaker (see its docstring).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from ml_service.models.base import weights_digest
from ml_service.models.pyannote import PyannoteSpeakerModel
from ml_service.models.voices import SpeakerInput
from scripts.speech import SAMPLE_RATE, VOICES, silence, synthesize
from tests.ml_service.tiny_pyannote import VECTOR_SIZE, save_tiny_pyannote
from tests.support.ml_server import ml_client

SENTENCE = "Heavy rain caused a flood in Valencia on Tuesday morning."


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_pyannote(tmp_path_factory.mktemp("pyannote") / "tiny-diarization")


@pytest.fixture(scope="module")
def model(pipeline_dir: Path) -> PyannoteSpeakerModel:
    loaded = PyannoteSpeakerModel(pipeline_dir, device="cpu", threads=2)
    loaded.load()
    return loaded


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    spoken = synthesize(SENTENCE, VOICES["low"])
    return np.concatenate([silence(0.5), spoken, silence(0.5)]).astype(np.float32) / 32768.0


def test_loads_the_local_pipeline_and_reports_it(model: PyannoteSpeakerModel, pipeline_dir: Path) -> None:
    caps = model.capabilities()
    assert (caps["name"], caps["task"], caps["vector_size"], caps["weights"]) == (
        "pyannote",
        "speaker-embedding",
        VECTOR_SIZE,
        "tiny-diarization",
    )
    assert caps["device"] == "cpu" and caps["loaded"] is True
    files = [p for p in sorted(pipeline_dir.rglob("*")) if p.is_file()]
    assert {p.name for p in files} >= {"config.yaml", "pytorch_model.bin", "plda.npz", "xvec_transform.npz"}
    assert caps["version"] == f"{weights_digest(files)}-p1"
    # The config file itself names the same pipeline (and the same version).
    assert PyannoteSpeakerModel(pipeline_dir / "config.yaml").identify() == caps["version"]


def test_turns_and_vectors(model: PyannoteSpeakerModel, speech: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    tone = (0.3 * np.sin(2 * np.pi * 660 * np.arange(8 * SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    tone += (0.01 * rng.standard_normal(len(tone))).astype(np.float32)
    items = [SpeakerInput(speech), SpeakerInput(tone), SpeakerInput(speech.copy(), regions=((0.0, 1.0),))]
    results = model.predict(items)
    assert all(r.ok for r in results), [r.error for r in results]
    vectors = []
    for item, result in zip(items, results, strict=True):
        turns = result.value or []
        duration = len(item.samples) / SAMPLE_RATE
        assert turns, "the tiny segmenter hears its one speaker in every chunk"
        assert [t["start"] for t in turns] == sorted(t["start"] for t in turns)
        assert all(0.0 <= t["start"] < t["end"] <= round(duration, 2) + 0.005 for t in turns)  # 10 ms steps
        labels = list(dict.fromkeys(t["speaker"] for t in turns))
        assert labels == [f"S{i}" for i in range(len(labels))]  # by first appearance
        first = turns[0]["embedding"]
        assert first is not None and first.shape == (VECTOR_SIZE,) and first.dtype == np.float32
        assert abs(float(np.linalg.norm(first)) - 1.0) < 1e-5
        vectors.append(first)
    # pyannote segments by itself: the item's regions (ASR segments) change nothing.
    assert float(vectors[0] @ vectors[2]) == pytest.approx(1.0, abs=1e-5)
    assert float(vectors[0] @ vectors[1]) < 0.999  # other audio, another vector


def test_a_missing_pipeline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no pyannote pipeline \(config.yaml\)"):
        PyannoteSpeakerModel(tmp_path).identify()


@pytest.fixture(scope="module")
def pyannote_ml(pipeline_dir: Path) -> Iterator[httpx.Client]:
    env = {"ML_PYANNOTE_PIPELINE_PATH": str(pipeline_dir), "ML_VOICES_ENABLED": "true"}
    with ml_client(env, timeout_s=120) as client:
        yield client


def test_served_over_http(pyannote_ml: httpx.Client, speech: np.ndarray) -> None:
    spec = pyannote_ml.get("/capabilities").json()["models"]["speakers"]
    assert (spec["name"], spec["vector_size"]) == ("pyannote", VECTOR_SIZE)
    pcm = base64.b64encode((speech * 32767).astype("<i2").tobytes()).decode("ascii")
    items = [{"id": "speech", "pcm": pcm, "sample_rate": SAMPLE_RATE}]
    response = pyannote_ml.post("/v1/analyze/audio", json={"items": items})
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["ok"] and result["segments"] is None  # no ASR in this service
    assert result["turns"] and result["turns"][0]["speaker"] == "S0"
    assert len(result["turns"][0]["embedding"]) == VECTOR_SIZE
    assert result["speech_s"] > 0
