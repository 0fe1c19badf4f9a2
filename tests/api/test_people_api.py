"""People end to end (issue 15): real faces and voices, the real ML service, Qdrant Edge, HTTP over loopback.

Faces are three real photographs (the astronaut Eileen Collins, Grace Hopper, the cameraman); voices are the
two women of pyannote.audio's recorded sample conversation ("Diane" speaker90, "Sheila" speaker91; same
sex), plus a LibriVox reader (Debian's pocketsphinx-testdata, scripts/speech_corpus.py) for the voice-over.
The collection:

- talk.mp4: the astronaut on screen while Diane speaks, Grace Hopper while Sheila speaks, three turns each;
- duo.mp4: both faces on screen, Diane speaking;
- narration.mp4: the reader over a landscape, no face (a voice-over);
- silent.mp4: the cameraman on screen, nobody speaking (a face never heard).

One ingest serves the module; `sequel.mp4` (the astronaut and Diane again) and `reprise.mp4` (Hopper and
Sheila again) are ingested into the same collection by the tests that need new chunks. The tests run in file
order and build on each other's edits (names, then merge/undo, then split, then undo to the bottom).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.people_view import TIMELINE_GAP_S
from tests.support.app_factory import make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator
from tests.support.people_media import (
    DIANE,
    SHEILA,
    Scene,
    Span,
    VideoTruth,
    Votes,
    clusters_of,
    conversation_pieces,
    corpus_piece,
    interview_scenes,
    write_people_video,
)

pytestmark = pytest.mark.slow

COLLECTION = "people"
NARRATOR = "librivox"  # a man reading a novel (scripts/speech_corpus.py)
EILEEN, GRACE = "Eileen Collins", "Grace Hopper"
HEARD_TOLERANCE_S = 1.5  # a diarized turn's bounds against the reference
SEEN_TOLERANCE_S = 2.0  # on screen: keyframes sample a chunk every few seconds


@dataclass(slots=True)
class World:
    orch: RunningOrchestrator
    root: Path
    talk: VideoTruth
    duo: VideoTruth
    narration: VideoTruth
    silent: VideoTruth
    sequel: VideoTruth  # not ingested by the fixture
    reprise: VideoTruth  # not ingested by the fixture

    @property
    def ingested(self) -> list[VideoTruth]:
        return [self.talk, self.duo, self.narration, self.silent]


@dataclass(slots=True)
class Cast:
    """Which machine cluster is which real face or voice (from the reference of the ingested videos)."""

    face: dict[str, str] = field(default_factory=dict)  # face name -> face cluster
    voice: dict[str, str] = field(default_factory=dict)  # speaker -> voice cluster


def _media(root: Path) -> dict[str, VideoTruth]:
    pieces = conversation_pieces()
    d, s = pieces[DIANE], pieces[SHEILA]
    narrator = corpus_piece(NARRATOR, 8.0)
    return {
        "talk": write_people_video(
            root / "tv/talk.mp4",
            interview_scenes(d, s),
        ),
        "duo": write_people_video(root / "tv/duo.mp4", [Scene(("astronaut", "hopper"), (d[2],), "TOGETHER")]),
        "narration": write_people_video(root / "tv/narration.mp4", [Scene((), (narrator,), "THE VALLEY")]),
        "silent": write_people_video(
            root / "tv/silent.mp4", [Scene(("cameraman",), (), "NO WORDS", silent_s=5.0)]
        ),
        "sequel": write_people_video(
            root / "later/sequel.mp4",
            [Scene(("astronaut",), (d[3],), "AGAIN"), Scene(("astronaut",), (d[2], d[1]), "ONCE MORE")],
        ),
        "reprise": write_people_video(
            root / "again/reprise.mp4",
            [Scene(("hopper",), (s[3],), "REPRISE"), Scene(("hopper",), (s[2],), "ENCORE")],
        ),
    }


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, ml_service_url: str) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("people").resolve()
    made = _media(root / "media")
    settings = make_settings(root / "data", ml_service_url, [root / "media"])
    async with running_orchestrator(settings) as orch:
        job = await _ingest(orch, root / "media/tv")
        assert job["counters"]["upserted"] >= 4, job  # type: ignore[index]
        yield World(orch, root / "media", **made)


async def _ingest(orch: RunningOrchestrator, path: Path) -> dict[str, object]:
    created = await orch.client.post("/jobs", json={"path": str(path), "collection": COLLECTION})
    assert created.status_code == 202, created.text
    job = await orch.wait_job(created.json()["job_id"], timeout_s=240)
    assert job["state"] == "completed", job
    errors = (await orch.client.get(f"/jobs/{job['job_id']}/errors")).json()["errors"]
    assert not errors, errors
    return job


async def _chunks(orch: RunningOrchestrator, path: Path) -> list[dict[str, Any]]:
    """The file's chunk payloads (with their ids), in time order, as GET /media/{id} gives them."""
    points, _ = await orch.services.store.scroll(COLLECTION, None, 1000, None)
    ids = [p.id for p in points if p.payload.get("path") == str(path)]
    found = [await _get(orch, f"/media/{i}") for i in ids]
    return sorted(found, key=lambda c: float(c["start_s"] or 0.0))


async def _get(orch: RunningOrchestrator, url: str, **params: Any) -> dict[str, Any]:
    resp = await orch.client.get(url, params={"collection": COLLECTION, **params})
    assert resp.status_code == 200, (url, resp.status_code, resp.text)
    body: dict[str, Any] = resp.json()
    return body


async def _post(orch: RunningOrchestrator, url: str, body: dict[str, Any] | None = None) -> Any:
    resp = await orch.client.post(url, params={"collection": COLLECTION}, json=body)
    assert resp.status_code == 200, (url, body, resp.status_code, resp.text)
    return resp.json()


async def _people(orch: RunningOrchestrator) -> dict[str, dict[str, Any]]:
    body = await _get(orch, "/people", limit=500)
    assert body["next_offset"] is None and body["total"] == len(body["people"]), body
    return {p["id"]: p for p in body["people"]}


async def _cast(world: World, *needed: str) -> Cast:
    """Each real face and voice to the one cluster the machine made of it (`Votes`: faces by keyframe,
    turns by overlap with the reference turns). Each of `needed` (all when none) must be exactly one cluster:
    the precondition of everything people do."""
    votes = Votes()
    for truth in world.ingested:
        for chunk in await _chunks(world.orch, truth.path):
            votes.add(chunk, truth)
    faces, voices = votes.owners()
    cast = Cast()
    for owners, found, names in (
        (faces, cast.face, ("astronaut", "hopper", "cameraman")),
        (voices, cast.voice, (DIANE, SHEILA, NARRATOR)),
    ):
        for name in names:
            clusters = clusters_of(owners, name)
            if not needed or name in needed:
                assert len(clusters) == 1, (name, clusters, dict(votes.faces), dict(votes.voices))
            if clusters:
                found[name] = clusters[0]
    return cast


def _person_of(people: dict[str, dict[str, Any]], cluster: str) -> dict[str, Any]:
    [person] = [p for p in people.values() if cluster in [c["cluster"] for c in (*p["faces"], *p["voices"])]]
    return person


async def test_each_real_voice_is_linked_to_its_face(world: World) -> None:
    cast = await _cast(world)
    people = await _people(world.orch)
    for face, speaker in (("astronaut", DIANE), ("hopper", SHEILA)):
        person = _person_of(people, cast.face[face])
        assert person["kind"] == "both", (face, person)
        assert person["id"] == cast.face[face]  # a face's person keeps the face cluster's id
        [voice] = person["voices"]
        assert voice["cluster"] == cast.voice[speaker], (face, speaker, person)
        assert voice["linked_by"] == "auto", voice
        assert 0.3 <= voice["confidence"] <= 1.0, voice
        assert voice["speaking_s"] > 5.0 and person["speaking_s"] == voice["speaking_s"], person
        assert person["example"] and person["thumbnail_url"], person
        # The evidence: chunks where this voice speaks while this face is on screen.
        assert voice["evidence"], voice
        for chunk_id in voice["evidence"]:
            chunk = await _get(world.orch, f"/media/{chunk_id}")
            assert any(
                t["voice"] == voice["cluster"] and cast.face[face] in t["on_screen"]
                for t in chunk["speakers"]
            ), (chunk_id, chunk["speakers"])
        # Chunk payloads: every turn of that voice names the face's person.
        for chunk in await _chunks(world.orch, world.talk.path):
            for turn in chunk["speakers"]:
                if turn["voice"] == cast.voice[speaker]:
                    assert turn["person"] == person["id"], turn
                    assert person["id"] in chunk["speaking"] and person["id"] in chunk["people"], chunk


async def test_voice_over_stays_voice_only_and_an_unheard_face_face_only(world: World) -> None:
    cast = await _cast(world, "cameraman", NARRATOR)
    people = await _people(world.orch)
    narrator = _person_of(people, cast.voice[NARRATOR])
    assert narrator["kind"] == "voice" and narrator["faces"] == [], narrator
    assert narrator["id"] == cast.voice[NARRATOR]
    [voice] = narrator["voices"]
    assert voice["linked_by"] is None and voice["confidence"] is None and voice["evidence"] == [], voice
    assert voice["speaking_s"] > 3.0, voice
    cameraman = _person_of(people, cast.face["cameraman"])
    assert cameraman["kind"] == "face" and cameraman["voices"] == [], cameraman
    assert cameraman["speaking_s"] == 0 and cameraman["media_count"] == 1, cameraman
    [chunk] = await _chunks(world.orch, world.silent.path)
    assert chunk["people"] == [cameraman["id"]] and chunk["speaking"] == [], chunk
    [chunk] = await _chunks(world.orch, world.narration.path)
    assert chunk["faces"] == [] and chunk["speaking"] == [narrator["id"]], chunk


async def test_two_faces_on_screen_and_one_voice(world: World) -> None:
    """Both faces are seen; only the voice's own person speaks, and a crowded shot moves no link."""
    cast = await _cast(world, "astronaut", "hopper", DIANE)
    [chunk] = await _chunks(world.orch, world.duo.path)
    astronaut, hopper = cast.face["astronaut"], cast.face["hopper"]
    assert {f["cluster"] for f in chunk["faces"]} == {astronaut, hopper}, chunk["faces"]
    assert set(chunk["people"]) == {astronaut, hopper}, chunk
    assert chunk["speaking"] == [astronaut], chunk
    turns = [t for t in chunk["speakers"] if t["voice"]]
    assert turns and all(t["voice"] == cast.voice[DIANE] for t in turns), turns
    assert all(set(t["on_screen"]) == {astronaut, hopper} for t in turns), turns


async def test_appearances_of_a_person(world: World) -> None:
    cast = await _cast(world, "astronaut", "cameraman", NARRATOR)
    orch = world.orch
    astronaut = await _get(orch, f"/people/{cast.face['astronaut']}")
    files = {Path(a["path"]).name: a for a in astronaut["appearances"]}
    assert set(files) == {"talk.mp4", "duo.mp4"}, files
    assert all(a["media_type"] == "video" and a["content_hash"] for a in files.values()), files
    talk = files["talk.mp4"]["ranges"]
    assert any(r["seen"] and r["heard"] for r in talk), talk
    assert all(r["start_s"] <= r["end_s"] and r["chunk_id"] and r["thumbnail_url"] for r in talk), talk
    assert [r["start_s"] for r in talk] == sorted(r["start_s"] for r in talk), talk
    # Every range lies where the astronaut is on screen or Diane speaks (a range may be one keyframe's time).
    presence = [s for s in world.talk.seen if s.who == "astronaut"] + [
        s for s in world.talk.heard if s.who == DIANE
    ]
    for r in talk:
        assert any(r["start_s"] <= s.end_s and s.start_s <= r["end_s"] for s in presence), r
    [duo] = files["duo.mp4"]["ranges"]
    assert duo["seen"] and duo["heard"], duo
    thumb = await orch.client.get(talk[0]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"

    cameraman = await _get(orch, f"/people/{cast.face['cameraman']}")
    [silent] = cameraman["appearances"]
    assert Path(silent["path"]).name == "silent.mp4"
    assert silent["ranges"] and all(r["seen"] and not r["heard"] for r in silent["ranges"]), silent
    narrator = await _get(orch, f"/people/{cast.voice[NARRATOR]}")
    [narration] = narrator["appearances"]
    assert Path(narration["path"]).name == "narration.mp4"
    assert all(r["heard"] and not r["seen"] for r in narration["ranges"]), narration
    spoken = narration["ranges"][0]
    [said] = world.narration.heard
    assert abs(spoken["start_s"] - said.start_s) <= HEARD_TOLERANCE_S, (spoken, said)

    missing = await orch.client.get("/people/person-000000000000", params={"collection": COLLECTION})
    assert missing.status_code == 404, missing.text


def _reference_ranges(spans: list[Span]) -> list[tuple[str, float, float]]:
    """Reference spans per person, joined across gaps of up to TIMELINE_GAP_S (as the timeline joins)."""
    out: list[tuple[str, float, float]] = []
    last: dict[str, int] = {}
    for s in sorted(spans, key=lambda s: s.start_s):
        i = last.get(s.who)
        if i is not None and s.start_s - out[i][2] <= TIMELINE_GAP_S:
            out[i] = (s.who, out[i][1], max(out[i][2], s.end_s))
            continue
        last[s.who] = len(out)
        out.append((s.who, s.start_s, s.end_s))
    return out


def _unmatched(
    reference: list[tuple[str, float, float]], found: list[tuple[str, float, float]], tolerance: float
) -> list[tuple[str, float, float]]:
    """Reference ranges with no found range of the same one whose both ends lie within `tolerance`."""
    return [
        r
        for r in reference
        if not any(
            f[0] == r[0] and abs(f[1] - r[1]) <= tolerance and abs(f[2] - r[2]) <= tolerance for f in found
        )
    ]


async def _timeline(world: World) -> tuple[Cast, dict[str, Any], dict[str, str]]:
    """The talk's timeline (asked through its last chunk), and each reference name's person."""
    cast = await _cast(world)
    chunks = await _chunks(world.orch, world.talk.path)
    timeline = await _get(world.orch, f"/media/{chunks[-1]['id']}/timeline")
    assert timeline["media_id"] == chunks[-1]["id"] and timeline["content_hash"] == chunks[0]["content_hash"]
    assert timeline["duration_s"] == pytest.approx(world.talk.duration_s, abs=0.5)
    person = {"astronaut": cast.face["astronaut"], "hopper": cast.face["hopper"]}
    person |= {DIANE: cast.face["astronaut"], SHEILA: cast.face["hopper"]}  # each voice is its face's
    return cast, timeline, person


async def test_timeline_who_speaks_when(world: World) -> None:
    cast, timeline, person = await _timeline(world)
    heard = [(r["person"], r["start_s"], r["end_s"]) for r in timeline["heard"]]
    assert all(r["voice"] in (cast.voice[DIANE], cast.voice[SHEILA]) for r in timeline["heard"]), timeline
    reference = [(person[w], a, b) for w, a, b in _reference_ranges(world.talk.heard)]
    assert not _unmatched(reference, heard, HEARD_TOLERANCE_S), (reference, heard)
    assert len(heard) == len(reference), (reference, heard)


async def test_timeline_who_is_on_screen_when(world: World) -> None:
    _, timeline, person = await _timeline(world)
    seen = [(r["person"], r["start_s"], r["end_s"]) for r in timeline["seen"]]
    reference = [(person[w], a, b) for w, a, b in _reference_ranges(world.talk.seen)]
    assert not _unmatched(reference, seen, SEEN_TOLERANCE_S), (reference, seen)
    assert len(seen) == len(reference), (reference, seen)


async def _name(orch: RunningOrchestrator, person: str, name: str | None) -> dict[str, Any]:
    resp = await orch.client.patch(
        f"/people/{person}", params={"collection": COLLECTION}, json={"name": name}
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["id"] == person and body["name"] == name, body
    return body


async def _name_both(world: World, cast: Cast) -> tuple[str, str]:
    """Name the astronaut's person Eileen Collins and Grace Hopper's hers; their ids."""
    astronaut, hopper = cast.face["astronaut"], cast.face["hopper"]
    await _name(world.orch, astronaut, EILEEN)
    await _name(world.orch, hopper, GRACE)
    return astronaut, hopper


async def test_names_reach_payloads_and_new_chunks(world: World) -> None:
    cast = await _cast(world)
    orch = world.orch
    astronaut, hopper = await _name_both(world, cast)
    people = await _people(orch)
    assert people[astronaut]["name"] == EILEEN and people[hopper]["name"] == GRACE
    named_first = sorted([astronaut, hopper], key=lambda p: (-people[p]["chunk_count"], p))
    assert list(people)[:2] == named_first, people
    found = (await _get(orch, "/people", name="eileen"))["people"]
    assert [p["id"] for p in found] == [astronaut], found
    for chunk in await _chunks(orch, world.talk.path) + await _chunks(orch, world.duo.path):
        for face in chunk["faces"]:
            expected = {astronaut: EILEEN, hopper: GRACE}.get(face["cluster"])
            assert face["name"] == expected, face
        for turn in chunk["speakers"]:
            expected = {cast.voice[DIANE]: EILEEN, cast.voice[SHEILA]: GRACE}.get(turn["voice"])
            assert turn["name"] == expected, turn
        assert EILEEN in chunk["names"], chunk

    # Another video of the same face and the same voice: its chunks carry the name, seen and heard.
    await _ingest(orch, world.sequel.path.parent)
    chunks = await _chunks(orch, world.sequel.path)
    assert chunks
    for chunk in chunks:
        assert chunk["faces"] and all(f["name"] == EILEEN for f in chunk["faces"]), chunk["faces"]
        turns = [t for t in chunk["speakers"] if t["voice"]]
        assert turns and all(t["name"] == EILEEN and t["person"] == astronaut for t in turns), turns
        assert chunk["names"] == [EILEEN] and chunk["speaking"] == [astronaut], chunk
    people = await _people(orch)
    assert people[astronaut]["name"] == EILEEN and people[astronaut]["media_count"] == 3, people[astronaut]


async def _search(orch: RunningOrchestrator, q: str, **params: Any) -> list[dict[str, Any]]:
    body = await _get(orch, "/search", q=q, limit=20, **params)
    hits: list[dict[str, Any]] = body["hits"]
    return hits


async def test_search_by_speaker_and_person(world: World) -> None:
    cast = await _cast(world)
    orch = world.orch
    astronaut, hopper = await _name_both(world, cast)
    # Sheila's words: with speaker=Grace Hopper (her voice's person) the chunk that holds them comes first;
    # with speaker=Eileen Collins it is left out, although Diane speaks in that chunk too.
    said = "Sheila in Texas, originally from Chicago"
    [where] = [s for s in world.talk.heard if "Texas" in s.text]
    hers = await _search(orch, said, speaker=GRACE.lower())
    assert hers, "no hit for speaker=Grace Hopper"
    top = await _get(orch, f"/media/{hers[0]['id']}")
    assert top["path"] == str(world.talk.path) and top["start_s"] <= where.start_s < top["end_s"], top
    not_hers = await _search(orch, said, speaker=EILEEN)
    assert top["id"] not in {h["id"] for h in not_hers}, [(h["path"], h["start_s"]) for h in not_hers]
    for name, person, hits in ((GRACE, hopper, hers), (EILEEN, astronaut, not_hers)):
        for hit in hits:  # every hit: a chunk where that person speaks
            chunk = await _get(orch, f"/media/{hit['id']}")
            assert person in chunk["speaking"], (name, chunk["path"], chunk["speakers"])
            assert any(t["person"] == person for t in chunk["speakers"]), (name, chunk["speakers"])
    # By id too; and person= keeps chunks where the person is seen or heard.
    by_id = await _search(orch, said, speaker=hopper)
    assert [h["id"] for h in by_id] == [h["id"] for h in hers]
    seen = await _search(orch, "hello", person=EILEEN)
    assert seen and all(astronaut in h["people"] for h in seen), seen
    assert str(world.duo.path) in {h["path"] for h in seen}
    [narration] = await _chunks(orch, world.narration.path)
    words = " ".join(narration["transcript"].split()[:4])
    narrator = await _search(orch, words, speaker=cast.voice[NARRATOR])
    assert [h["id"] for h in narrator] == [narration["id"]], (words, narrator)
    nobody = await _search(orch, said, speaker="Nobody By This Name")
    assert nobody == [], nobody


async def test_merge_and_undo(world: World) -> None:
    cast = await _cast(world, "hopper", "cameraman")
    orch = world.orch
    hopper, cameraman = cast.face["hopper"], cast.face["cameraman"]
    await _name(orch, hopper, GRACE)
    await _name(orch, cameraman, "The Cameraman")
    before = await _people(orch)

    merged = await _post(orch, f"/people/{hopper}/merge", {"people": [cameraman]})
    assert merged["id"] == hopper and merged["name"] == GRACE, merged
    assert {f["cluster"] for f in merged["faces"]} == {hopper, cameraman}, merged
    assert merged["media_count"] == before[hopper]["media_count"] + 1, merged
    people = await _people(orch)
    assert cameraman not in people and len(people) == len(before) - 1, sorted(people)
    [silent] = await _chunks(orch, world.silent.path)
    assert silent["people"] == [hopper] and silent["names"] == [GRACE], silent
    assert silent["faces"][0]["cluster"] == cameraman and silent["faces"][0]["person"] == hopper

    undone = await _post(orch, "/people/undo")
    assert undone == {"undone": {"action": "merge", "person": hopper}}, undone
    people = await _people(orch)
    assert set(people) == set(before), (sorted(people), sorted(before))
    assert people[hopper]["name"] == GRACE and people[cameraman]["name"] == "The Cameraman", people
    assert [f["cluster"] for f in people[cameraman]["faces"]] == [cameraman]
    assert people[hopper]["voices"] == before[hopper]["voices"], people[hopper]
    [silent] = await _chunks(orch, world.silent.path)
    assert silent["people"] == [cameraman] and silent["names"] == ["The Cameraman"], silent


async def test_split_is_remembered_and_undone(world: World) -> None:
    cast = await _cast(world, "hopper", SHEILA)
    orch = world.orch
    hopper, sheila = cast.face["hopper"], cast.voice[SHEILA]
    before = (await _people(orch))[hopper]
    assert [v["cluster"] for v in before["voices"]] == [sheila], before

    split = await _post(orch, f"/people/{hopper}/split", {"clusters": [sheila]})
    person, new = split["person"], split["new"]
    assert person["id"] == hopper and person["kind"] == "face" and person["voices"] == [], person
    assert new["id"] != hopper and new["kind"] == "voice", new
    assert [v["cluster"] for v in new["voices"]] == [sheila] and new["voices"][0]["linked_by"] == "user", new
    for chunk in await _chunks(orch, world.talk.path):
        for turn in chunk["speakers"]:
            if turn["voice"] == sheila:
                assert turn["person"] == new["id"] and turn["name"] is None, turn

    # "Not this person" is remembered: more of Hopper's face with Sheila's voice does not link them again.
    await _ingest(orch, world.reprise.path.parent)
    people = await _people(orch)
    assert people[hopper]["voices"] == [] and people[hopper]["kind"] == "face", people[hopper]
    assert [v["cluster"] for v in people[new["id"]]["voices"]] == [sheila], people[new["id"]]
    reprise = await _chunks(orch, world.reprise.path)
    turns = [t for c in reprise for t in c["speakers"] if t["voice"]]
    assert turns and all(t["voice"] == sheila and t["person"] == new["id"] for t in turns), turns
    assert all(hopper not in c["speaking"] for c in reprise), reprise

    undone = await _post(orch, "/people/undo")
    assert undone == {"undone": {"action": "split", "person": hopper}}, undone
    people = await _people(orch)
    assert new["id"] not in people, sorted(people)
    assert people[hopper]["kind"] == "both", people[hopper]
    assert [v["cluster"] for v in people[hopper]["voices"]] == [sheila], people[hopper]
    for chunk in reprise:
        chunk = await _get(orch, f"/media/{chunk['id']}")
        assert hopper in chunk["speaking"], chunk


async def test_undo_down_to_nothing_then_409(world: World) -> None:
    cast = await _cast(world, "cameraman")
    orch = world.orch
    await _name(orch, cast.face["cameraman"], "Somebody")
    undone = []
    for _ in range(100):
        resp = await orch.client.post("/people/undo", params={"collection": COLLECTION})
        if resp.status_code == 409:
            break
        assert resp.status_code == 200, resp.text
        undone.append(resp.json()["undone"])
    else:
        pytest.fail("undo never ran out")
    assert undone and undone[0] == {"action": "rename", "person": cast.face["cameraman"]}, undone
    people = await _people(orch)
    assert all(p["name"] is None for p in people.values()), [(p["id"], p["name"]) for p in people.values()]
    again = await orch.client.post("/people/undo", params={"collection": COLLECTION})
    assert again.status_code == 409, again.text
