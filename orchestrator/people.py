"""People: faces and voices clustered per collection, kept in companion collections.

Every face (an image's face, a video chunk's face track) and every speaker turn with an embedding is one
point in `<collection>_faces` / `<collection>_voices` (vector + content hash, chunk, time, box, cluster).
Assignment is incremental: a new face joins the cluster of its nearest stored (or same-batch) neighbour when
their cosine similarity reaches the threshold, else it starts a cluster. At the end of a job, `merge` looks
at this job's faces again: when one is close to faces of several clusters (it bridged them after they were
created), those clusters become one. Ids are deterministic, so re-writing a file re-finds its own faces.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.clients.vectors import (
    CollectionSpec,
    CollectionSpecMismatchError,
    PointRecord,
    SearchFilter,
    SearchRequest,
    VectorStore,
)
from orchestrator.ids import point_id
from orchestrator.logs import get_logger
from orchestrator.pipeline.messages import AnalyzedFile
from orchestrator.pipeline.unify import cosine

log = get_logger(__name__)

_NAMESPACE = uuid.UUID("5b0e3f4c-7c1e-4f0a-9d55-0d6c9a3e2b71")
# Keyframes sample a chunk every few seconds: a face seen this close to a turn counts as on screen during it.
ON_SCREEN_SLACK_S = 1.0
_NEIGHBOURS = 8
_SCROLL_PAGE = 1024


@dataclass(frozen=True, slots=True)
class Kind:
    name: str  # "face" | "voice": also the vector's name
    suffix: str
    prefix: str  # of cluster ids
    threshold: float

    def collection(self, base: str) -> str:
        return f"{base}{self.suffix}"


FACE_SUFFIX = "_faces"
VOICE_SUFFIX = "_voices"
COMPANION_SUFFIXES = (FACE_SUFFIX, VOICE_SUFFIX)


def companions(collection: str) -> list[str]:
    return [f"{collection}{suffix}" for suffix in COMPANION_SUFFIXES]


def is_companion(name: str) -> bool:
    return name.endswith(COMPANION_SUFFIXES)


# The ML model whose vectors each companion collection holds: (vector name, suffix, model key).
_COMPANION_MODELS = (("face", FACE_SUFFIX, "faces"), ("voice", VOICE_SUFFIX, "speakers"))


async def check_vector_sizes(store: VectorStore, collection: str, models: dict[str, dict[str, Any]]) -> None:
    """Refuse a job whose face or voice model gives vectors of another size than its companion holds.

    A collection keeps the face and voice backends it was built with (YuNet/SFace 128-d against an
    insightface pack's 512-d, resemblyzer 256-d against a pyannote pipeline's size): mixing them cannot be
    compared. Raised at the job's start instead of at its first face. Unknown sizes (a lazily loaded
    model) are not checked.
    """
    for vector, suffix, key in _COMPANION_MODELS:
        size = (models.get(key) or {}).get("vector_size")
        name = f"{collection}{suffix}"
        if not size or not await store.collection_exists(name):
            continue
        stored = (await store.dense_vectors(name)).get(vector)
        if stored is not None and stored != int(size):
            model = models[key].get("name", key)
            raise CollectionSpecMismatchError(
                f"collection {name!r} holds {stored}-d {vector} vectors, but the ML service's {key} model "
                f"({model}) gives {size}-d ones: ingest into a new collection to change the {key} backend"
            )


@dataclass(slots=True)
class Assignment:
    """Cluster ids of one chunk's faces and speaker turns (None: no embedding, not clustered), and for each
    turn the one person on screen while it is spoken (None: nobody, or several)."""

    faces: list[str | None] = field(default_factory=list)
    voices: list[str | None] = field(default_factory=list)
    on_screen: list[str | None] = field(default_factory=list)

    @property
    def people(self) -> list[str]:
        return sorted({c for c in [*self.faces, *self.voices] if c})


@dataclass(slots=True)
class _Member:
    id: str
    vector: list[float]
    cluster: str


class PeopleIndex:
    """One job's view of a collection's people; used by the upsert stage (one writer)."""

    def __init__(
        self, store: VectorStore, collection: str, face_threshold: float, voice_threshold: float
    ) -> None:
        self._store = store
        self._collection = collection
        self.face = Kind("face", FACE_SUFFIX, "person", face_threshold)
        self.voice = Kind("voice", VOICE_SUFFIX, "voice", voice_threshold)
        self._ensured: set[str] = set()
        self._added: dict[str, list[_Member]] = {"face": [], "voice": []}  # this job's, for `merge`

    async def assign(self, files: list[AnalyzedFile]) -> dict[tuple[str, int], Assignment]:
        """Cluster every face and turn of these files (and store them); keyed by (content hash, chunk)."""
        out: dict[tuple[str, int], Assignment] = {}
        records: dict[str, list[PointRecord]] = {"face": [], "voice": []}
        batch: dict[str, list[_Member]] = {"face": [], "voice": []}
        for item in files:
            content_hash = item.prepared.content_hash
            for index, analysis in sorted(item.chunks.items()):
                assignment = Assignment()
                chunk_id = point_id(content_hash, index)
                for kind, entries, target in (
                    (self.face, analysis.faces, assignment.faces),
                    (self.voice, analysis.turns, assignment.voices),
                ):
                    if kind is self.voice:  # faces are clustered by now: who is on screen during each turn
                        assignment.on_screen = on_screen(analysis.faces, analysis.turns, assignment.faces)
                    for n, entry in enumerate(entries):
                        vector = entry.get("embedding")
                        if not vector:
                            target.append(None)
                            continue
                        member_id = _member_id(kind.name, content_hash, index, n)
                        cluster = await self._nearest(kind, member_id, vector, batch[kind.name])
                        member = _Member(member_id, vector, cluster or f"{kind.prefix}-{member_id[:12]}")
                        batch[kind.name].append(member)
                        target.append(member.cluster)
                        records[kind.name].append(
                            PointRecord(
                                id=member_id,
                                dense={kind.name: vector},
                                sparse={},
                                payload={
                                    "cluster": member.cluster,
                                    "content_hash": content_hash,
                                    "chunk_index": index,
                                    "chunk_id": chunk_id,
                                    "start_s": entry.get("start_s"),
                                    "end_s": entry.get("end_s"),
                                    "box": entry.get("box"),
                                    "person": assignment.on_screen[n] if kind is self.voice else None,
                                },
                            )
                        )
                out[(content_hash, index)] = assignment
        for kind in (self.face, self.voice):
            if records[kind.name]:
                name = await self._ensure(kind, len(records[kind.name][0].dense[kind.name]))
                await self._store.upsert(name, records[kind.name])
                self._added[kind.name].extend(batch[kind.name])
        return out

    async def _nearest(
        self, kind: Kind, member_id: str, vector: list[float], batch: list[_Member]
    ) -> str | None:
        """The cluster of the most similar stored or same-batch member at or above the threshold."""
        best, best_score = None, kind.threshold
        for member in batch:
            score = cosine(vector, member.vector)
            if score >= best_score:
                best, best_score = member.cluster, score
        name = kind.collection(self._collection)
        if name in self._ensured or await self._store.collection_exists(name):
            self._ensured.add(name)
            hits = await self._store.search(
                name, SearchRequest(dense={kind.name: vector}, sparse={}, limit=_NEIGHBOURS)
            )
            for hit in hits:
                if hit.id == member_id:  # written before (a re-run): keep its cluster
                    return str(hit.payload.get("cluster"))
                if hit.score >= best_score:
                    best, best_score = str(hit.payload.get("cluster")), hit.score
        return best

    async def _ensure(self, kind: Kind, dim: int) -> str:
        name = kind.collection(self._collection)
        if name not in self._ensured:
            spec = CollectionSpec(
                dense={kind.name: dim},
                sparse=(),
                keyword_indexes=("cluster", "content_hash", "chunk_id", "person"),
            )
            await self._store.ensure_collection(name, spec)
            self._ensured.add(name)
        return name

    async def merge(self) -> int:
        """Join clusters bridged by this job's members (union-find over neighbours at or above the
        threshold); rewrites the merged clusters' ids in the companion and the chunk points. Returns the
        number of clusters merged away."""
        merged = 0
        for kind in (self.face, self.voice):
            members = self._added[kind.name]
            if not members:
                continue
            name = kind.collection(self._collection)
            parent: dict[str, str] = {}

            def find(c: str, parent: dict[str, str] = parent) -> str:
                while parent.get(c, c) != c:
                    c = parent[c]
                return c

            for member in members:
                hits = await self._store.search(
                    name, SearchRequest(dense={kind.name: member.vector}, sparse={}, limit=_NEIGHBOURS)
                )
                for hit in hits:
                    if hit.score < kind.threshold:
                        continue
                    a, b = find(member.cluster), find(str(hit.payload.get("cluster")))
                    if a != b:
                        keep, drop = sorted((a, b))
                        parent[drop] = keep
            renames = {c: find(c) for c in parent if find(c) != c}
            if renames:
                await self._rename(kind, renames)
                merged += len(renames)
            members.clear()
        if merged:
            log.info("people_merged", clusters=merged)
        return merged

    async def _rename(self, kind: Kind, renames: dict[str, str]) -> None:
        companion = kind.collection(self._collection)
        updates: dict[str, dict[str, Any]] = {}
        async for point_id_, payload in _scan(
            self._store, companion, SearchFilter(match={"cluster": list(renames)})
        ):
            updates[point_id_] = {"cluster": renames[str(payload["cluster"])]}
        await self._store.set_payloads(companion, updates)
        voices = self.voice.collection(self._collection)
        if kind is self.face and await self._store.collection_exists(voices):  # voices name persons too
            linked: dict[str, dict[str, Any]] = {}
            async for point_id_, payload in _scan(
                self._store, voices, SearchFilter(match={"person": list(renames)})
            ):
                linked[point_id_] = {"person": renames[str(payload["person"])]}
            await self._store.set_payloads(voices, linked)
        chunk_updates: dict[str, dict[str, Any]] = {}
        flt = SearchFilter(match={"people": list(renames)})
        async for point_id_, payload in _scan(self._store, self._collection, flt):
            chunk_updates[point_id_] = renamed_people(payload, renames)
        await self._store.set_payloads(self._collection, chunk_updates)

    async def forget(self, content_hashes: Iterable[str]) -> None:
        """Delete the faces and voices of contents whose points were deleted."""
        hashes = list(content_hashes)
        if not hashes:
            return
        for kind in (self.face, self.voice):
            name = kind.collection(self._collection)
            if not await self._store.collection_exists(name):
                continue
            ids = [
                pid async for pid, _ in _scan(self._store, name, SearchFilter(match={"content_hash": hashes}))
            ]
            await self._store.delete(name, ids)


def renamed_people(payload: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """A chunk payload's `people`, `faces` and `speakers` with clusters renamed."""

    def rename(c: object) -> object:
        return renames.get(c, c) if isinstance(c, str) else c

    faces = [{**f, "person": rename(f.get("person"))} for f in payload.get("faces") or []]
    speakers = [
        {**t, "voice": rename(t.get("voice")), "person": rename(t.get("person"))}
        for t in payload.get("speakers") or []
    ]
    people = sorted({str(rename(c)) for c in payload.get("people") or []})
    return {"people": people, "faces": faces, "speakers": speakers}


async def _scan(
    store: VectorStore, name: str, flt: SearchFilter
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    offset: str | None = None
    while True:
        points, offset = await store.scroll(name, flt, _SCROLL_PAGE, offset)
        for p in points:
            yield p.id, p.payload
        if offset is None:
            return


def on_screen(
    faces: list[dict[str, Any]], turns: list[dict[str, Any]], persons: list[str | None]
) -> list[str | None]:
    """For each speaker turn, the one person whose face track is on screen while it is spoken (a track
    seen within ON_SCREEN_SLACK_S of the turn); None when nobody or several people are."""
    out: list[str | None] = []
    for turn in turns:
        a, b = float(turn.get("start_s") or 0.0), float(turn.get("end_s") or 0.0)
        seen = {
            person
            for face, person in zip(faces, persons, strict=False)
            if person
            and face.get("start_s") is not None
            and float(face["start_s"]) - ON_SCREEN_SLACK_S <= b
            and float(face.get("end_s") or face["start_s"]) + ON_SCREEN_SLACK_S >= a
        }
        out.append(seen.pop() if len(seen) == 1 else None)
    return out


def _member_id(kind: str, content_hash: str, chunk: int, n: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{content_hash}:{chunk}:{n}"))
