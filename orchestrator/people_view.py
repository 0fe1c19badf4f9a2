"""The people of a collection as users see them: persons with their clusters, counts and appearances, and
one file's timeline of who is seen and who speaks. Counts come from the people store (one SQL aggregate over
its mirror of the faces and turns), appearances and timelines from the chunk points; clusters resolve to
people through `identities.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.clients.vectors import SearchFilter, VectorStore
from orchestrator.identities import Identities, is_voice
from orchestrator.people import scan
from orchestrator.people_store import ClusterCount, PeopleStore, PersonCount

TIMELINE_GAP_S = 1.0  # ranges of one person closer than this are one range


@dataclass(slots=True)
class Person:
    id: str
    name: str | None
    count: PersonCount
    faces: list[ClusterCount] = field(default_factory=list)
    voices: list[ClusterCount] = field(default_factory=list)

    @property
    def clusters(self) -> list[str]:
        return [s.cluster for s in (*self.faces, *self.voices)]


async def load_people(people: PeopleStore, physical: str) -> tuple[dict[str, Person], Identities]:
    """Every person of the collection with its clusters and counts (SQL over the store's appearances)."""
    ids = await people.identities(physical)
    clusters, persons = await people.counts(physical, ids)
    found = {p.person: Person(p.person, ids.name_of(p.person), p) for p in persons}
    for c in clusters:
        person = found.get(ids.person_of(c.cluster))
        if person is not None:
            (person.voices if is_voice(c.cluster) else person.faces).append(c)
    return found, ids


def person_json(person: Person, ids: Identities, thumbnail: str | None) -> dict[str, Any]:
    kind = "both" if person.faces and person.voices else "voice" if person.voices else "face"
    voices = []
    for s in person.voices:
        link = ids.links.get(s.cluster)
        voices.append(
            {
                "cluster": s.cluster,
                "count": s.count,
                "speaking_s": round(s.seconds, 2),
                "linked_by": ids.linked_by(s.cluster),
                "confidence": link.confidence if link is not None else None,
                "evidence": list(link.chunks) if link is not None else [],
            }
        )
    return {
        "id": person.id,
        "name": person.name,
        "kind": kind,
        "thumbnail_url": thumbnail,
        "example": {"chunk_id": person.count.first_chunk, "start_s": person.count.first_start_s},
        "media_count": person.count.media,
        "chunk_count": person.count.chunks,
        "speaking_s": round(person.count.speaking_s, 2),
        "faces": [{"cluster": s.cluster, "count": s.count} for s in person.faces],
        "voices": voices,
    }


def order_key(person: Person) -> tuple[bool, int, str]:
    """Named people first, then the most often seen or heard."""
    return (person.name is None, -person.count.chunks, person.id)


def _ranges_of(items: list[dict[str, Any]], person: str, chunk: dict[str, Any]) -> list[tuple[float, float]]:
    out = []
    for item in items:
        if item.get("person") != person:
            continue
        # A face: when it is on screen as far as the keyframes tell (from_s/until_s); a turn: its span.
        a = item.get("from_s", item.get("start_s", chunk.get("start_s")))
        b = item.get("until_s", item.get("end_s", chunk.get("end_s")))
        a = float(a) if a is not None else 0.0
        out.append((a, float(b) if b is not None else a))
    return out


async def appearances(store: VectorStore, physical: str, person: str) -> list[dict[str, Any]]:
    """Where a person is seen or heard: per file (content), the chunks' ranges, in time order."""
    files: dict[str, dict[str, Any]] = {}
    async for chunk_id, payload in scan(store, physical, SearchFilter(match={"people": person})):
        content = str(payload.get("content_hash"))
        entry = files.setdefault(
            content,
            {
                "content_hash": content,
                "path": payload.get("path") or (payload.get("paths") or [None])[0],
                "media_type": payload.get("media_type"),
                "ranges": [],
            },
        )
        seen = _ranges_of(payload.get("faces") or [], person, payload)
        heard = _ranges_of(payload.get("speakers") or [], person, payload)
        both = seen + heard
        entry["ranges"].append(
            {
                "start_s": min(a for a, _ in both) if both else payload.get("start_s"),
                "end_s": max(b for _, b in both) if both else payload.get("end_s"),
                "seen": bool(seen),
                "heard": bool(heard),
                "chunk_id": chunk_id,
            }
        )
    out = sorted(files.values(), key=lambda f: (str(f["path"]), f["content_hash"]))
    for f in out:
        f["ranges"].sort(key=lambda r: (r["start_s"] or 0.0, r["chunk_id"]))
    return out


def _merged(spans: list[tuple[str, str | None, float, float, str | None]]) -> list[dict[str, Any]]:
    """(person, name, start, end, voice) spans -> one range per stretch of one person (and voice)."""
    out: list[dict[str, Any]] = []
    last: dict[tuple[str, str | None], dict[str, Any]] = {}
    for person, name, a, b, voice in sorted(spans, key=lambda s: (s[2], s[3], s[0])):
        key = (person, voice)
        prev = last.get(key)
        if prev is not None and a - prev["end_s"] <= TIMELINE_GAP_S:
            prev["end_s"] = max(prev["end_s"], b)
            continue
        entry: dict[str, Any] = {"person": person, "name": name, "start_s": a, "end_s": b}
        if voice is not None:
            entry["voice"] = voice
        out.append(entry)
        last[key] = entry
    return out


async def timeline(store: VectorStore, physical: str, content_hash: str) -> dict[str, Any]:
    """Who is on screen and who speaks in one file, as time ranges."""
    seen: list[tuple[str, str | None, float, float, str | None]] = []
    heard: list[tuple[str, str | None, float, float, str | None]] = []
    duration = None
    async for _, payload in scan(store, physical, SearchFilter(match={"content_hash": content_hash})):
        duration = payload.get("duration_s", duration)
        for face in payload.get("faces") or []:
            if face.get("person"):
                a = float(face.get("from_s", face.get("start_s", payload.get("start_s"))) or 0.0)
                b = float(face.get("until_s", face.get("end_s", payload.get("end_s"))) or a)
                seen.append((face["person"], face.get("name"), a, b, None))
        for turn in payload.get("speakers") or []:
            if turn.get("person") and turn.get("start_s") is not None:
                a, b = float(turn["start_s"]), float(turn.get("end_s") or turn["start_s"])
                heard.append((turn["person"], turn.get("name"), a, b, turn.get("voice")))
    return {"duration_s": duration, "seen": _merged(seen), "heard": _merged(heard)}
