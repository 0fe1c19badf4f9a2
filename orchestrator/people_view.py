"""The people of a collection as users see them: persons with their clusters, counts and appearances, and
one file's timeline of who is seen and who speaks. Read from the companion collections (one pass over their
payloads, no vectors) and the chunk points, resolved through `identities.py`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from orchestrator.clients.vectors import SearchFilter, VectorStore
from orchestrator.identities import Identities, is_voice
from orchestrator.people import FACE_SUFFIX, VOICE_SUFFIX

_PAGE = 1024
TIMELINE_GAP_S = 1.0  # ranges of one person closer than this are one range


@dataclass(slots=True)
class ClusterStats:
    cluster: str
    count: int = 0  # faces (sightings) or turns
    chunks: set[str] = field(default_factory=set)
    media: set[str] = field(default_factory=set)
    speaking_s: float = 0.0
    first: tuple[str, float, str] | None = None  # (content hash, start, chunk id): where first seen


@dataclass(slots=True)
class Person:
    id: str
    name: str | None
    faces: list[ClusterStats] = field(default_factory=list)
    voices: list[ClusterStats] = field(default_factory=list)

    @property
    def chunks(self) -> set[str]:
        return {c for s in (*self.faces, *self.voices) for c in s.chunks}

    @property
    def media(self) -> set[str]:
        return {m for s in (*self.faces, *self.voices) for m in s.media}

    @property
    def clusters(self) -> list[str]:
        return [s.cluster for s in (*self.faces, *self.voices)]

    def example(self) -> tuple[str, float] | None:
        """The chunk (and time) to show: where a face is first seen, else where a voice is first heard."""
        for group in (self.faces, self.voices):
            firsts = [s.first for s in group if s.first is not None]
            if firsts:
                _, start, chunk = min(firsts)
                return chunk, start
        return None


async def _scan(
    store: VectorStore, name: str, flt: SearchFilter | None = None
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    offset: str | None = None
    while True:
        points, offset = await store.scroll(name, flt, _PAGE, offset)
        for p in points:
            yield p.id, p.payload
        if offset is None:
            return


async def cluster_stats(store: VectorStore, physical: str) -> dict[str, ClusterStats]:
    """Every face and voice cluster of the collection with its counts."""
    stats: dict[str, ClusterStats] = {}
    for suffix in (FACE_SUFFIX, VOICE_SUFFIX):
        companion = f"{physical}{suffix}"
        if not await store.collection_exists(companion):
            continue
        async for _, payload in _scan(store, companion):
            cid = str(payload.get("cluster"))
            s = stats.setdefault(cid, ClusterStats(cid))
            s.count += 1
            chunk, content = str(payload.get("chunk_id")), str(payload.get("content_hash"))
            s.chunks.add(chunk)
            s.media.add(content)
            start = float(payload.get("start_s") or 0.0)
            if suffix == VOICE_SUFFIX:
                s.speaking_s += max(0.0, float(payload.get("end_s") or start) - start)
            if s.first is None or (content, start, chunk) < s.first:
                s.first = (content, start, chunk)
    return stats


def group_people(stats: dict[str, ClusterStats], ids: Identities) -> dict[str, Person]:
    """Clusters grouped into persons (identities.py), each person's clusters in id order."""
    people: dict[str, Person] = {}
    for cid in sorted(stats):
        pid = ids.person_of(cid)
        person = people.setdefault(pid, Person(pid, ids.name_of(pid)))
        (person.voices if is_voice(cid) else person.faces).append(stats[cid])
    return people


def person_json(person: Person, ids: Identities, thumbnail: str | None) -> dict[str, Any]:
    example = person.example()
    kind = "both" if person.faces and person.voices else "voice" if person.voices else "face"
    voices = []
    for s in person.voices:
        link = ids.links.get(s.cluster)
        voices.append(
            {
                "cluster": s.cluster,
                "count": s.count,
                "speaking_s": round(s.speaking_s, 2),
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
        "example": {"chunk_id": example[0], "start_s": example[1]} if example else None,
        "media_count": len(person.media),
        "chunk_count": len(person.chunks),
        "speaking_s": round(sum(s.speaking_s for s in person.voices), 2),
        "faces": [{"cluster": s.cluster, "count": s.count} for s in person.faces],
        "voices": voices,
    }


def order_key(person: Person) -> tuple[bool, int, str]:
    """Named people first, then the most often seen or heard."""
    return (person.name is None, -len(person.chunks), person.id)


def _ranges_of(items: list[dict[str, Any]], person: str, chunk: dict[str, Any]) -> list[tuple[float, float]]:
    out = []
    for item in items:
        if item.get("person") != person:
            continue
        a = item.get("start_s", chunk.get("start_s"))
        b = item.get("end_s", chunk.get("end_s"))
        a = float(a) if a is not None else 0.0
        out.append((a, float(b) if b is not None else a))
    return out


async def appearances(store: VectorStore, physical: str, person: str) -> list[dict[str, Any]]:
    """Where a person is seen or heard: per file (content), the chunks' ranges, in time order."""
    files: dict[str, dict[str, Any]] = {}
    async for chunk_id, payload in _scan(store, physical, SearchFilter(match={"people": person})):
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
    async for _, payload in _scan(store, physical, SearchFilter(match={"content_hash": content_hash})):
        duration = payload.get("duration_s", duration)
        for face in payload.get("faces") or []:
            if face.get("person"):
                a = float(face.get("start_s", payload.get("start_s")) or 0.0)
                b = float(face.get("end_s", payload.get("end_s")) or a)
                seen.append((face["person"], face.get("name"), a, b, None))
        for turn in payload.get("speakers") or []:
            if turn.get("person") and turn.get("start_s") is not None:
                a, b = float(turn["start_s"]), float(turn.get("end_s") or turn["start_s"])
                heard.append((turn["person"], turn.get("name"), a, b, turn.get("voice")))
    return {"duration_s": duration, "seen": _merged(seen), "heard": _merged(heard)}
