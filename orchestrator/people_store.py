"""What users and jobs decided about people, in SQLite beside the jobs (DATA_DIR/people.sqlite3).

Per (physical) collection: names (`persons`), clusters users placed (`members`: merge, split), rejected
voice–face links (`rejections`), the computed links (`links`), the co-occurrence evidence they come from
(`evidence`: one row per speaker turn and face on screen, plus one per turn with face '' holding its
duration), and an undo stack (`history`: each change stores the rows it replaced). `version` counts changes,
so a job's snapshot (`identities`) is reloaded only when something changed.

`appearances` mirrors the companion points (one row per face or turn: cluster, chunk, time), so listing
people is one SQL aggregate instead of a pass over every face and turn of the collection.

Jobs keep the evidence and the appearances current: a file's turns replace their rows (`put_evidence`,
`put_appearances`), its deleted contents drop them (`forget`), cluster merges rename them
(`rename_clusters`, which also carries a person's placement and name to the cluster that absorbed its
cluster). Every operation is one transaction on the store's
thread (`SqliteDb`), never on the event loop.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from orchestrator.identities import FACE_PREFIX, VOICE_PREFIX, Identities, Link, is_voice
from orchestrator.links import EVIDENCE_CHUNKS, MIN_CONFIDENCE, MIN_EVIDENCE_S, Pair, compute_links
from orchestrator.sqlite_db import SqliteDb

_SCHEMA = """
CREATE TABLE IF NOT EXISTS persons (
    collection TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    collection TEXT NOT NULL, cluster TEXT NOT NULL, person TEXT NOT NULL,
    PRIMARY KEY (collection, cluster)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejections (
    collection TEXT NOT NULL, voice TEXT NOT NULL, face TEXT NOT NULL,
    PRIMARY KEY (collection, voice, face)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS links (
    collection TEXT NOT NULL, voice TEXT NOT NULL, face TEXT NOT NULL,
    confidence REAL NOT NULL, evidence REAL NOT NULL, chunks TEXT NOT NULL,
    PRIMARY KEY (collection, voice)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evidence (
    collection TEXT NOT NULL, turn TEXT NOT NULL, face TEXT NOT NULL, voice TEXT NOT NULL,
    content_hash TEXT NOT NULL, chunk_id TEXT NOT NULL, weight REAL NOT NULL,
    PRIMARY KEY (collection, turn, face)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS evidence_content ON evidence (collection, content_hash);
CREATE INDEX IF NOT EXISTS evidence_pair ON evidence (collection, voice, face);
CREATE INDEX IF NOT EXISTS evidence_face ON evidence (collection, face);
CREATE TABLE IF NOT EXISTS appearances (
    collection TEXT NOT NULL, member TEXT NOT NULL, cluster TEXT NOT NULL, content_hash TEXT NOT NULL,
    chunk_id TEXT NOT NULL, start_s REAL NOT NULL, end_s REAL NOT NULL,
    PRIMARY KEY (collection, member)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS appearances_cluster
    ON appearances (collection, cluster, content_hash, start_s, chunk_id, end_s);
CREATE INDEX IF NOT EXISTS appearances_content ON appearances (collection, content_hash);
CREATE TABLE IF NOT EXISTS history (
    collection TEXT NOT NULL, seq INTEGER NOT NULL, action TEXT NOT NULL, person TEXT NOT NULL,
    undo TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (collection, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions (
    collection TEXT PRIMARY KEY, version INTEGER NOT NULL
) WITHOUT ROWID;
"""

HISTORY_DEPTH = 100  # undo steps kept per collection


class NothingToUndoError(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class EvidenceRow:
    """One speaker turn's evidence: `face` '' holds the turn's duration (its voice's speaking time)."""

    turn: str  # the voice member's id (people.py): a re-analysed turn replaces its rows
    face: str
    voice: str
    content_hash: str
    chunk_id: str
    weight: float


@dataclass(frozen=True, slots=True)
class Appearance:
    """One face (track) or speaker turn of a cluster: the companion point's id, where and when."""

    member: str
    cluster: str
    content_hash: str
    chunk_id: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class ClusterCount:
    cluster: str
    count: int  # faces (sightings) or turns
    seconds: float  # summed durations: a face's time on screen, a voice's speaking time


@dataclass(frozen=True, slots=True)
class PersonCount:
    """A person's counts over all its clusters (a chunk where its face and its voice both are counts once),
    and where it is first seen (faces first) or heard."""

    person: str
    chunks: int
    media: int
    speaking_s: float
    first_chunk: str
    first_start_s: float


@dataclass(frozen=True, slots=True)
class _ClusterRow:
    count: ClusterCount
    chunks: int
    media: int
    first: tuple[str, float, str]  # (content hash, start, chunk) of the cluster's first file


@dataclass(frozen=True, slots=True)
class Undone:
    action: str
    person: str


class PeopleStore:
    def __init__(self, path: Path) -> None:
        self._db = SqliteDb(path, _SCHEMA, "people-store")
        # Per collection: how many writes of appearances this process made, and the cluster aggregate of
        # that moment (this process is the store's only writer).
        self._written: dict[str, int] = {}
        self._cache: dict[str, tuple[int, list[_ClusterRow]]] = {}

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    # --- reads -------------------------------------------------------------------------------------------

    async def version(self, collection: str) -> int:
        return await self._db.run(self._version, collection)

    def _version(self, collection: str) -> int:
        row = self._db.conn.execute(
            "SELECT version FROM versions WHERE collection=?", (collection,)
        ).fetchone()
        return int(row[0]) if row else 0

    async def identities(self, collection: str) -> Identities:
        return await self._db.run(self._identities, collection)

    def _identities(self, collection: str) -> Identities:
        conn = self._db.conn
        ids = Identities()
        ids.members = dict(
            conn.execute("SELECT cluster, person FROM members WHERE collection=?", (collection,))
        )
        ids.names = dict(conn.execute("SELECT id, name FROM persons WHERE collection=?", (collection,)))
        for voice, face, confidence, evidence, chunks in conn.execute(
            "SELECT voice, face, confidence, evidence, chunks FROM links WHERE collection=?", (collection,)
        ):
            ids.links[voice] = Link(voice, face, confidence, evidence, tuple(orjson.loads(chunks)))
        return ids

    async def speaking_seconds(self, collection: str) -> dict[str, float]:
        """Each voice cluster's speaking time (the turns' durations)."""

        def read() -> dict[str, float]:
            return {
                v: float(s)
                for v, s in self._db.conn.execute(
                    "SELECT voice, SUM(weight) FROM evidence WHERE collection=? AND face='' GROUP BY voice",
                    (collection,),
                )
            }

        return await self._db.run(read)

    async def counts(self, collection: str, ids: Identities) -> tuple[list[ClusterCount], list[PersonCount]]:
        """Every cluster's counts and every person's (clusters grouped by `ids`). The per-cluster aggregate is
        one index-only pass (~2.7 s per million faces and turns on the build machine), kept until a job
        writes or forgets appearances; a person of several clusters counts shared chunks once (SQL over
        just their rows)."""
        return await self._db.run(self._counts, collection, ids)

    def _cluster_rows(self, collection: str) -> list[_ClusterRow]:
        written = self._written.get(collection, 0)
        cached = self._cache.get(collection)
        if cached is not None and cached[0] == written:
            return cached[1]
        rows = [
            _ClusterRow(
                ClusterCount(c, int(n), float(s)), int(chunks), int(media), (str(h), float(a), str(k))
            )
            for c, n, chunks, media, s, h, a, k in self._db.conn.execute(
                "SELECT cluster, COUNT(*), COUNT(DISTINCT chunk_id), COUNT(DISTINCT content_hash), "
                "SUM(end_s - start_s), MIN(content_hash), start_s, chunk_id "  # bare columns: MIN's row
                "FROM appearances WHERE collection=? GROUP BY cluster ORDER BY cluster",
                (collection,),
            )
        ]
        self._cache[collection] = (written, rows)
        return rows

    def _counts(self, collection: str, ids: Identities) -> tuple[list[ClusterCount], list[PersonCount]]:
        conn = self._db.conn
        rows = self._cluster_rows(collection)
        groups: dict[str, list[_ClusterRow]] = {}
        for row in rows:
            groups.setdefault(ids.person_of(row.count.cluster), []).append(row)
        shared = {person: group for person, group in groups.items() if len(group) > 1}
        union: dict[str, tuple[int, int]] = {}
        if shared:
            with conn:
                conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS person_of (cluster TEXT PRIMARY KEY, person TEXT)"
                )
                conn.execute("DELETE FROM person_of")
                conn.executemany(
                    "INSERT INTO person_of VALUES (?, ?)",
                    [(r.count.cluster, person) for person, group in shared.items() for r in group],
                )
            for person, chunks, media in conn.execute(
                "SELECT p.person, COUNT(DISTINCT a.chunk_id), COUNT(DISTINCT a.content_hash) "
                "FROM temp.person_of p JOIN appearances a ON a.collection = ? AND a.cluster = p.cluster "
                "GROUP BY p.person",
                (collection,),
            ):
                union[person] = (int(chunks), int(media))
        people = []
        for person, group in groups.items():
            chunks, media = union.get(person, (group[0].chunks, group[0].media))
            faces = [r for r in group if not is_voice(r.count.cluster)]
            _, start, chunk = min(r.first for r in (faces or group))
            speaking = sum(r.count.seconds for r in group if is_voice(r.count.cluster))
            people.append(PersonCount(person, chunks, media, speaking, chunk, start))
        return [r.count for r in rows], people

    async def heard_together(self, collection: str, clusters: Sequence[str]) -> set[frozenset[str]]:
        """The pairs of ``clusters`` (voice clusters) with turns in one chunk: two speakers the diarizer
        told apart there, so two people (`PeopleIndex.merge` never joins them)."""

        def read() -> set[frozenset[str]]:
            wanted = orjson.dumps(sorted(set(clusters))).decode()
            rows = self._db.conn.execute(
                """SELECT DISTINCT a.cluster, b.cluster FROM appearances a
                   JOIN appearances b ON b.collection = a.collection AND b.content_hash = a.content_hash
                        AND b.chunk_id = a.chunk_id AND b.cluster > a.cluster
                   WHERE a.collection = ? AND a.cluster IN (SELECT value FROM json_each(?))
                        AND b.cluster IN (SELECT value FROM json_each(?))""",
                (collection, wanted, wanted),
            )
            return {frozenset(pair) for pair in rows}

        return await self._db.run(read)

    # --- what jobs write ---------------------------------------------------------------------------------

    async def put_appearances(self, collection: str, rows: Sequence[Appearance]) -> None:
        """The faces or turns a job stored (a re-analysed one replaces its row: same member id)."""

        def write() -> None:
            conn = self._db.conn
            with conn:
                self._wrote(collection)
                conn.executemany(
                    "INSERT OR REPLACE INTO appearances VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (collection, r.member, r.cluster, r.content_hash, r.chunk_id, r.start_s, r.end_s)
                        for r in rows
                    ],
                )

        await self._db.run(write)

    async def put_evidence(self, collection: str, turns: Sequence[str], rows: Sequence[EvidenceRow]) -> None:
        """Replace these turns' evidence (a re-analysed turn drops its old faces)."""

        def write() -> None:
            conn = self._db.conn
            with conn:
                conn.executemany(
                    "DELETE FROM evidence WHERE collection=? AND turn=?", [(collection, t) for t in turns]
                )
                conn.executemany(
                    "INSERT OR REPLACE INTO evidence VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (collection, r.turn, r.face, r.voice, r.content_hash, r.chunk_id, r.weight)
                        for r in rows
                    ],
                )

        await self._db.run(write)

    async def forget(self, collection: str, content_hashes: Sequence[str]) -> None:
        def write() -> None:
            conn = self._db.conn
            with conn:
                self._wrote(collection)
                for table in ("evidence", "appearances"):
                    conn.executemany(
                        f"DELETE FROM {table} WHERE collection=? AND content_hash=?",
                        [(collection, h) for h in content_hashes],
                    )

        await self._db.run(write)

    async def rename_clusters(self, collection: str, renames: dict[str, str]) -> None:
        """Clusters a job merged (`dropped -> kept`): evidence, links and rejections follow; a placement or a
        name that belonged to the dropped cluster passes to the kept one when that has none of its own."""
        await self._db.run(self._rename_clusters, collection, renames)

    def _rename_clusters(self, collection: str, renames: dict[str, str]) -> None:
        conn = self._db.conn
        self._wrote(collection)
        with conn:
            for dropped, kept in sorted(renames.items()):
                column = "voice" if is_voice(dropped) else "face"
                conn.execute(
                    f"UPDATE OR REPLACE evidence SET {column}=? WHERE collection=? AND {column}=?",
                    (kept, collection, dropped),
                )
                conn.execute(
                    "UPDATE appearances SET cluster=? WHERE collection=? AND cluster=?",
                    (kept, collection, dropped),
                )
                conn.execute(
                    f"UPDATE OR IGNORE rejections SET {column}=? WHERE collection=? AND {column}=?",
                    (kept, collection, dropped),
                )
                conn.execute(
                    f"DELETE FROM rejections WHERE collection=? AND {column}=?", (collection, dropped)
                )
                person = self._member(collection, dropped)
                conn.execute("DELETE FROM members WHERE collection=? AND cluster=?", (collection, dropped))
                meaningful = (
                    person != dropped
                    or self._named(collection, person)
                    or self._has_members(collection, person)
                )
                if meaningful and self._member(collection, kept) == kept and person != kept:
                    conn.execute(
                        "INSERT OR REPLACE INTO members VALUES (?, ?, ?)", (collection, kept, person)
                    )
            self._bump(collection)

    # --- links -------------------------------------------------------------------------------------------

    async def refresh_links(
        self, collection: str, min_evidence: float = MIN_EVIDENCE_S, min_confidence: float = MIN_CONFIDENCE
    ) -> set[str]:
        """Recompute the links from the evidence; the voices whose link changed (their people did)."""
        return await self._db.run(self._refresh_links, collection, min_evidence, min_confidence)

    def _refresh_links(self, collection: str, min_evidence: float, min_confidence: float) -> set[str]:
        conn = self._db.conn
        speaking: dict[str, float] = {}
        pairs: list[tuple[str, str, float]] = []
        for voice, face, weight in conn.execute(
            "SELECT voice, face, SUM(weight) FROM evidence WHERE collection=? GROUP BY voice, face "
            "ORDER BY voice, face",
            (collection,),
        ):
            if face == "":
                speaking[voice] = float(weight)
            else:
                pairs.append((voice, face, float(weight)))
        rejected = {
            (v, f)
            for v, f in conn.execute("SELECT voice, face FROM rejections WHERE collection=?", (collection,))
        }
        found = compute_links(
            (Pair(v, f, w) for v, f, w in pairs), speaking, rejected, min_evidence, min_confidence
        )
        found = {v: self._with_chunks(collection, link) for v, link in found.items()}
        old = self._identities(collection).links
        changed = {
            v
            for v in old.keys() | found.keys()
            if (old.get(v) and old[v].face) != (found.get(v) and found[v].face)
        }
        with conn:
            conn.execute("DELETE FROM links WHERE collection=?", (collection,))
            conn.executemany(
                "INSERT INTO links VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        collection,
                        link.voice,
                        link.face,
                        link.confidence,
                        link.evidence,
                        orjson.dumps(link.chunks),
                    )
                    for link in found.values()
                ],
            )
            if changed:
                self._bump(collection)
        return changed

    def _with_chunks(self, collection: str, link: Link) -> Link:
        rows = self._db.conn.execute(
            "SELECT chunk_id, SUM(weight) AS w FROM evidence WHERE collection=? AND voice=? AND face=? "
            "GROUP BY chunk_id ORDER BY w DESC, chunk_id LIMIT ?",
            (collection, link.voice, link.face, EVIDENCE_CHUNKS),
        )
        return Link(link.voice, link.face, link.confidence, link.evidence, tuple(r[0] for r in rows))

    # --- what users do -----------------------------------------------------------------------------------

    async def rename(self, collection: str, person: str, name: str | None) -> None:
        def write() -> None:
            conn = self._db.conn
            with conn:
                self._record(collection, "rename", person, names=[person])
                self._set_name(collection, person, name)
                self._bump(collection)

        await self._db.run(write)

    async def merge(
        self, collection: str, target: str, clusters: Sequence[str], others: Sequence[str]
    ) -> None:
        """Place `clusters` (every cluster of the `others` people) in `target`. The target keeps its name; an
        unnamed target takes the first named other's name; the others' names go."""

        def write() -> None:
            conn = self._db.conn
            with conn:
                self._record(collection, "merge", target, clusters=clusters, names=[target, *others])
                names = dict(conn.execute("SELECT id, name FROM persons WHERE collection=?", (collection,)))
                if target not in names:
                    inherited = next((names[o] for o in others if o in names), None)
                    self._set_name(collection, target, inherited)
                for other in others:
                    if other != target:
                        self._set_name(collection, other, None)
                conn.executemany(
                    "INSERT OR REPLACE INTO members VALUES (?, ?, ?)",
                    [(collection, c, target) for c in clusters],
                )
                self._bump(collection)

        await self._db.run(write)

    async def split(self, collection: str, person: str, clusters: Sequence[str], ids: Identities) -> str:
        """Move `clusters` out of `person` into a new person (its id returned). A voice that was there by
        an automatic link to one of the person's faces is remembered as "not this person" (never linked
        again)."""

        def write() -> str:
            conn = self._db.conn
            first = sorted(clusters, key=lambda c: (is_voice(c), c))[0]
            new = f"{VOICE_PREFIX if is_voice(first) else FACE_PREFIX}{uuid.uuid4().hex[:12]}"
            rejected = [
                (collection, c, ids.links[c].face)
                for c in clusters
                if c in ids.links and c not in ids.members and ids.person_of(ids.links[c].face) == person
            ]
            with conn:
                self._record(
                    collection, "split", person, clusters=clusters, rejections=[r[1:] for r in rejected]
                )
                conn.executemany("INSERT OR IGNORE INTO rejections VALUES (?, ?, ?)", rejected)
                conn.executemany(
                    "INSERT OR REPLACE INTO members VALUES (?, ?, ?)",
                    [(collection, c, new) for c in clusters],
                )
                self._bump(collection)
            return new

        return await self._db.run(write)

    async def undo(self, collection: str) -> Undone:
        """Put back the rows the last change replaced. NothingToUndoError when there is none."""

        def write() -> Undone:
            conn = self._db.conn
            row = conn.execute(
                "SELECT seq, action, person, undo FROM history WHERE collection=? ORDER BY seq DESC LIMIT 1",
                (collection,),
            ).fetchone()
            if row is None:
                raise NothingToUndoError(collection)
            seq, action, person, undo = row
            saved: dict[str, Any] = orjson.loads(undo)
            with conn:
                for cluster, placed in saved["members"].items():
                    conn.execute(
                        "DELETE FROM members WHERE collection=? AND cluster=?", (collection, cluster)
                    )
                    if placed is not None:
                        conn.execute("INSERT INTO members VALUES (?, ?, ?)", (collection, cluster, placed))
                for pid, name in saved["names"].items():
                    self._set_name(collection, pid, name)
                conn.executemany(
                    "DELETE FROM rejections WHERE collection=? AND voice=? AND face=?",
                    [(collection, v, f) for v, f in saved["rejections"]],
                )
                conn.execute("DELETE FROM history WHERE collection=? AND seq=?", (collection, seq))
                self._bump(collection)
            return Undone(action, person)

        return await self._db.run(write)

    async def rejections(self, collection: str) -> set[tuple[str, str]]:
        def read() -> set[tuple[str, str]]:
            return set(
                self._db.conn.execute("SELECT voice, face FROM rejections WHERE collection=?", (collection,))
            )

        return await self._db.run(read)

    async def copy(self, source: str, target: str) -> None:
        """A new version of a collection starts with the old one's names, placements and rejections (its
        clusters are re-found under the same ids when the faces and voices are the same)."""

        def write() -> None:
            conn = self._db.conn
            with conn:
                for table in ("persons", "members", "rejections"):
                    columns = _COLUMNS[table]
                    conn.execute(
                        f"INSERT OR IGNORE INTO {table} SELECT ?, {columns} FROM {table} WHERE collection=?",
                        (target, source),
                    )
                self._bump(target)

        await self._db.run(write)

    async def drop(self, collection: str) -> None:
        """Everything of a deleted collection version."""

        def write() -> None:
            conn = self._db.conn
            with conn:
                self._wrote(collection)
                for table in _TABLES:
                    conn.execute(f"DELETE FROM {table} WHERE collection=?", (collection,))

        await self._db.run(write)

    # --- helpers (on the store's thread) -----------------------------------------------------------------

    def _member(self, collection: str, cluster: str) -> str:
        row = self._db.conn.execute(
            "SELECT person FROM members WHERE collection=? AND cluster=?", (collection, cluster)
        ).fetchone()
        return str(row[0]) if row else cluster

    def _named(self, collection: str, person: str) -> bool:
        return (
            self._db.conn.execute(
                "SELECT 1 FROM persons WHERE collection=? AND id=?", (collection, person)
            ).fetchone()
            is not None
        )

    def _has_members(self, collection: str, person: str) -> bool:
        return (
            self._db.conn.execute(
                "SELECT 1 FROM members WHERE collection=? AND person=? LIMIT 1", (collection, person)
            ).fetchone()
            is not None
        )

    def _set_name(self, collection: str, person: str, name: str | None) -> None:
        conn = self._db.conn
        if name:
            conn.execute("INSERT OR REPLACE INTO persons VALUES (?, ?, ?)", (collection, person, name))
        else:
            conn.execute("DELETE FROM persons WHERE collection=? AND id=?", (collection, person))

    def _record(
        self,
        collection: str,
        action: str,
        person: str,
        clusters: Iterable[str] = (),
        names: Iterable[str] = (),
        rejections: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Save the rows this change will replace (inside the change's transaction)."""
        conn = self._db.conn
        members: dict[str, str | None] = {}
        for cluster in clusters:
            row = conn.execute(
                "SELECT person FROM members WHERE collection=? AND cluster=?", (collection, cluster)
            ).fetchone()
            members[cluster] = row[0] if row else None
        saved_names: dict[str, str | None] = {}
        for pid in names:
            row = conn.execute(
                "SELECT name FROM persons WHERE collection=? AND id=?", (collection, pid)
            ).fetchone()
            saved_names[pid] = row[0] if row else None
        new = [
            r
            for r in rejections
            if conn.execute(
                "SELECT 1 FROM rejections WHERE collection=? AND voice=? AND face=?", (collection, *r)
            ).fetchone()
            is None
        ]
        seq = conn.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM history WHERE collection=?", (collection,)
        ).fetchone()[0]
        undo = orjson.dumps({"members": members, "names": saved_names, "rejections": new})
        conn.execute(
            "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)",
            (collection, seq, action, person, undo, time.time()),
        )
        conn.execute("DELETE FROM history WHERE collection=? AND seq<=?", (collection, seq - HISTORY_DEPTH))

    def _wrote(self, collection: str) -> None:
        self._written[collection] = self._written.get(collection, 0) + 1

    def _bump(self, collection: str) -> None:
        self._db.conn.execute(
            "INSERT INTO versions VALUES (?, 1) ON CONFLICT(collection) DO UPDATE SET version=version+1",
            (collection,),
        )


_TABLES = ("persons", "members", "rejections", "links", "evidence", "appearances", "history", "versions")
_COLUMNS = {"persons": "id, name", "members": "cluster, person", "rejections": "voice, face"}
