"""Names, merges, splits, undo, evidence and links in the people store (real SQLite), and how identities
resolve clusters to people (identities.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.identities import Identities, Link, people_fields
from orchestrator.people_store import Appearance, EvidenceRow, NothingToUndoError, PeopleStore

C = "coll"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[PeopleStore]:
    s = PeopleStore(tmp_path / "people.sqlite3")
    await s.open()
    yield s
    await s.close()


def _turn(turn: str, voice: str, seconds: float, faces: list[str], chunk: str = "c1") -> list[EvidenceRow]:
    rows = [EvidenceRow(turn, "", voice, "h1", chunk, seconds)]
    rows += [EvidenceRow(turn, f, voice, "h1", chunk, seconds / len(faces) ** 2) for f in faces]
    return rows


async def _evidence(store: PeopleStore, *turns: list[EvidenceRow]) -> None:
    rows = [r for t in turns for r in t]
    await store.put_evidence(C, sorted({r.turn for r in rows}), rows)


def test_identities_resolve_placements_then_links_then_the_cluster_itself() -> None:
    ids = Identities(
        members={"person-b": "person-a"},
        links={"voice-x": Link("voice-x", "person-b", 0.9, 10.0, ())},
        names={"person-a": "Ana"},
    )
    assert ids.person_of("person-a") == "person-a"
    assert ids.person_of("person-b") == "person-a"  # merged
    assert ids.person_of("voice-x") == "person-a"  # linked to a merged face
    assert ids.person_of("voice-y") == "voice-y"
    assert ids.resolve("ana") == ["person-a"] and ids.resolve("Nobody") == []
    assert ids.resolve("voice-y") == ["voice-y"]
    fields = people_fields(
        {
            "faces": [{"cluster": "person-b"}],
            "speakers": [{"voice": "voice-x", "start_s": 0.0}, {"voice": "voice-y"}, {"voice": None}],
        },
        ids,
    )
    assert fields["people"] == ["person-a", "voice-y"] and fields["speaking"] == ["person-a", "voice-y"]
    assert fields["clusters"] == ["person-b", "voice-x", "voice-y"] and fields["names"] == ["Ana"]
    assert fields["faces"][0]["name"] == "Ana" and fields["speakers"][2]["person"] is None


async def test_links_follow_the_evidence_and_rejections(store: PeopleStore) -> None:
    await _evidence(
        store,
        _turn("t1", "voice-a", 6.0, ["person-a"]),
        _turn("t2", "voice-b", 5.0, ["person-b"], "c2"),
        _turn("t3", "voice-c", 30.0, []),  # a voice-over
    )
    assert await store.refresh_links(C) == {"voice-a", "voice-b"}
    ids = await store.identities(C)
    assert {v: link.face for v, link in ids.links.items()} == {"voice-a": "person-a", "voice-b": "person-b"}
    assert ids.links["voice-a"].chunks == ("c1",)
    assert await store.refresh_links(C) == set()  # the same evidence: the same links, nothing changed
    assert (await store.speaking_seconds(C))["voice-c"] == 30.0

    # A file analysed again replaces its turns' rows; a deleted content takes them away.
    await _evidence(store, _turn("t1", "voice-a", 3.0, ["person-b"]))
    await store.refresh_links(C)
    assert "voice-a" not in (await store.identities(C)).links  # person-b's own voice is stronger
    await store.forget(C, ["h1"])
    assert await store.refresh_links(C) == {"voice-b"}


async def test_rename_merge_split_and_undo(store: PeopleStore) -> None:
    await _evidence(store, _turn("t1", "voice-a", 6.0, ["person-a"]))
    await store.refresh_links(C)
    await store.rename(C, "person-a", "Ana")
    await store.merge(C, "person-c", ["person-a", "voice-a"], ["person-a"])
    ids = await store.identities(C)
    assert ids.person_of("person-a") == ids.person_of("voice-a") == "person-c"
    assert ids.names == {"person-c": "Ana"}  # an unnamed target takes the merged person's name

    undone = await store.undo(C)
    assert (undone.action, undone.person) == ("merge", "person-c")
    ids = await store.identities(C)
    assert ids.person_of("person-a") == ids.person_of("voice-a") == "person-a" and ids.names == {
        "person-a": "Ana"
    }

    # Splitting the automatically linked voice out: a new person, and that link is never made again.
    new = await store.split(C, "person-a", ["voice-a"], ids)
    assert new.startswith("voice-") and (await store.identities(C)).person_of("voice-a") == new
    assert await store.rejections(C) == {("voice-a", "person-a")}
    await store.refresh_links(C)
    assert "voice-a" not in (await store.identities(C)).links
    await store.undo(C)  # the split: placement and rejection go
    assert await store.rejections(C) == set()
    await store.refresh_links(C)
    assert (await store.identities(C)).person_of("voice-a") == "person-a"
    await store.undo(C)  # the rename
    assert (await store.identities(C)).names == {}
    with pytest.raises(NothingToUndoError):
        await store.undo(C)


async def test_a_named_person_keeps_its_name_when_a_job_merges_its_cluster_away(store: PeopleStore) -> None:
    await store.rename(C, "person-b", "Ben")
    await store.rename_clusters(C, {"person-b": "person-a"})  # a bridging face joined the two clusters
    ids = await store.identities(C)
    assert ids.person_of("person-a") == "person-b" and ids.name_of(ids.person_of("person-a")) == "Ben"


async def test_a_new_version_starts_with_the_old_ones_people(store: PeopleStore) -> None:
    await store.rename(C, "person-a", "Ana")
    await store.copy(C, "coll_v2")
    assert (await store.identities("coll_v2")).names == {"person-a": "Ana"}
    await store.drop(C)
    assert (await store.identities(C)).names == {}


async def test_counts_group_clusters_into_people_counting_each_chunk_once(store: PeopleStore) -> None:
    """A person whose face and linked voice share a chunk counts it once; first seen by its face."""
    from orchestrator.people_store import Appearance

    await store.put_appearances(
        C,
        [
            Appearance("m1", "person-a", "h1", "c1", 0.0, 4.0),
            Appearance("m2", "person-a", "h2", "c2", 2.0, 2.0),
            Appearance("m3", "voice-a", "h1", "c1", 0.5, 3.5),
            Appearance("m4", "voice-a", "h0", "c0", 9.0, 10.0),  # heard before the face is first seen
            Appearance("m5", "voice-z", "h1", "c1", 5.0, 6.0),
        ],
    )
    await _evidence(store, _turn("t1", "voice-a", 3.0, ["person-a"]))
    await store.refresh_links(C)
    ids = await store.identities(C)
    clusters, people = await store.counts(C, ids)
    assert [(c.cluster, c.count, c.seconds) for c in clusters] == [
        ("person-a", 2, 4.0),  # on screen
        ("voice-a", 2, 4.0),
        ("voice-z", 1, 1.0),
    ]
    by_id = {p.person: p for p in people}
    assert set(by_id) == {"person-a", "voice-z"}
    a = by_id["person-a"]
    assert (a.chunks, a.media, a.speaking_s) == (3, 3, 4.0)
    assert (a.first_chunk, a.first_start_s) == ("c1", 0.0)  # a face first, even if a voice came earlier
    await store.rename_clusters(C, {"voice-z": "voice-a"})
    await store.forget(C, ["h2"])
    clusters, _ = await store.counts(C, await store.identities(C))
    assert [(c.cluster, c.count) for c in clusters] == [("person-a", 1), ("voice-a", 3)]


async def test_voices_heard_in_one_chunk_are_told_apart(store: PeopleStore) -> None:
    rows = [
        Appearance("m1", "voice-a", "h1", "c1", 0.0, 4.0),
        Appearance("m2", "voice-b", "h1", "c1", 4.0, 9.0),  # a and b speak in chunk c1
        Appearance("m3", "voice-b", "h1", "c2", 15.0, 20.0),
        Appearance("m4", "voice-c", "h2", "c3", 0.0, 5.0),
        Appearance("m5", "voice-d", "h1", "c2", 20.0, 25.0),  # b and d in c2
        Appearance("m6", "person-x", "h1", "c1", 0.0, 9.0),  # a face there: not asked about
    ]
    await store.put_appearances("media", rows)
    together = await store.heard_together("media", ["voice-a", "voice-b", "voice-c", "voice-d"])
    assert together == {frozenset({"voice-a", "voice-b"}), frozenset({"voice-b", "voice-d"})}
    # Only pairs among the clusters asked about; another collection is another world.
    assert await store.heard_together("media", ["voice-a", "voice-c"]) == set()
    assert await store.heard_together("other", ["voice-a", "voice-b"]) == set()
