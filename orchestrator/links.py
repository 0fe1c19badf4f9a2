"""Linking voices to faces across a collection, from co-occurrence (pure, deterministic).

Evidence: every speaker turn with a voice cluster names the face clusters on screen while it is spoken, and
when (`people.on_screen_faces`). Each second of the turn adds `1 / n²` to each (voice, face) pair on screen
in that second, n the number of faces on screen together then (`turn_weights`): one face alone while one
voice speaks counts most, a crowd counts little, a face seen for a fifth of a long reading gets a fifth of
it, and the next shot's face showing up for the turn's last half second costs the first face nothing.
`people_store.py` keeps one row per turn and face (replaced when a file is analysed again, removed with it,
renamed with its clusters), so the sums below are always those of the current collection.

A voice is linked to a face when each is the other's best partner (the face's strongest voice is this
voice, the voice's strongest face is this face), the evidence reaches `min_evidence` seconds and the face
holds at least `min_confidence` of the voice's speaking time (all of it, on screen or not: a narrator heard
over b-roll who once speaks over a silent face stays unlinked). Mutual best keeps an off-screen
interviewer (always heard over the guest's face) from taking the guest's face: the guest's own voice
co-occurs with it more. A pair the user rejected is never linked; the next best partner may be.
Ties break by cluster id, so the same evidence gives the same links.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.identities import Link

MIN_EVIDENCE_S = 2.0
MIN_CONFIDENCE = 0.3
EVIDENCE_CHUNKS = 5  # chunks kept per link as its evidence


@dataclass(frozen=True, slots=True)
class Pair:
    """The summed evidence of one (voice, face) pair, and its heaviest chunks (heaviest first)."""

    voice: str
    face: str
    weight: float
    chunks: tuple[str, ...] = ()


def turn_weights(spans: Mapping[str, Sequence[tuple[float, float]]]) -> dict[str, float]:
    """Each face's evidence from one turn: the integral over the turn of 1/n(t)² while the face is on
    screen, n(t) the faces on screen at time t. ``spans``: per face cluster, when it is on screen during
    the turn (cut to the turn)."""
    edges = sorted({t for intervals in spans.values() for interval in intervals for t in interval})
    weights = dict.fromkeys(spans, 0.0)
    for a, b in itertools.pairwise(edges):
        middle = (a + b) / 2
        there = [face for face, intervals in spans.items() if any(s <= middle < e for s, e in intervals)]
        for face in there:
            weights[face] += (b - a) / (len(there) * len(there))
    return weights


def compute_links(
    pairs: Iterable[Pair],
    speaking: dict[str, float],
    rejected: set[tuple[str, str]],
    min_evidence: float = MIN_EVIDENCE_S,
    min_confidence: float = MIN_CONFIDENCE,
) -> dict[str, Link]:
    """voice cluster -> its link, for every voice that has one. `speaking`: each voice's speaking seconds."""
    by_voice: dict[str, list[Pair]] = defaultdict(list)
    by_face: dict[str, list[Pair]] = defaultdict(list)
    for pair in pairs:
        if (pair.voice, pair.face) in rejected or pair.weight <= 0:
            continue
        by_voice[pair.voice].append(pair)
        by_face[pair.face].append(pair)

    def best(candidates: list[Pair], key: str) -> Pair:
        return min(candidates, key=lambda p: (-p.weight, getattr(p, key)))

    links: dict[str, Link] = {}
    for voice in sorted(by_voice):
        top = best(by_voice[voice], "face")
        if best(by_face[top.face], "voice").voice != voice:
            continue
        confidence = min(1.0, top.weight / max(speaking.get(voice, 0.0), top.weight))
        if top.weight < min_evidence or confidence < min_confidence:
            continue
        links[voice] = Link(voice, top.face, round(confidence, 4), round(top.weight, 3), top.chunks)
    return links
