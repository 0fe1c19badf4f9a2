"""Voice–face links from co-occurrence (links.py): who is linked, who is not, and why."""

from __future__ import annotations

from orchestrator.links import Pair, compute_links, turn_weights


def test_turn_weights_count_a_face_alone_most() -> None:
    assert turn_weights({"a": [(0.0, 4.0)]}) == {"a": 4.0}
    assert turn_weights({"a": [(0.0, 4.0)], "b": [(0.0, 4.0)]}) == {"a": 1.0, "b": 1.0}  # together: 1/4
    assert turn_weights({}) == {}
    assert turn_weights({"a": [(2.0, 2.0)]}) == {"a": 0.0}  # touching the turn only


def test_turn_weights_divide_only_the_seconds_faces_share() -> None:
    # One shot, then the next shot's face for the turn's last half second: nothing shared.
    assert turn_weights({"a": [(0.0, 3.5)], "b": [(3.5, 4.0)]}) == {"a": 3.5, "b": 0.5}
    # b joins a for the last 2 s: a gets 2 s alone and a quarter of the 2 s together.
    assert turn_weights({"a": [(0.0, 4.0)], "b": [(2.0, 4.0)]}) == {"a": 2.5, "b": 0.5}
    assert turn_weights({"a": [(0.0, 1.0), (3.0, 4.0)]}) == {"a": 2.0}


def test_each_voice_links_to_its_own_face() -> None:
    pairs = [
        Pair("voice-a", "face-a", 20.0, ("c1",)),
        Pair("voice-a", "face-b", 2.0),
        Pair("voice-b", "face-b", 15.0, ("c2",)),
        Pair("voice-b", "face-a", 1.0),
    ]
    links = compute_links(pairs, {"voice-a": 30.0, "voice-b": 20.0}, set())
    assert {v: link.face for v, link in links.items()} == {"voice-a": "face-a", "voice-b": "face-b"}
    assert links["voice-a"].confidence == round(20 / 30, 4) and links["voice-a"].chunks == ("c1",)


def test_an_off_screen_interviewer_does_not_take_the_guests_face() -> None:
    """The interviewer is only ever heard over the guest's face; the guest's own voice co-occurs with it
    more, so only the guest's voice is linked."""
    pairs = [Pair("voice-guest", "face-guest", 40.0), Pair("voice-host", "face-guest", 12.0)]
    links = compute_links(pairs, {"voice-guest": 45.0, "voice-host": 12.0}, set())
    assert set(links) == {"voice-guest"}


def test_a_narrator_heard_mostly_over_b_roll_stays_unlinked() -> None:
    """Once over a silent face, for a few seconds of a minute of narration: not that face's voice."""
    links = compute_links([Pair("voice-narrator", "face-x", 5.0)], {"voice-narrator": 60.0}, set())
    assert links == {}


def test_too_little_evidence_links_nothing() -> None:
    assert compute_links([Pair("voice-a", "face-a", 1.5)], {"voice-a": 1.5}, set()) == {}


def test_a_rejected_pair_is_never_linked_and_the_next_best_may_be() -> None:
    pairs = [Pair("voice-a", "face-a", 20.0), Pair("voice-a", "face-b", 12.0)]
    speaking = {"voice-a": 30.0}
    assert compute_links(pairs, speaking, set())["voice-a"].face == "face-a"
    links = compute_links(pairs, speaking, {("voice-a", "face-a")})
    assert links["voice-a"].face == "face-b"


def test_ties_break_by_id_whatever_the_input_order() -> None:
    pairs = [Pair("voice-a", "face-b", 10.0), Pair("voice-a", "face-a", 10.0)]
    for ordered in (pairs, pairs[::-1]):
        assert compute_links(ordered, {"voice-a": 10.0}, set())["voice-a"].face == "face-a"
