"""Files that arrive over HTTP, end to end (real ML service, Edge, loopback HTTP): POST /uploads, tus
resumable uploads, URL jobs from a loopback origin, raw-text jobs. One orchestrator for the module; every
ingest after the first reuses the first upload's content, so only that one costs ML calls."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import sys
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import pytest

from scripts.make_samples import text_image
from tests.support.app_factory import make_settings
from tests.support.orchestrator_server import RunningOrchestrator, free_port, running_orchestrator
from tests.support.web_origin import Answer, Origin, web_origin

pytestmark = pytest.mark.slow

COLLECTION = "harbour"
MAX_REQUEST = 8192  # JSON bodies; uploads are exempt (the JPEG below is larger)
MAX_UPLOAD = 200_000
URL_MAX = 100_000
TUS = {"Tus-Resumable": "1.0.0"}


def _jpeg() -> bytes:
    out = io.BytesIO()
    text_image("HARBOUR FERRY TIMETABLE PIER SEVEN").save(out, "JPEG", quality=90)
    return out.getvalue()


JPEG = _jpeg()
ELF = Path(sys.executable).resolve().read_bytes()[:65536]  # a program: neither media nor a document


@dataclass(frozen=True, slots=True)
class Uploaded:
    body: dict[str, Any]  # the 201 answer
    job: dict[str, Any]  # the ingest job, ended


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("uploads").resolve()
    (root / "roots").mkdir()
    return root


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    answers = {
        "/pictures/harbour.jpg": Answer(body=JPEG, headers={"Content-Type": "image/jpeg"}),
        "/to-metadata": Answer(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}),
        "/big.jpg": Answer(body=b"\xff\xd8\xff\xe0" + os.urandom(URL_MAX), chunked=True),
    }
    with web_origin(answers) as running:
        yield running


@pytest.fixture(scope="module")
async def orch(base: Path, ml_service_url: str) -> AsyncIterator[RunningOrchestrator]:
    settings = make_settings(
        base / "data",
        ml_service_url,
        [base / "roots"],
        max_request_bytes=MAX_REQUEST,
        max_upload_bytes=MAX_UPLOAD,
        url_max_bytes=URL_MAX,
        url_allowed_networks="127.0.0.0/8",
    )
    async with running_orchestrator(settings) as running:
        yield running


@pytest.fixture(scope="module")
async def uploaded(orch: RunningOrchestrator) -> Uploaded:
    """The module's one costly ingest: the JPEG, uploaded under a hostile name."""
    assert len(JPEG) > MAX_REQUEST
    resp = await orch.client.post(
        "/uploads",
        files={"file": ("../../Harbour Ferry.jpg", JPEG, "image/jpeg")},
        data={"collection": COLLECTION},
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    job = await orch.wait_job(body["job_id"])
    assert job["state"] == "completed", job
    return Uploaded(body, job)


def upload_root(orch: RunningOrchestrator) -> Path:
    return orch.services.settings.upload_root


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


async def search_paths(orch: RunningOrchestrator, query: str, collection: str) -> list[str]:
    resp = await orch.client.get("/search", params={"q": query, "collection": collection, "limit": 5})
    assert resp.status_code == 200, resp.text
    hits = resp.json()["hits"]
    return [p for hit in hits[:1] for p in [hit["path"], *hit["paths"]]]


async def test_an_upload_is_stored_checksummed_ingested_and_found(
    orch: RunningOrchestrator, uploaded: Uploaded
) -> None:
    body = uploaded.body
    stored = Path(body["path"])
    assert stored == upload_root(orch) / COLLECTION / body["upload_id"] / "Harbour Ferry.jpg"
    assert await asyncio.to_thread(stored.read_bytes) == JPEG
    assert (body["blake3"], body["sha256"]) == (
        blake3.blake3(JPEG).hexdigest(),
        hashlib.sha256(JPEG).hexdigest(),
    )
    assert (body["size"], body["media_type"], body["mime"]) == (len(JPEG), "image", "image/jpeg")
    assert body["status_url"].endswith(f"/jobs/{body['job_id']}")
    assert uploaded.job["counters"]["upserted"] == 1
    assert not any((upload_root(orch) / ".partial" / "posts").iterdir())

    assert await search_paths(orch, "ferry timetable pier", COLLECTION) == [str(stored), str(stored)]
    hits = (
        await orch.client.get("/search", params={"q": "ferry timetable", "collection": COLLECTION})
    ).json()
    media_id = hits["hits"][0]["id"]
    record = (await orch.client.get(f"/media/{media_id}", params={"collection": COLLECTION})).json()
    assert record["content_hash"] == body["blake3"]  # the checksum is the pipeline's content hash
    stream = await orch.client.get(f"/media/{media_id}/stream", params={"collection": COLLECTION})
    assert stream.status_code == 200 and stream.content == JPEG  # UPLOAD_DIR is served like a root

    # The same bytes again, under another name: stored again, not one ML call.
    ml_before = orch.services.ml.requests
    again = await orch.client.post(
        "/uploads", files={"file": ("copy.jpg", JPEG)}, data={"collection": COLLECTION}
    )
    assert again.status_code == 201, again.text
    assert again.json()["blake3"] == body["blake3"]
    job = await orch.wait_job(again.json()["job_id"])
    assert job["state"] == "completed", job
    assert orch.services.ml.requests == ml_before
    assert again.json()["path"] in await search_paths(orch, "ferry timetable pier", COLLECTION)
    # The collection's uploads are one root in the catalog (a rebuild walks them in one pass).
    assert await orch.services.catalog.roots(COLLECTION) == [str(upload_root(orch) / COLLECTION)]


async def test_refused_uploads_leave_nothing_behind(orch: RunningOrchestrator, uploaded: Uploaded) -> None:
    before = files_under(upload_root(orch))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("inside.jpg", JPEG)
    assert ELF.startswith(b"\x7fELF")
    for name, data in (("tool", ELF), ("photos.zip", zipped.getvalue()), ("noise.jpg", os.urandom(50_000))):
        resp = await orch.client.post(
            "/uploads", files={"file": (name, data)}, data={"collection": COLLECTION}
        )
        assert resp.status_code == 415, (name, resp.text)
        assert "not media or a document" in resp.json()["detail"]

    too_big = b"\xff\xd8\xff\xe0" + os.urandom(MAX_UPLOAD)
    resp = await orch.client.post("/uploads", files={"file": ("big.jpg", too_big)})
    assert resp.status_code == 413, resp.text
    assert resp.json()["detail"] == f"larger than MAX_UPLOAD_BYTES ({MAX_UPLOAD} bytes)"

    for files, form in (
        ({"file": ("a.jpg", JPEG)}, {"collection": "../../etc"}),
        ({"file": ("a.jpg", JPEG)}, {"collection": COLLECTION, "path": "/etc"}),
        ({"other": ("a.jpg", JPEG)}, {}),
    ):
        resp = await orch.client.post("/uploads", files=files, data=form)
        assert resp.status_code == 422, resp.text
    resp = await orch.client.post("/uploads", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert resp.status_code == 422, resp.text

    assert files_under(upload_root(orch)) == before
    # MAX_REQUEST_BYTES still bounds every other route.
    resp = await orch.client.post("/jobs", json={"text": "x" * (MAX_REQUEST + 10)})
    assert resp.status_code == 413


async def _cut_off_patch(url: str, path: str, offset: int, data: bytes, announced: int) -> None:
    """A PATCH that announces `announced` bytes, sends `data`, and drops the connection."""
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Upload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {announced}\r\n\r\n"
    )
    writer.write(head.encode() + data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    del reader


async def _offset(orch: RunningOrchestrator, location: str) -> int:
    resp = await orch.client.head(location, headers=TUS)
    assert resp.status_code == 200 and resp.headers["tus-resumable"] == "1.0.0"
    assert resp.headers["cache-control"] == "no-store"
    return int(resp.headers["upload-offset"])


def _metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}


async def test_tus_upload_in_two_patches(orch: RunningOrchestrator, uploaded: Uploaded) -> None:
    options = await orch.client.options("/uploads/tus")
    assert options.status_code == 204 and options.headers["tus-version"] == "1.0.0"
    assert options.headers["tus-max-size"] == str(MAX_UPLOAD)
    assert "creation" in options.headers["tus-extension"]
    refused = await orch.client.post("/uploads/tus", headers={"Upload-Length": "10"})
    assert refused.status_code == 412 and refused.headers["tus-version"] == "1.0.0"
    refused = await orch.client.post("/uploads/tus", headers={**TUS, "Upload-Length": str(MAX_UPLOAD + 1)})
    assert refused.status_code == 413

    created = await orch.client.post(
        "/uploads/tus",
        headers={
            **TUS,
            "Upload-Length": str(len(JPEG)),
            "Upload-Metadata": _metadata(filename="resumed/\x00ferry.jpg", collection=COLLECTION),
        },
    )
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    assert await _offset(orch, location) == 0
    wrong_type = await orch.client.patch(
        location, content=JPEG, headers={**TUS, "Upload-Offset": "0", "Content-Type": "image/jpeg"}
    )
    assert wrong_type.status_code == 415

    half = len(JPEG) // 2
    first = await orch.client.patch(location, content=JPEG[:half], headers={**PATCH, "Upload-Offset": "0"})
    assert first.status_code == 204 and first.headers["upload-offset"] == str(half)
    assert await _offset(orch, location) == half
    stale = await orch.client.patch(location, content=JPEG, headers={**PATCH, "Upload-Offset": "0"})
    assert stale.status_code == 409 and stale.headers["upload-offset"] == str(half)

    ml_before = orch.services.ml.requests
    rest = await orch.client.patch(
        location, content=JPEG[half:], headers={**PATCH, "Upload-Offset": str(half)}
    )
    assert rest.status_code == 204, rest.text
    assert rest.headers["upload-offset"] == str(len(JPEG))
    state = (await orch.client.get(location)).json()
    assert state["complete"] is True
    result = state["result"]
    assert await asyncio.to_thread(Path(result["path"]).read_bytes) == JPEG
    assert Path(result["path"]).name == "ferry.jpg"
    assert result["blake3"] == uploaded.body["blake3"]
    assert result["sha256"] == hashlib.sha256(JPEG).hexdigest()
    job = await orch.wait_job(result["job_id"])
    assert job["state"] == "completed", job
    assert orch.services.ml.requests == ml_before  # the same content as the first upload
    assert await _offset(orch, location) == len(JPEG)

    deleted = await orch.client.delete(location, headers=TUS)
    assert deleted.status_code == 204
    assert (await orch.client.head(location, headers=TUS)).status_code == 404
    assert await asyncio.to_thread(Path(result["path"]).exists)  # termination forgets the upload only


def _wav(size: int) -> bytes:
    """A WAV header and `size` bytes of random PCM: audio by its magic, costly for nothing here."""
    return b"RIFF" + (size + 36).to_bytes(4, "little") + b"WAVEfmt " + bytes(28) + os.urandom(size)


async def test_tus_upload_resumes_after_a_cut_patch_and_a_restart(tmp_path: Path) -> None:
    """A PATCH cut off after 3 of its 4 MiB: what the server got is kept and HEAD tells where it stopped;
    the orchestrator is stopped and started again; HEAD tells the same, and the rest completes the upload.
    (No ML service: the ingest jobs wait for it.) A POST body a dead process left half received is removed
    at start; a job over UPLOAD_DIR is resumed."""
    data = _wav(4 << 20)
    settings = make_settings(
        tmp_path / "data", f"http://127.0.0.1:{free_port()}", [tmp_path / "roots"], ml_retry_deadline_s=120
    )
    async with running_orchestrator(settings) as first:
        text_job = (await first.client.post("/jobs", json={"text": "waits for the ML service"})).json()
        assert (await first.client.get(f"/jobs/{text_job['job_id']}")).json()["state"] in (
            "queued",
            "running",
        )
        created = await first.client.post(
            "/uploads/tus",
            headers={
                **TUS,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": _metadata(filename="talk.wav"),
            },
        )
        path = created.headers["location"].split(first.url, 1)[1]
        await _cut_off_patch(first.url, path, 0, data[: 3 << 20], len(data))
        deadline = asyncio.get_running_loop().time() + 30
        while (kept := await _offset(first, path)) == 0:  # its state is written once, when the PATCH ends
            assert asyncio.get_running_loop().time() < deadline, "the cut-off PATCH kept nothing"
            await asyncio.sleep(0.05)
        assert 0 < kept <= 3 << 20
    leftover = settings.upload_root / ".partial" / "posts" / ("0" * 32)
    await asyncio.to_thread(leftover.write_bytes, b"half a body")
    async with running_orchestrator(settings) as second:
        assert not await asyncio.to_thread(leftover.exists)
        # A job under UPLOAD_DIR is resumed though ALLOWED_ROOTS does not name UPLOAD_DIR.
        resumed = (await second.client.get(f"/jobs/{text_job['job_id']}")).json()
        assert resumed["state"] in ("queued", "running") and resumed["error"] is None, resumed
        assert await _offset(second, path) == kept
        rest = await second.client.patch(
            path, content=data[kept:], headers={**PATCH, "Upload-Offset": str(kept)}
        )
        assert rest.status_code == 204, rest.text
        result = (await second.client.get(path)).json()["result"]
        assert await asyncio.to_thread(Path(result["path"]).read_bytes) == data
        assert result["blake3"] == blake3.blake3(data).hexdigest()
        assert Path(result["path"]).parent.parent == settings.upload_root / "media"


async def test_a_url_job_downloads_then_ingests(
    orch: RunningOrchestrator, origin: Origin, uploaded: Uploaded
) -> None:
    ml_before = orch.services.ml.requests
    resp = await orch.client.post(
        "/jobs", json={"url": f"{origin.url}/pictures/harbour.jpg?from=test", "collection": COLLECTION}
    )
    assert resp.status_code == 202, resp.text
    job: dict[str, Any] = await orch.wait_job(resp.json()["job_id"])
    assert job["state"] == "completed", job
    assert job["source"]["state"] == "downloaded" and job["source"]["bytes"] == len(JPEG)
    assert job["options"]["url"].endswith("/pictures/harbour.jpg?from=test")
    downloaded = Path(str(job["path"])) / "harbour.jpg"
    assert await asyncio.to_thread(downloaded.read_bytes) == JPEG
    assert downloaded.parent.parent == upload_root(orch) / COLLECTION
    assert orch.services.ml.requests == ml_before  # content the collection already has
    assert str(downloaded) in await search_paths(orch, "ferry timetable pier", COLLECTION)


async def test_url_jobs_refused_leave_the_collection_untouched(
    orch: RunningOrchestrator, origin: Origin, uploaded: Uploaded
) -> None:
    services = orch.services
    points = await services.store.count(COLLECTION)
    roots = await services.catalog.roots(COLLECTION)
    before = files_under(upload_root(orch))
    closed = free_port()
    cases = {
        "http://10.0.0.5/x.jpg": "address 10.0.0.5 is private (URL_ALLOWED_NETWORKS allows 127.0.0.0/8)",
        f"{origin.url}/to-metadata": "address 169.254.169.254 is link-local (URL_ALLOWED_NETWORKS allows",
        f"{origin.url}/big.jpg": f"larger than URL_MAX_BYTES ({URL_MAX} bytes)",
        f"http://127.0.0.1:{closed}/x.jpg": f"unreachable: 127.0.0.1:{closed} (",
    }
    for url, reason in cases.items():
        resp = await orch.client.post("/jobs", json={"url": url, "collection": COLLECTION})
        assert resp.status_code == 202, resp.text
        job = await orch.wait_job(resp.json()["job_id"])
        assert job["state"] == "failed", job
        assert str(job["error"]).startswith("FetchError: ") and reason in str(job["error"]), job["error"]
        assert not await asyncio.to_thread(Path(str(job["path"])).exists)
    assert await services.store.count(COLLECTION) == points
    assert await services.catalog.roots(COLLECTION) == roots
    assert files_under(upload_root(orch)) == before


async def test_text_jobs_and_job_bodies(orch: RunningOrchestrator) -> None:
    text = "Minutes of the harbour committee: the night ferry to Valparaiso moves to pier nine in March."
    resp = await orch.client.post(
        "/jobs", json={"text": text, "title": "../Harbour minutes", "collection": "notes"}
    )
    assert resp.status_code == 202, resp.text
    job = await orch.wait_job(resp.json()["job_id"])
    assert job["state"] == "completed", job
    stored = Path(str(job["path"])) / "Harbour minutes.txt"
    assert stored.read_text("utf-8") == text and stored.parent.parent == upload_root(orch) / "notes"
    assert str(stored) in await search_paths(orch, "night ferry to Valparaiso", "notes")

    # A repeated Idempotency-Key: the job it created, and no second directory.
    notes = upload_root(orch) / "notes"
    dirs = len(await asyncio.to_thread(lambda: list(notes.iterdir())))
    once = {"Idempotency-Key": "notes-once"}
    first = await orch.client.post("/jobs", json={"text": "a", "collection": "notes"}, headers=once)
    second = await orch.client.post("/jobs", json={"text": "a", "collection": "notes"}, headers=once)
    assert first.json()["job_id"] == second.json()["job_id"]
    assert len(await asyncio.to_thread(lambda: list(notes.iterdir()))) == dirs + 1
    await orch.wait_job(first.json()["job_id"])

    # UPLOAD_DIR is an ingest root though ALLOWED_ROOTS does not name it.
    again = await orch.client.post("/jobs", json={"path": str(stored.parent), "collection": "notes"})
    assert again.status_code == 202, again.text
    assert (await orch.wait_job(again.json()["job_id"]))["state"] == "completed"

    for body in (
        {},
        {"path": "/x", "url": "http://example.com/a.jpg"},
        {"url": "http://example.com/a.jpg", "text": "a"},
        {"title": "t", "path": "/x"},
        {"url": "ftp://example.com/a.jpg"},
        {"url": "not a url"},
        {"text": ""},
        {"text": "a", "options": {"watch": True}},  # a watch needs a folder
        {"url": "http://example.com/a.jpg", "options": {"watch": True}},
    ):
        resp = await orch.client.post("/jobs", json=body)
        assert resp.status_code == 422, (body, resp.text)


async def test_tenants_upload_only_into_their_own_collections(tmp_path: Path) -> None:
    """With TENANT_KEYS, an upload claims its collection for its tenant like a job does; another tenant
    can neither upload into it (409) nor see or continue the first one's resumable upload (404)."""
    acme, globex = {"X-API-Key": "acme-key-0123456789"}, {"X-API-Key": "globex-key-0123456789"}
    settings = make_settings(
        tmp_path / "data",
        f"http://127.0.0.1:{free_port()}",
        [tmp_path / "roots"],
        tenant_keys=f"acme:{acme['X-API-Key']},globex:{globex['X-API-Key']}",
    )
    async with running_orchestrator(settings) as orch:
        created = await orch.client.post(
            "/uploads/tus",
            headers={
                **acme,
                **TUS,
                "Upload-Length": str(len(JPEG)),
                "Upload-Metadata": _metadata(filename="a.jpg", collection="acme-photos"),
            },
        )
        assert created.status_code == 201, created.text
        path = created.headers["location"].split(orch.url, 1)[1]
        assert (await orch.client.head(path, headers={**acme, **TUS})).status_code == 200
        assert (await orch.client.head(path, headers={**globex, **TUS})).status_code == 404
        stolen = await orch.client.patch(
            path, content=JPEG, headers={**globex, **PATCH, "Upload-Offset": "0"}
        )
        assert stolen.status_code == 404
        taken = await orch.client.post(
            "/uploads", files={"file": ("b.jpg", JPEG)}, data={"collection": "acme-photos"}, headers=globex
        )
        assert taken.status_code == 409, taken.text
        mine = await orch.client.post(
            "/uploads", files={"file": ("b.jpg", JPEG)}, data={"collection": "globex-photos"}, headers=globex
        )
        assert mine.status_code == 201, mine.text
        assert (await orch.client.post("/uploads", files={"file": ("b.jpg", JPEG)})).status_code == 401
