"""scripts/eval_people.py's scoring (pure): links and speaking time against a known truth, on hand-made
GET /people and GET /media answers. The whole evaluation (services, ingest, diarization set) takes minutes
and is run by hand; its numbers are in the README."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.eval_people import score_people
from tests.support.people_media import DIANE, SHEILA, Span, VideoTruth

TALK = VideoTruth(
    Path("/m/talk.mp4"),
    10.0,
    seen=[Span("astronaut", 0.0, 5.0), Span("hopper", 5.0, 10.0)],
    heard=[Span(DIANE, 0.5, 4.0), Span(SHEILA, 5.5, 9.5)],
)
# The chunk as the machine saw it: one keyframe per shot; Diane's turn runs 1 s into Sheila's shot.
CHUNK = {
    "path": "/m/talk.mp4",
    "start_s": 0.0,
    "faces": [{"cluster": "person-a", "start_s": 2.0}, {"cluster": "person-h", "start_s": 7.0}],
    "speakers": [
        {"voice": "voice-d", "start_s": 0.4, "end_s": 5.0},
        {"voice": "voice-s", "start_s": 5.0, "end_s": 9.5},
    ],
}


def _person(pid: str, faces: list[str], voices: list[tuple[str, str | None, float]]) -> dict[str, Any]:
    return {
        "id": pid,
        "kind": "both" if faces and voices else "face" if faces else "voice",
        "media_count": 1,
        "speaking_s": sum(s for _, _, s in voices),
        "faces": [{"cluster": f, "count": 1} for f in faces],
        "voices": [
            {"cluster": v, "linked_by": by, "speaking_s": s, "confidence": 0.8 if by else None}
            for v, by, s in voices
        ],
    }


def test_right_links_wrong_links_and_missed_pairs() -> None:
    people = [
        _person("person-a", ["person-a"], [("voice-d", "auto", 4.6)]),
        _person("person-h", ["person-h"], []),
        _person("voice-s", [], [("voice-s", None, 4.5)]),
    ]
    scored = score_people(people, [CHUNK], {"/m/talk.mp4": TALK})
    assert (scored.people_true, scored.people_found, scored.people_matched) == (2, 3, 1)
    assert scored.link_precision == 1.0 and scored.link_recall == 0.5  # Sheila's voice is not linked
    # Diane: 3.5 s spoken, 4.6 s found; Sheila: 4 s spoken, 4.5 s found.
    assert scored.speaking["eileen"] == {"true_s": 3.5, "found_s": 4.6, "accuracy": 0.686}
    assert scored.speaking["grace"] == {"true_s": 4.0, "found_s": 4.5, "accuracy": 0.875}
    assert scored.speaking_time_accuracy == round((0.686 + 0.875) / 2, 3)

    # Both voices on the astronaut's person: one link right, one wrong; the speaking time merges too.
    people = [
        _person("person-a", ["person-a"], [("voice-d", "auto", 4.6), ("voice-s", "auto", 4.5)]),
        _person("person-h", ["person-h"], []),
    ]
    scored = score_people(people, [CHUNK], {"/m/talk.mp4": TALK})
    assert scored.link_precision == 0.5 and scored.link_recall == 0.5
    assert scored.people_matched == 0  # the astronaut's person holds Sheila; Hopper's lacks her voice
    assert [(link["voice_is"], link["face_is"], link["right"]) for link in scored.links] == [
        (DIANE, "astronaut", True),
        (SHEILA, "astronaut", False),
    ]
    assert scored.speaking["grace"]["found_s"] == 9.1


def test_no_link_made_has_no_precision() -> None:
    people = [
        _person("person-a", ["person-a"], []),
        _person("person-h", ["person-h"], []),
        _person("voice-d", [], [("voice-d", None, 4.6)]),
        _person("voice-s", [], [("voice-s", None, 4.5)]),
    ]
    scored = score_people(people, [CHUNK], {"/m/talk.mp4": TALK})
    assert scored.link_precision is None and scored.link_recall == 0.0 and scored.links == []
    assert scored.people_found == 4 and scored.people_matched == 0
