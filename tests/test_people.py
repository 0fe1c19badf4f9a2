"""Face and voice clusters in companion collections, on the real embedded engine (Qdrant Edge)."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.clients.vectors import (
    CollectionSpec,
    CollectionSpecMismatchError,
    PointRecord,
    SearchFilter,
)
from orchestrator.clients.vectors_edge import EdgeVectorStore
from orchestrator.file_index import FileIndex
from orchestrator.identities import people_fields
from orchestrator.ids import point_id
from orchestrator.links import turn_weights
from orchestrator.people import (
    ChunkPeople,
    PeopleIndex,
    check_vector_sizes,
    companions,
    on_screen_faces,
)
from orchestrator.people_store import PeopleStore
from orchestrator.people_sync import renamed_clusters


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EdgeVectorStore]:
    s = EdgeVectorStore(tmp_path / "edge")
    await s.ensure_collection(
        "media", CollectionSpec(dense={"text": 4}, keyword_indexes=("people", "clusters"))
    )
    yield s
    await s.close()


@pytest.fixture
async def people_store(tmp_path: Path) -> AsyncIterator[PeopleStore]:
    s = PeopleStore(tmp_path / "people.sqlite3")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def scratch(tmp_path: Path) -> AsyncIterator[FileIndex]:
    """The file index whose TEMP rows hold a job's faces and voices until `merge`."""
    index = FileIndex(tmp_path / "index.sqlite3")
    await index.open()
    yield index
    await index.close()


def _near(base: list[float], noise: float, rng: random.Random) -> list[float]:
    v = [x + rng.gauss(0, noise) for x in base]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _identity(seed: int, dim: int) -> list[float]:
    rng = random.Random(seed)
    return _near([rng.gauss(0, 1) for _ in range(dim)], 0.0, rng)


def _file(content_hash: str, chunks: list[tuple[list[list[float]], list[list[float]]]]) -> list[ChunkPeople]:
    """One video's chunks: each chunk's face tracks and speaker turns (one per vector given)."""
    return [
        ChunkPeople(
            content_hash,
            i,
            [
                {
                    "box": [0, 0, 90, 90],
                    "score": 0.9,
                    "embedding": f,
                    "start_s": i * 15.0,
                    "end_s": i * 15.0 + 5,
                }
                for f in faces
            ],
            [{"start_s": i * 15.0, "end_s": i * 15.0 + 3, "speaker": "S0", "embedding": v} for v in voices],
        )
        for i, (faces, voices) in enumerate(chunks)
    ]


async def test_faces_and_voices_cluster_by_identity(
    store: EdgeVectorStore, scratch: FileIndex, people_store: PeopleStore
) -> None:
    rng = random.Random(1)
    anna, ben = _identity(1, 128), _identity(2, 128)
    low, high = _identity(3, 256), _identity(4, 256)
    people = PeopleIndex(store, "media", 0.45, 0.8, scratch, "job", people_store)
    first = _file(
        "a" * 8,
        [
            ([_near(anna, 0.02, rng)], [_near(low, 0.01, rng)]),
            ([_near(ben, 0.02, rng), _near(anna, 0.02, rng)], [_near(high, 0.01, rng)]),
        ],
    )
    assigned = await people.assign(first)
    c0, c1 = assigned[("a" * 8, 0)], assigned[("a" * 8, 1)]
    assert c0.faces[0] == c1.faces[1] != c1.faces[0]
    assert c0.voices[0] != c1.voices[0]
    assert c0.faces[0].startswith("person-") and c0.voices[0].startswith("voice-")
    assert c1.on_screen == [sorted([c1.faces[0], c1.faces[1]])]  # both faces on screen while it speaks

    # A later file (another batch, read back from the store) finds the same clusters.
    second = await people.assign(_file("b" * 8, [([_near(ben, 0.02, rng)], [_near(low, 0.01, rng)])]))
    assert second[("b" * 8, 0)].faces == [c1.faces[0]]
    assert second[("b" * 8, 0)].voices == [c0.voices[0]]
    faces, voices = companions("media")
    assert await store.count(faces) == 4 and await store.count(voices) == 3

    # Writing the same file again (a re-run) re-finds its own points: same clusters, no new points.
    again = await people.assign(first)
    assert again[("a" * 8, 1)].faces == c1.faces
    assert await store.count(faces) == 4

    await people.forget(["a" * 8])
    assert await store.count(faces) == 1 and await store.count(voices) == 1


async def test_a_job_with_another_face_or_voice_backend_is_refused_at_its_start(
    store: EdgeVectorStore, scratch: FileIndex, people_store: PeopleStore
) -> None:
    models: dict[str, dict[str, Any]] = {
        "faces": {"name": "yunet+sface", "vector_size": 128},
        "speakers": {"name": "resemblyzer", "vector_size": 256},
    }
    await check_vector_sizes(store, "media", models)  # no companions yet: nothing to compare
    people = PeopleIndex(store, "media", 0.45, 0.8, scratch, "job", people_store)
    await people.assign(_file("a" * 8, [([_identity(1, 128)], [_identity(3, 256)])]))
    await check_vector_sizes(store, "media", models)  # the same backends
    await check_vector_sizes(store, "media", {"faces": {"name": "insightface", "vector_size": None}})
    insightface = {**models, "faces": {"name": "insightface", "vector_size": 512}}
    with pytest.raises(
        CollectionSpecMismatchError,
        match=r"'media_faces' holds 128-d face vectors.*\(insightface\) gives 512-d",
    ):
        await check_vector_sizes(store, "media", insightface)
    pyannote = {**models, "speakers": {"name": "pyannote", "vector_size": 32}}
    with pytest.raises(CollectionSpecMismatchError, match=r"'media_voices' holds 256-d voice vectors"):
        await check_vector_sizes(store, "media", pyannote)
    await check_vector_sizes(store, "other", insightface)  # another collection starts afresh


async def test_merge_joins_clusters_a_later_face_bridges(
    store: EdgeVectorStore, scratch: FileIndex, people_store: PeopleStore
) -> None:
    """Two faces far apart start two clusters; a face between them (close to both) links them."""
    people = PeopleIndex(store, "media", 0.7, 0.8, scratch, "job", people_store)
    left = _identity(5, 128)
    right_raw = [a + b for a, b in zip(left, _identity(6, 128), strict=True)]
    right = _near(right_raw, 0.0, random.Random(0))
    far = _near([2 * a - b for a, b in zip(right, left, strict=True)], 0.0, random.Random(0))
    # left ~ right (cos ~0.7); far is right reflected away from left: far ~ right, far !~ left.
    a = await people.assign(_file("c" * 8, [([left], [])]))
    b = await people.assign(_file("d" * 8, [([far], [])]))
    assert a[("c" * 8, 0)].faces != b[("d" * 8, 0)].faces
    cluster_a, cluster_b = a[("c" * 8, 0)].faces[0], b[("d" * 8, 0)].faces[0]
    chunk = point_id("d" * 8, 0)
    await store.upsert(
        "media",
        [
            PointRecord(
                chunk,
                {"text": [1.0, 0, 0, 0]},
                {},
                {
                    "clusters": [cluster_b],
                    "people": [cluster_b],
                    "faces": [{"cluster": cluster_b, "person": cluster_b}],
                    "speakers": [],
                },
            )
        ],
    )
    bridge = await people.assign(_file("e" * 8, [([right], [])]))
    assert bridge[("e" * 8, 0)].faces[0] in (cluster_a, cluster_b)
    merged = await people.merge()
    assert merged == 1
    keep = min(cluster_a, cluster_b)
    points, _ = await store.scroll(companions("media")[0], None, 10, None)
    assert {p.payload["cluster"] for p in points} == {keep}
    renamed = (await store.retrieve("media", [chunk]))[chunk]
    assert renamed["people"] == [keep] and renamed["faces"][0]["person"] == keep
    found, _ = await store.scroll("media", SearchFilter(match={"people": keep}), 10, None)
    assert [p.id for p in found] == [chunk]


def test_renamed_clusters() -> None:
    payload: dict[str, Any] = {
        "faces": [{"cluster": "person-b", "box": [1, 2, 3, 4]}, {"cluster": None}],
        "speakers": [{"voice": "voice-x", "on_screen": ["person-c", "person-b"]}],
    }
    out = renamed_clusters(payload, {"person-b": "person-a"})
    assert out["faces"] == [{"cluster": "person-a", "box": [1, 2, 3, 4]}, {"cluster": None}]
    assert out["speakers"] == [{"voice": "voice-x", "on_screen": ["person-a", "person-c"]}]


def test_on_screen_names_the_faces_seen_while_a_turn_is_spoken() -> None:
    faces = [
        {"start_s": 2.4, "end_s": 2.4},  # anna, keyframe during the first turn
        {"start_s": 7.2, "end_s": 12.0},  # ben, during the second and third
        {"start_s": 12.0, "end_s": 12.0},  # anna again, with ben, in the third
    ]
    turns = [{"start_s": 0.9, "end_s": 4.8}, {"start_s": 5.6, "end_s": 9.7}, {"start_s": 10.5, "end_s": 14.2}]
    # Without from_s/until_s (answers from before them): the keyframes' times widened by 1 s.
    seen = on_screen_faces(faces, turns, ["anna", "ben", "anna"])
    assert [sorted(s) for s in seen] == [["anna"], ["ben"], ["anna", "ben"]]
    assert seen[0] == {"anna": [(1.4, 3.4)]} and seen[1] == {"ben": [(6.2, 9.7)]}
    assert seen[2] == {"anna": [(11.0, 13.0)], "ben": [(10.5, 13.0)]}
    assert on_screen_faces(faces, turns, [None, None, None]) == [{}, {}, {}]


async def test_malformed_vectors_leave_their_face_or_turn_unclustered(
    store: EdgeVectorStore, scratch: FileIndex, people_store: PeopleStore
) -> None:
    """Nulls, NaN, another size (here: the companion holds 128-d faces), all zeros: no cluster for that
    face or turn, nothing of it stored; the others in the same chunk are clustered as usual."""
    people = PeopleIndex(store, "media", 0.45, 0.8, scratch, "job", people_store, face_dim=128, voice_dim=256)
    anna = _identity(1, 128)
    nan = float("nan")
    bad_faces: list[list[float]] = [
        [None] * 128,  # type: ignore[list-item]
        [nan] * 128,
        _identity(9, 129),
        [0.0] * 128,
        [*anna[:-1], float("inf")],
    ]
    chunk = ([*bad_faces, anna], [[nan] * 256, _identity(3, 256)])
    assigned = (await people.assign(_file("f" * 8, [chunk])))[("f" * 8, 0)]
    assert assigned.faces[:5] == [None] * 5 and assigned.faces[5] is not None
    assert assigned.voices[0] is None and assigned.voices[1] is not None
    faces, voices = companions("media")
    assert await store.count(faces) == 1 and await store.count(voices) == 1
    # A later batch with vectors of the companion's size clusters normally: the same person is found.
    again = await people.assign(_file("g" * 8, [([_near(anna, 0.02, random.Random(2))], [])]))
    assert again[("g" * 8, 0)].faces == [assigned.faces[5]]


def test_nearest_clusters_matches_the_pairwise_definition() -> None:
    """The numpy assignment gives what comparing every pair in order gives."""
    from orchestrator.people import Kind, nearest_clusters
    from orchestrator.pipeline.unify import cosine

    rng = random.Random(5)
    centres = [_identity(s, 32) for s in range(4)]
    vectors = [_near(centres[rng.randrange(4)], 0.3, rng) for _ in range(60)]
    ids = [f"{i:012d}" for i in range(60)]
    kind = Kind("face", "_faces", "person", 0.6)
    got = nearest_clusters(vectors, ids, [[] for _ in vectors], kind)
    expected: list[str] = []
    for i, v in enumerate(vectors):
        best, best_score = None, kind.threshold
        for j in range(i):
            score = cosine(v, vectors[j])
            if score > best_score or (best is None and score >= best_score):
                best, best_score = expected[j], score
        expected.append(best or f"person-{ids[i][:12]}")
    assert got == expected
    assert len(set(got)) < 60  # clusters formed


def test_two_speakers_of_one_chunk_never_share_a_voice_cluster() -> None:
    """Two similar voices (cosine 0.72, above the 0.70 threshold) that the diarizer told apart in one chunk
    stay two clusters; each voice found again in another chunk joins its own."""
    from orchestrator.people import Kind, nearest_clusters

    first = [1.0, 0.0, 0.0]
    second = [0.72, (1 - 0.72**2) ** 0.5, 0.0]
    later = [0.70, 0.714, 0.0]  # the second voice again: closer to it (0.99) than to the first (0.70)
    kind = Kind("voice", "_voices", "voice", 0.70)
    vectors, ids = [first, second, later], ["a" * 12, "b" * 12, "c" * 12]
    stored: list[list[Any]] = [[], [], []]
    assert len(set(nearest_clusters(vectors, ids, stored, kind))) == 1  # without the diarizer's word
    got = nearest_clusters(vectors, ids, stored, kind, speakers=[(0, "S0"), (0, "S1"), (1, "S0")])
    assert got[0] != got[1] and got[2] == got[1]
    # A sure match (>= SURE_SAME_VOICE) overrules the diarizer: one voice it split in two is one cluster.
    split = [0.9, (1 - 0.9**2) ** 0.5, 0.0]
    got = nearest_clusters([first, split], ids[:2], [[], []], kind, speakers=[(0, "S0"), (0, "S1")])
    assert got[0] == got[1]
    # The same speaker twice in one chunk (every turn carries its speaker's vector) is one cluster.
    again = nearest_clusters([first, first], ids[:2], [[], []], kind, speakers=[(0, "S0"), (0, "S0")])
    assert again[0] == again[1]


def test_join_clusters_takes_the_strongest_bridges_and_keeps_voices_heard_together_apart() -> None:
    from orchestrator.people import join_clusters

    bridges = {("voice-a", "voice-b"): 0.80, ("voice-b", "voice-c"): 0.75, ("voice-d", "voice-e"): 0.9}
    assert join_clusters(bridges, set()) == {"voice-b": "voice-a", "voice-c": "voice-a", "voice-e": "voice-d"}
    # a and c spoke in one chunk: b joins a (its stronger bridge), c stays itself.
    apart = {frozenset({"voice-a", "voice-c"})}
    assert join_clusters(bridges, apart) == {"voice-b": "voice-a", "voice-e": "voice-d"}
    # A sure bridge (>= SURE_SAME_VOICE, 0.85) is taken first (b and c), and then a, heard with c, stays out.
    sure = {**bridges, ("voice-b", "voice-c"): 0.9}
    assert join_clusters(sure, apart) == {"voice-c": "voice-b", "voice-e": "voice-d"}


async def test_a_batch_written_while_a_user_renames_follows_the_rename(
    store: EdgeVectorStore, scratch: FileIndex, people_store: PeopleStore
) -> None:
    """The batch was built with the snapshot from before the rename; after its write, settle() rewrites
    its people fields (the API's own rewrite may have run before these points existed)."""
    people = PeopleIndex(store, "media", 0.45, 0.8, scratch, "job", people_store)
    assigned = await people.assign(_file("a" * 8, [([_identity(1, 128)], [])]))
    cluster = assigned[("a" * 8, 0)].faces[0]
    assert cluster is not None
    ids = await people.identities()
    chunk = point_id("a" * 8, 0)
    payload = people_fields({"faces": [{"cluster": cluster}], "speakers": []}, ids)
    record = PointRecord(chunk, {"text": [1.0, 0, 0, 0]}, {}, payload)
    assert await people.settle([record]) == 0  # nothing changed since the snapshot
    await people_store.rename("media", cluster, "Anna")  # the API, between build and write
    await store.upsert("media", [record])
    assert await people.settle([record]) == 1
    assert (await store.retrieve("media", [chunk]))[chunk]["names"] == ["Anna"]


def test_a_face_seen_for_part_of_a_turn_counts_for_that_part() -> None:
    """A 10 s reading with a face on screen for 2 s of it: 2 s of evidence, not 10 (links.py)."""
    faces = [{"start_s": 4.0, "end_s": 4.0, "from_s": 3.0, "until_s": 5.0}]
    turns = [{"start_s": 0.0, "end_s": 10.0}, {"start_s": 6.0, "end_s": 8.0}]
    seen = on_screen_faces(faces, turns, ["anna"])
    assert seen == [{"anna": [(3.0, 5.0)]}, {}]
    assert turn_weights(seen[0]) == {"anna": 2.0}
