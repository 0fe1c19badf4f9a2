"""End to end through the HTTP API: real ML service (default models), embedded Qdrant Edge, real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.make_samples import SampleManifest
from tests.support.app_factory import counting_store, make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow


async def _ingest(orch: RunningOrchestrator, path: Path, collection: str) -> dict[str, object]:
    resp = await orch.client.post("/jobs", json={"path": str(path), "collection": collection})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status_url"].endswith(f"/jobs/{body['job_id']}")
    return await orch.wait_job(body["job_id"])


async def _search(orch: RunningOrchestrator, q: str, collection: str) -> list[dict[str, object]]:
    resp = await orch.client.get("/search", params={"q": q, "collection": collection, "limit": 5})
    assert resp.status_code == 200, resp.text
    hits: list[dict[str, object]] = resp.json()["hits"]
    return hits


async def test_ingest_search_reingest_and_second_collection(
    tmp_path: Path, ml_service_url: str, samples: SampleManifest, sample_copy: Path
) -> None:
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path])
    store = counting_store(settings)
    distinct = len(samples.photos) + len(samples.text_images) + 1  # + the EXIF photo
    async with running_orchestrator(settings, store) as orch:
        status = await _ingest(orch, sample_copy, "main")
        counters = status["counters"]
        assert isinstance(counters, dict)
        assert status["state"] == "completed", status
        assert counters["failed"] == len(samples.bad), status["errors"]
        assert counters["skipped"] == len(samples.not_media)
        assert counters["duplicates"] == len(samples.duplicates)
        assert counters["upserted"] == distinct
        assert await store.count("main") == distinct

        errors = (await orch.client.get(f"/jobs/{status['job_id']}/errors")).json()
        reasons = {Path(e["path"]).name: e["reason"] for e in errors["errors"]}
        assert reasons["empty.jpg"] == "empty file"
        assert "cannot decode" in reasons["truncated.jpg"] or "truncated" in reasons["truncated.jpg"]
        assert "not media" in reasons["notes.jpg"] and "text" in reasons["notes.jpg"]

        # Text printed in one image finds that image first; its duplicate is the same point.
        hits = await _search(orch, "breaking news flood in Valencia", "main")
        assert str(sample_copy / "news/breaking_flood.png") in hits[0]["paths"]  # type: ignore[operator]
        assert str(sample_copy / "backup/2019/breaking_flood (1).png") in hits[0]["paths"]  # type: ignore[operator]
        assert "FLOOD" in str(hits[0]["snippet"]).upper()
        hits = await _search(orch, "invoice total due", "main")
        assert hits[0]["path"] == str(sample_copy / "documents/invoice_0173.png")
        hits = await _search(orch, "Tokyo station", "main")
        assert hits[0]["path"] == str(sample_copy / "people/café_東京 ñ.jpg")
        hits = await _search(orch, "a cat", "main")
        assert str(sample_copy / "pets/chelsea_the_cat.jpg") in [h["path"] for h in hits[:3]] + [
            p
            for h in hits[:3]
            for p in h["paths"]  # type: ignore[attr-defined]
        ]

        thumb = await orch.client.get(str(hits[0]["thumbnail_url"]))
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert thumb.content[:3] == b"\xff\xd8\xff"
        record = (await orch.client.get(f"/media/{hits[0]['id']}", params={"collection": "main"})).json()
        assert record["content_hash"] and record["media_type"] == "image"

        exif_hits = await _search(orch, "rocket launch", "main")
        exif_record = next(h for h in exif_hits if str(h["path"]).endswith(samples.exif_photo))
        assert exif_record["taken_at"] == "2021-06-15T14:30:00"

        # Re-ingest, unchanged: not one ML call, not one write.
        ml_before = orch.services.ml.requests
        store.reset()
        again = await _ingest(orch, sample_copy, "main")
        assert again["state"] == "completed"
        assert orch.services.ml.requests == ml_before
        assert (store.upserts, store.payload_updates, store.deletes) == (0, 0, 0)
        unchanged = distinct + len(samples.duplicates) + len(samples.not_media)
        assert again["counters"]["unchanged"] == unchanged  # type: ignore[index]
        assert again["counters"]["ml_requests"] == 0  # type: ignore[index]

        # A second collection over the same folder: every result reused from the cache, every point there.
        other = await _ingest(orch, sample_copy, "other")
        assert other["state"] == "completed"
        assert orch.services.ml.requests == ml_before
        assert await store.count("other") == distinct
        assert other["counters"]["cache_hits"] == distinct  # type: ignore[index]
        hits = await _search(orch, "invoice total due", "other")
        assert hits[0]["path"] == str(sample_copy / "documents/invoice_0173.png")


async def test_changed_and_copied_files(tmp_path: Path, ml_service_url: str, sample_copy: Path) -> None:
    """A modified file replaces its old point; a new copy of stored content costs no ML call."""
    from scripts.make_samples import text_image

    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path])
    store = counting_store(settings)
    async with running_orchestrator(settings, store) as orch:
        first = await _ingest(orch, sample_copy, "c")
        points = await store.count("c")
        text_image("CHANGED SIGN: PLATFORM 4 ARRIVALS").save(sample_copy / "signs/platform.png")
        import shutil

        shutil.copyfile(sample_copy / "kitchen/coffee.jpg", sample_copy / "kitchen/coffee again.jpg")
        ml_before = orch.services.ml.requests
        second = await _ingest(orch, sample_copy, "c")
        assert second["state"] == "completed"
        assert (
            orch.services.ml.requests - ml_before == 2
        )  # one analyze + one embed, for the changed sign only
        assert await store.count("c") == points  # old sign point deleted, new one added
        hits = await _search(orch, "platform arrivals", "c")
        assert hits[0]["path"] == str(sample_copy / "signs/platform.png")
        assert "ARRIVALS" in str(hits[0]["snippet"]).upper()
        hits = await _search(orch, "platform 9 departures london", "c")
        assert all(
            h["path"] != str(sample_copy / "signs/platform.png") or "DEPARTURES" not in str(h["snippet"])
            for h in hits
        )
        coffee = await _search(orch, "a cup of coffee espresso", "c")
        coffee_paths = [p for h in coffee for p in h["paths"]]  # type: ignore[attr-defined]
        assert str(sample_copy / "kitchen/coffee again.jpg") in coffee_paths
        del first


async def test_paths_outside_allowed_roots_are_refused(tmp_path: Path, ml_service_url: str) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "photos").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (allowed / "link_out").symlink_to(tmp_path / "secret")
    settings = make_settings(tmp_path / "data", ml_service_url, [allowed])
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        for path in (
            tmp_path / "secret",
            f"{allowed}/../secret",
            f"{allowed}/photos/../../secret",
            allowed / "link_out",
            "/etc",
        ):
            resp = await orch.client.post("/jobs", json={"path": str(path)})
            assert resp.status_code == 403, (path, resp.text)
        resp = await orch.client.post("/ingest", json={"directory_path": "relative/dir"})
        assert resp.status_code == 400
        resp = await orch.client.post("/jobs", json={"path": str(allowed), "collection": "../evil"})
        assert resp.status_code == 422
        resp = await orch.client.post("/ingest", json={"directory_path": str(allowed / "photos")})
        assert resp.status_code == 202
        done = await orch.wait_job(resp.json()["job_id"])
        assert done["state"] == "completed"
        alias = await orch.client.get(f"/status/{done['job_id']}")
        assert alias.json()["state"] == "completed"


async def test_ml_service_down_fails_the_job_with_a_reason(tmp_path: Path, sample_copy: Path) -> None:
    settings = make_settings(tmp_path / "data", "http://127.0.0.1:9", [tmp_path], ml_retry_deadline_s=1.0)
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        resp = await orch.client.post("/jobs", json={"path": str(sample_copy)})
        status = await orch.wait_job(resp.json()["job_id"], timeout_s=30)
        assert status["state"] == "failed"
        assert "ML service unavailable" in str(status["error"])
