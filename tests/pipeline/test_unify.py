"""Chunk records from ML answers: face tracks across keyframes, speech trimmed to the chunk's span."""

from __future__ import annotations

import math
from typing import Any

from orchestrator.pipeline.unify import Visual, compose_text, face_tracks, iou, merge_frames, speech


def _unit(*values: float) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


A, B = _unit(1, 0, 0, 0), _unit(0, 1, 0, 0)


def _face(box: list[float], embedding: list[float] | None, score: float = 0.9) -> dict[str, Any]:
    return {"box": box, "score": score, "embedding": embedding}


def test_iou() -> None:
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [20, 20, 5, 5]) == 0.0
    assert round(iou([0, 0, 10, 10], [5, 0, 10, 10]), 3) == round(50 / 150, 3)


def test_a_face_followed_across_keyframes_is_one_track() -> None:
    frames = [
        (1.0, [_face([10, 10, 80, 100], A), _face([300, 20, 80, 100], B)]),
        (5.0, [_face([14, 12, 80, 100], A, 0.95), _face([302, 22, 80, 100], B)]),
        (9.0, [_face([400, 200, 80, 100], A)]),  # moved far: follows by identity
    ]
    tracks = face_tracks(frames)
    assert len(tracks) == 2
    first = next(t for t in tracks if t["embedding"][0] > 0.9)
    assert (first["start_s"], first["end_s"], first["frames"]) == (1.0, 9.0, 3)
    assert first["box"] == [14, 12, 80, 100] and first["score"] == 0.95  # the best detection
    second = next(t for t in tracks if t is not first)
    assert (second["start_s"], second["end_s"], second["frames"]) == (1.0, 5.0, 2)


def test_different_people_in_the_same_place_are_different_tracks() -> None:
    tracks = face_tracks([(1.0, [_face([10, 10, 80, 100], A)]), (5.0, [_face([200, 200, 80, 100], B)])])
    assert len(tracks) == 2
    # Anchors take turns in the same framing: identity, not position, decides.
    tracks = face_tracks([(1.0, [_face([10, 10, 80, 100], A)]), (5.0, [_face([10, 10, 80, 100], B)])])
    assert len(tracks) == 2


def test_small_faces_without_embeddings_still_track_by_overlap() -> None:
    tracks = face_tracks([(1.0, [_face([10, 10, 30, 30], None)]), (2.0, [_face([12, 10, 30, 30], None)])])
    assert len(tracks) == 1 and tracks[0]["embedding"] is None and tracks[0]["frames"] == 2


def test_merge_frames_of_an_image_keeps_its_faces() -> None:
    result = {
        "ocr": {"text": "HELLO"},
        "tags": [{"label": "cat", "score": 0.8}],
        "faces": [_face([1, 2, 3, 4], A)],
    }
    visual = merge_frames([(None, result)])
    assert (visual.ocr_text, visual.tags, visual.caption) == ("HELLO", ["cat"], None)
    assert visual.faces == [_face([1, 2, 3, 4], A)]


def test_merge_frames_of_keyframes() -> None:
    frames = [
        (1.0, {"ocr": {"text": "LIVE\nVALENCIA"}, "tags": [{"label": "suit", "score": 0.3}], "faces": []}),
        (
            2.0,
            {
                "ocr": {"text": "VALENCIA"},
                "tags": [{"label": "suit", "score": 0.6}, {"label": "tie", "score": 0.5}],
            },
        ),
    ]
    visual = merge_frames(frames)
    assert visual.ocr_text == "LIVE\nVALENCIA"  # distinct lines, first-seen order
    assert visual.tags == ["suit", "tie"]
    assert visual.faces == []


def _asr(words: list[tuple[str, float, float]]) -> dict[str, Any]:
    return {
        "language": "en",
        "segments": [
            {
                "start": words[0][1],
                "end": words[-1][2],
                "words": [{"word": w, "start": a, "end": b} for w, a, b in words],
            }
        ],
        "turns": [{"start": words[0][1], "end": words[-1][2], "speaker": "S0", "embedding": [1.0, 0.0]}],
    }


def test_speech_is_made_absolute_and_trimmed_to_the_chunk() -> None:
    # The chunk is [15, 30); its audio starts 0.5 s earlier.
    result = _asr([("tail", 0.0, 0.4), ("Breaking", 0.6, 1.0), ("news", 1.1, 1.4), ("over", 15.3, 15.9)])
    said = speech(result, audio_start_s=14.5, start_s=15.0, end_s=30.0, last=False)
    assert said.words == [["Breaking", 15.1, 15.5], ["news", 15.6, 15.9]]
    assert said.transcript == "Breaking news"
    assert said.language == "en"
    assert said.turns == [{"start_s": 15.0, "end_s": 30.0, "speaker": "S0", "embedding": [1.0, 0.0]}]


def test_the_last_chunk_keeps_its_end() -> None:
    result = _asr([("end", 15.3, 15.9)])
    said = speech(result, audio_start_s=14.5, start_s=15.0, end_s=29.9, last=True)
    assert said.words == [["end", 29.8, 30.4]]


def test_compose_text_puts_speech_first() -> None:
    assert compose_text(Visual("LIVE", ["suit"]), "hello there") == "hello there Shows: suit. Text: LIVE"
    assert compose_text(Visual()) == ""


def test_compose_text_uses_the_scene_of_a_vlm() -> None:
    scene = {
        "description": "A kitchen.",
        "objects": ["Cup", "kettle"],
        "on_screen_text": "",
        "setting": "indoor",
    }
    text = compose_text(Visual("", ["cup"], "A kitchen.", [], scene))
    assert text == "A kitchen. Shows: cup, kettle. Setting: indoor."
    # The VLM's reading of on-screen text stands in when OCR found none.
    scene["on_screen_text"] = "OPEN 24H"
    assert compose_text(Visual("", [], None, [], scene)).endswith("Text: OPEN 24H")
    assert compose_text(Visual("OPEN", [], None, [], scene)).endswith("Text: OPEN")


def test_a_sliver_of_a_turn_keeps_its_label_but_not_its_voice_vector() -> None:
    result = {
        "segments": [],
        "turns": [
            {"start": 0.5, "end": 10.0, "speaker": "S0", "embedding": [1.0, 0.0]},
            {"start": 14.2, "end": 15.4, "speaker": "S1", "embedding": [0.0, 1.0]},  # 0.3 s inside the chunk
        ],
    }
    said = speech(result, audio_start_s=0.0, start_s=0.0, end_s=14.5, last=False)
    assert [t["embedding"] for t in said.turns] == [[1.0, 0.0], None]
    assert said.turns[1]["speaker"] == "S1"


NAN = float("nan")


def test_malformed_face_vectors_lose_their_vector_not_the_chunk() -> None:
    """A face embedding holding nulls or NaN, of another size, or all zero; a box or a score that is not
    numbers: each face stays, without what was malformed, and tracking goes on (it raised TypeError)."""
    frames = [
        (1.0, [_face([10, 10, 80, 100], [None, 0.1, 0.2, 0.3]), _face([300, 20, 80, 100], B)]),  # type: ignore[list-item]
        (5.0, [_face([12, 10, 80, 100], [NAN, 0.0, 0.0, 0.0]), _face([302, 22, 80, 100], B)]),
        (9.0, [_face([14, 10, 80, 100], [1.0, 0.0, 0.0]), {"box": ["x", 0, 1, 1], "score": None}]),
        (13.0, [_face([16, 10, 80, 100], [0.0, 0.0, 0.0, 0.0])]),
    ]
    visual = merge_frames([(t, {"faces": faces}) for t, faces in frames], face_dim=4)
    tracked = [t for t in visual.faces if t["embedding"] is not None]
    assert len(tracked) == 1 and tracked[0]["frames"] == 2  # B, on two keyframes
    assert all(t["embedding"] is None for t in visual.faces if t is not tracked[0])
    assert all(t["box"] is None or all(isinstance(v, float) for v in t["box"]) for t in visual.faces)
    # The face on the left followed by its box, though it had no usable vector on any keyframe.
    left = [t for t in visual.faces if t["box"] and t["box"][0] < 100]
    assert len(left) == 1 and left[0]["frames"] == 4


def test_malformed_speech_drops_the_bad_word_or_turn_vector() -> None:
    result = {
        "segments": [{"words": [{"word": "hi", "start": 0.5, "end": 0.9}, {"word": "x", "start": None}]}],
        "turns": [
            {"start": 0.0, "end": 3.0, "speaker": "S0", "embedding": [NAN] * 4},
            {"start": 3.0, "end": 6.0, "speaker": "S1", "embedding": [0.1, None, 0.2, 0.3]},
            {"start": 6.0, "end": 9.0, "speaker": "S0", "embedding": [0.5] * 4},
            {"start": "soon", "end": 9.0, "speaker": "S2"},
        ],
        "language": 3,
    }
    said = speech(result, 0.0, 0.0, 9.0, True, voice_dim=4)
    assert said.words == [["hi", 0.5, 0.9]]
    assert [t["embedding"] for t in said.turns] == [None, None, [0.5] * 4]
    assert said.language is None


def test_a_tracks_time_on_screen_reaches_half_way_to_the_keyframes_around_it() -> None:
    """Seen on the keyframes at 5 and 9 of a 0–15 s chunk with keyframes at 1, 5, 9, 13: on screen from
    3 to 11 (half-way to the keyframes where it is not); a face on the first keyframe: from the chunk's
    start."""
    frames = [
        (1.0, [_face([300, 20, 80, 100], B)]),
        (5.0, [_face([10, 10, 80, 100], A)]),
        (9.0, [_face([12, 10, 80, 100], A)]),
        (13.0, []),
    ]
    tracks = face_tracks(frames, (0.0, 15.0))
    a = next(t for t in tracks if t["embedding"][0] > 0.9)
    b = next(t for t in tracks if t is not a)
    assert (a["start_s"], a["end_s"], a["from_s"], a["until_s"]) == (5.0, 9.0, 3.0, 11.0)
    assert (b["from_s"], b["until_s"]) == (0.0, 3.0)
    assert face_tracks(frames)[0]["from_s"] == 1.0  # no span given: from its first keyframe


def test_a_faces_time_on_screen_ends_at_the_shot_changes_around_it() -> None:
    """A reader heard over a face shown in one shot, 8.9–13.1 s of a 0–15 s chunk (keyframes at 2.5, 7.5
    and 12.5; cuts at 8.9 and 13.1): the face is on screen for its shot, not half-way to the keyframes
    around it (10.0–15.0). Inside one shot the half-way rule still holds."""
    frames = [(2.5, []), (7.5, []), (12.5, [_face([10, 10, 80, 100], A)])]
    [shot] = face_tracks(frames, (0.0, 15.0), cuts=(8.9, 13.1))
    assert (shot["from_s"], shot["until_s"]) == (8.9, 13.1)
    [halfway] = face_tracks(frames, (0.0, 15.0))
    assert (halfway["from_s"], halfway["until_s"]) == (10.0, 15.0)
    # A cut before the keyframe before it: that keyframe is in its shot, so half-way to it (7.5 -> 10.0).
    [same_shot] = face_tracks(frames, (0.0, 15.0), cuts=(5.0,))
    assert (same_shot["from_s"], same_shot["until_s"]) == (10.0, 15.0)
    # Cuts but no span: bounded by the cuts it has, its keyframes otherwise.
    [bare] = face_tracks(frames, cuts=(13.1,))
    assert (bare["from_s"], bare["until_s"]) == (10.0, 13.1)
