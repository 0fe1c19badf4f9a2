"""Who a cluster is: the people users see, made of the machine's face and voice clusters (pure).

A face cluster ("person-…") and a voice cluster ("voice-…") come from `people.py`. A person is a set of
clusters with an optional name. Resolution, in order:
1. a cluster a user placed (merge, split: `members`) belongs to that person;
2. a voice cluster linked to a face (`links`: collection-wide co-occurrence, `links.py`) belongs to that
   face's person (unless the user rejected that link: `rejected`);
3. otherwise a cluster is its own person, whose id is the cluster's id.
Person ids are stable: a merge keeps the target's id, a split gives the moved clusters the id of the first
one. `people_fields` derives a chunk payload's people fields from its clusters, so a rename or a merge
rewrites payloads deterministically from what the payload already holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FACE_PREFIX = "person-"
VOICE_PREFIX = "voice-"


def is_voice(cluster: str) -> bool:
    return cluster.startswith(VOICE_PREFIX)


@dataclass(frozen=True, slots=True)
class Link:
    """A voice cluster linked to a face cluster by co-occurrence."""

    voice: str
    face: str
    confidence: float  # the share of the voice's on-screen evidence this face holds
    evidence: float  # weighted seconds of this face on screen while the voice speaks
    chunks: tuple[str, ...]  # the chunks that weigh most in the link (a few)


@dataclass(slots=True)
class Identities:
    """One collection's people: explicit placements, links, names (a snapshot; `people_store.py` loads it)."""

    members: dict[str, str] = field(default_factory=dict)  # cluster -> person (user placed)
    links: dict[str, Link] = field(default_factory=dict)  # voice cluster -> its link
    names: dict[str, str] = field(default_factory=dict)  # person -> name

    def person_of(self, cluster: str) -> str:
        if (person := self.members.get(cluster)) is not None:
            return person
        if (link := self.links.get(cluster)) is not None:
            return self.members.get(link.face, link.face)
        return cluster

    def name_of(self, person: str | None) -> str | None:
        return self.names.get(person) if person else None

    def linked_by(self, voice: str) -> str | None:
        """How a voice cluster came to its person: "user" (placed), "auto" (linked), None (its own)."""
        if voice in self.members:
            return "user"
        return "auto" if voice in self.links else None

    def resolve(self, query: str) -> list[str]:
        """A person id or a name (case-insensitive, exact) -> the person ids it names (sorted). An id is
        itself; a name may name several people."""
        folded = query.strip().casefold()
        named = sorted(p for p, n in self.names.items() if n.casefold() == folded)
        if named:
            return named
        return [query] if query.startswith((FACE_PREFIX, VOICE_PREFIX)) else []


def people_fields(payload: Mapping[str, Any], ids: Identities) -> dict[str, Any]:
    """A chunk payload's people fields, from the clusters it holds: `faces[].person/name`,
    `speakers[].person/name`, `clusters`, `people` (seen or heard), `speaking` (heard), `names`."""
    faces = []
    for face in payload.get("faces") or []:
        cluster = face.get("cluster")
        person = ids.person_of(cluster) if isinstance(cluster, str) else None
        faces.append({**face, "person": person, "name": ids.name_of(person)})
    speakers = []
    for turn in payload.get("speakers") or []:
        voice = turn.get("voice")
        person = ids.person_of(voice) if isinstance(voice, str) else None
        speakers.append({**turn, "person": person, "name": ids.name_of(person)})
    clusters = {c for c in (f.get("cluster") for f in faces) if isinstance(c, str)}
    clusters |= {v for v in (t.get("voice") for t in speakers) if isinstance(v, str)}
    seen = {f["person"] for f in faces if f["person"]}
    heard = {t["person"] for t in speakers if t["person"]}
    return {
        "faces": faces,
        "speakers": speakers,
        "clusters": sorted(clusters),
        "people": sorted(seen | heard),
        "speaking": sorted(heard),
        "names": sorted({n for p in seen | heard if (n := ids.name_of(p))}),
    }


def changed_people(payload: Mapping[str, Any], ids: Identities) -> dict[str, Any] | None:
    """The payload's new people fields when they differ from what it holds (None: nothing to write)."""
    fields = people_fields(payload, ids)
    return fields if any(payload.get(k) != v for k, v in fields.items()) else None
