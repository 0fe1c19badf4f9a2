"""Video and audio end to end: real decoding, the real ML service (ASR, voices, faces, OCR), Qdrant Edge.

One programme with two presenters (two faces, two voices) saying known sentences, plus the awkward files:
audio-only wav/mp3/m4a, a video without audio, silence, a portrait phone video, a 1-frame video, a
truncated mp4. Each is searchable or recorded as failed with a reason; a re-ingest costs nothing.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from scripts.av_write import textured, truncate, write_audio, write_video
from scripts.speech import SAMPLE_RATE, VOICES, silence, synthesize, word_error_rate, words
from scripts.talk_video import TalkManifest, make_talk_video, presenter_faces
from tests.support.app_factory import counting_store, make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow

AUDIO_SENTENCE = "The lighthouse keeper counted seventeen seagulls on the rocks."
NO_AUDIO_CAPTION = "WEATHER WARNING FOR THE COAST"


@pytest.fixture(scope="module")
def av_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TalkManifest]:
    from scripts.make_samples import text_image

    root = tmp_path_factory.mktemp("av") / "media"
    manifest = make_talk_video(root / "news/programme.mp4", n_phrases=6)
    for sub in ("audio", "video", "broken"):
        (root / sub).mkdir()
    speech = np.concatenate([silence(0.5), synthesize(AUDIO_SENTENCE, VOICES["low"]), silence(0.5)])
    for fmt in ("wav", "mp3", "m4a"):
        write_audio(root / f"audio/keeper.{fmt}", speech, SAMPLE_RATE, fmt)
    # Different content per format would be three points; the same samples in three containers are three
    # different files (different bytes), each transcribed.
    write_audio(root / "audio/quiet.wav", silence(6.0), SAMPLE_RATE, "wav")
    card = np.asarray(text_image(NO_AUDIO_CAPTION, width=640, height=360, size=34))
    write_video(root / "video/no_audio.mp4", [(card, 6.0)], fps=5)
    face = presenter_faces()["astronaut"]
    portrait = np.zeros((480, 272, 3), np.uint8)
    portrait[100:380, :] = np.asarray(Image.fromarray(face).resize((272, 280)))
    write_video(root / "video/portrait.mp4", [(portrait, 5.0)], fps=5, rotation=90)
    write_video(root / "video/one_frame.mp4", [(textured(180, 320, 3), 0.1)], fps=10)
    write_video(root / "broken/truncated.mp4", [(textured(180, 320, 4), 8.0)], fps=10)
    truncate(root / "broken/truncated.mp4", 0.4)
    (root / "broken/fake.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200)
    return root, manifest


async def _ingest(orch: RunningOrchestrator, path: Path, collection: str) -> dict[str, Any]:
    resp = await orch.client.post("/jobs", json={"path": str(path), "collection": collection})
    assert resp.status_code == 202, resp.text
    return dict(await orch.wait_job(resp.json()["job_id"], timeout_s=600))


async def _search(orch: RunningOrchestrator, q: str, **params: Any) -> list[dict[str, Any]]:
    resp = await orch.client.get("/search", params={"q": q, "collection": "tv", "limit": 5, **params})
    assert resp.status_code == 200, resp.text
    hits: list[dict[str, Any]] = resp.json()["hits"]
    return hits


async def test_video_and_audio_end_to_end(
    tmp_path: Path, ml_service_url: str, av_tree: tuple[Path, TalkManifest]
) -> None:
    root, manifest = av_tree
    settings = make_settings(tmp_path / "data", ml_service_url, [root.parent])
    store = counting_store(settings)
    async with running_orchestrator(settings, store) as orch:
        status = await _ingest(orch, root, "tv")
        assert status["state"] == "completed", status
        errors = (await orch.client.get(f"/jobs/{status['job_id']}/errors")).json()["errors"]
        reasons = {Path(e["path"]).name: e["reason"] for e in errors}
        assert set(reasons) <= {"truncated.mp4", "fake.mp4"}, reasons
        assert reasons.get("fake.mp4")
        programme = str(root / "news/programme.mp4")

        # Every sentence is found in the programme, at the time it is spoken (within 2 s).
        for phrase in manifest.phrases:
            hits = await _search(orch, phrase.text)
            top = hits[0]
            assert top["path"] == programme, (phrase.text, top)
            assert top["media_type"] == "video"
            assert abs(top["start_s"] - phrase.start_s) <= 2.0, (phrase, top["start_s"], top["snippet"])
            # A word straddling the chunk's start belongs to the chunk holding its middle.
            assert top["chunk_start_s"] - 1.0 <= top["start_s"] <= top["chunk_end_s"], top
            said = set(words(phrase.text))
            assert len(said & set(words(top["snippet"]))) >= len(said) / 2, (phrase.text, top["snippet"])

        # Transcript quality over the whole programme.
        points, _ = await store.scroll("tv", None, 100, None)
        chunks = sorted(
            (p.payload for p in points if p.payload["path"] == programme), key=lambda p: p["start_s"]
        )
        transcript = " ".join(c["transcript"] for c in chunks)
        reference = " ".join(p.text for p in manifest.phrases)
        assert word_error_rate(reference, transcript) <= 0.2, transcript
        assert chunks[-1]["end_s"] == pytest.approx(manifest.duration_s, abs=0.5)
        assert all(a["end_s"] == pytest.approx(b["start_s"], abs=0.01) for a, b in itertools.pairwise(chunks))

        # Two people on screen, two voices; each voice is linked to the face on screen while it speaks, so
        # each chunk names one person per presenter (seen and heard).
        people = (await orch.client.get("/people", params={"collection": "tv"})).json()["people"]
        by_id = {p["id"]: p for p in people}
        programme_voices = {t["voice"] for c in chunks for t in c["speakers"] if t["voice"]}
        assert len(programme_voices) == 2, [c["speakers"] for c in chunks]
        programme_persons = {f["person"] for c in chunks for f in c["faces"] if f["person"]}
        assert len(programme_persons) == 2, [c["faces"] for c in chunks]
        spoken_by = {t["voice"]: t["person"] for c in chunks for t in c["speakers"] if t["voice"]}
        assert set(spoken_by.values()) == programme_persons, (spoken_by, programme_persons)
        for voice, person in spoken_by.items():
            found = by_id[person]
            assert found["kind"] == "both", found
            [linked] = [v for v in found["voices"] if v["cluster"] == voice]
            assert linked["linked_by"] == "auto" and linked["evidence"], linked
            assert linked["confidence"] >= 0.3, linked
        assert all(set(c["speaking"]) <= programme_persons for c in chunks)
        # Name the astronaut's person; speaker=<name> finds the sentences she says, never the other's.
        said_by = {p.speaker: p for p in manifest.phrases}
        hers, his = said_by["astronaut"], said_by["cameraman"]
        her_chunk = next(c for c in chunks if c["start_s"] <= hers.start_s < c["end_s"])
        her = next(
            t["person"] for t in her_chunk["speakers"] if t["start_s"] <= hers.start_s + 1 <= t["end_s"]
        )
        renamed = await orch.client.patch(
            f"/people/{her}", params={"collection": "tv"}, json={"name": "Eileen"}
        )
        assert renamed.status_code == 200 and renamed.json()["name"] == "Eileen", renamed.text
        found = await _search(orch, hers.text, speaker="eileen")
        assert found and found[0]["path"] == programme and abs(found[0]["start_s"] - hers.start_s) <= 2.0
        assert "Eileen" in found[0]["names"] and found[0]["person_names"][her] == "Eileen"
        assert all(
            abs(h["start_s"] - his.start_s) > 2.0 for h in await _search(orch, his.text, speaker="Eileen")
        )
        # The portrait video shows the astronaut: the same person cluster as in the programme.
        astronaut_chunk = next(c for c in chunks if "REPORTS" in c["ocr_text"])
        astronaut = next(f["person"] for f in astronaut_chunk["faces"] if f["person"])
        assert astronaut in programme_persons
        only_astronaut = await _search(orch, "video", person=astronaut, limit=50)
        assert only_astronaut and all(astronaut in h["people"] for h in only_astronaut)
        assert str(root / "video/portrait.mp4") in {h["path"] for h in only_astronaut}

        # On-screen text is searchable too; a video with no audio is still understood.
        hits = await _search(orch, "weather warning coast")
        assert hits[0]["path"] == str(root / "video/no_audio.mp4")
        # Audio-only files: transcribed, found at the sentence, typed by their content.
        hits = await _search(orch, "lighthouse keeper seventeen seagulls", media_type="audio")
        assert {Path(h["path"]).name for h in hits[:3]} == {"keeper.wav", "keeper.mp3", "keeper.m4a"}
        spoken_until = 0.5 + len(synthesize(AUDIO_SENTENCE, VOICES["low"])) / SAMPLE_RATE
        assert all(h["start_s"] is not None and h["start_s"] < spoken_until for h in hits[:3]), [
            (h["path"], h["start_s"], h["snippet"]) for h in hits[:3]
        ]
        records = {Path(str(p.payload["path"])).name: p.payload for p in points}
        assert records["quiet.wav"]["transcript"] == "" and records["quiet.wav"]["media_type"] == "audio"
        assert records["portrait.mp4"]["height"] > records["portrait.mp4"]["width"]
        assert records["one_frame.mp4"]["chunk_count"] == 1

        # A hit plays at its time: a chunk thumbnail, and the original with HTTP Range.
        top = (await _search(orch, manifest.phrases[-1].text))[0]
        thumb = await orch.client.get(top["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
        part = await orch.client.get(
            f"/media/{top['id']}/stream", params={"collection": "tv"}, headers={"range": "bytes=0-99"}
        )
        assert part.status_code == 206 and len(part.content) == 100

        # Re-ingest: not one ML call, not one write.
        ml_before = orch.services.ml.requests
        store.reset()
        again = await _ingest(orch, root, "tv")
        assert again["state"] == "completed"
        assert orch.services.ml.requests == ml_before
        assert (store.upserts, store.payload_updates, store.deletes) == (0, 0, 0)


async def test_videos_decoded_only_for_thumbnails_free_their_memory_slot(
    tmp_path: Path, ml_service_url: str
) -> None:
    """Results cached but thumbnails gone: each video is decoded again (for its thumbnails) and then needs
    no ML call; its memory slot must be given back, or the third video would wait for ever."""
    media = tmp_path / "media"
    media.mkdir()
    for i in range(3):
        write_video(media / f"clip{i}.mp4", [(textured(180, 320, 10 + i), 2.0)], fps=5)
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path], media_in_flight=1)
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        first = await _ingest(orch, media, "one")
        assert first["state"] == "completed" and first["counters"]["upserted"] == 3, first
        import shutil

        shutil.rmtree(settings.thumbnails_dir)
        ml_before = orch.services.ml.requests
        second = await _ingest(orch, media, "two")
        assert second["state"] == "completed", second
        assert second["counters"]["upserted"] == 3 and second["counters"]["cache_hits"] == 3
        assert orch.services.ml.requests == ml_before
        assert len(list(settings.thumbnails_dir.rglob("*_0.jpg"))) == 3
