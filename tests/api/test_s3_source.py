"""Object storage as a source, end to end: a real S3-compatible server (moto_server, credentials checked,
every request it serves recorded), a real orchestrator over loopback, the session's ML service.

An s3://bucket/prefix root goes through the same four stages as a folder: searchable, its paths are s3://
URIs, its originals are streamed from the store (Range too); a re-ingest downloads nothing unchanged (the
server's own record of GETs says so) and asks the ML service nothing; a changed object alone is read again,
a deleted one leaves the collection; a re-analysis works over it. Refusals (a bucket not allowed) are 403;
a store that cannot be used (bucket missing or forbidden, wrong credentials, nothing listening) fails the
job with its reason and leaves the collection as it was."""

from __future__ import annotations

import asyncio
import io
import random
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest

from orchestrator.config import Settings
from orchestrator.ids import point_id
from orchestrator.sources.roots import S3Prefix
from orchestrator.sources.s3 import ListedObject, ObjectError, ObjectStorage, etag_inode
from scripts.bench_pipeline import WORDS
from scripts.make_samples import scene_image, text_image
from scripts.ml_process import free_port
from scripts.moto_process import MotoServer, running_moto
from tests.support.app_factory import make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow

BUCKET = "photos"
COLLECTION = "s3media"
ROOT = f"s3://{BUCKET}/photos"


def png(text: str) -> bytes:
    out = io.BytesIO()
    text_image(text, width=700, height=110, size=40).save(out, format="PNG")
    return out.getvalue()


def jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    scene_image(random.Random(seed), WORDS, seed, (160, 120)).save(out, format="JPEG", quality=85)
    return out.getvalue()


FLOOD = png("BREAKING NEWS: FLOOD IN VALENCIA")
INVOICE = png("INVOICE 0173 TOTAL DUE 4210 EUR")
RECEIPT = png("HARBOUR FERRY TICKET RETURN")
CAT = jpeg(7)
FLOOD_KEY = "photos/news/inundación 東京.png"  # non-ASCII and a space: listed, fetched, served as they are
OBJECTS = {
    FLOOD_KEY: FLOOD,
    "photos/docs/invoice.png": INVOICE,
    "photos/cat.jpg": CAT,
    "photos/broken.jpg": b"\xff\xd8\xff\xe0 not a picture at all" * 20,  # a corrupt object: fails alone
    "photos/news/.draft.png": RECEIPT,  # hidden: not ingested
    "photos/odd//key.png": RECEIPT,  # an empty key part: reported, never ingested
    "elsewhere/outside.png": RECEIPT,  # outside the prefix
}


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with running_moto(
        tmp_path_factory.mktemp("moto"), [BUCKET, "missing"], locked=("locked",), record=True
    ) as server:
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        for key, body in OBJECTS.items():
            client.put_object(Bucket=BUCKET, Key=key, Body=body)
        yield server


def s3_settings(data: Path, ml_url: str, moto: MotoServer, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "s3_endpoint_url": moto.url,
        "s3_access_key_id": moto.access_key_id,
        "s3_secret_access_key": moto.secret_access_key,
        "s3_allowed_buckets": f"{BUCKET},missing,locked",
        "s3_download_workers": 2,
        "s3_spool_bytes": 2 * max(len(b) for b in OBJECTS.values()),  # two copies at most: backpressure
        **overrides,
    }
    return make_settings(data, ml_url, [data.parent], **values)


@pytest.fixture(scope="module")
async def orch(
    tmp_path_factory: pytest.TempPathFactory, ml_service_url: str, moto: MotoServer
) -> AsyncIterator[RunningOrchestrator]:
    base = tmp_path_factory.mktemp("s3orch")
    async with running_orchestrator(s3_settings(base / "data", ml_service_url, moto)) as running:
        yield running


async def ingest(orch: RunningOrchestrator, path: str = ROOT, **options: Any) -> dict[str, Any]:
    resp = await orch.client.post("/jobs", json={"path": path, "collection": COLLECTION, "options": options})
    assert resp.status_code == 202, resp.text
    return await orch.wait_job(resp.json()["job_id"], timeout_s=120)


async def search(orch: RunningOrchestrator, q: str) -> list[dict[str, Any]]:
    resp = await orch.client.get("/search", params={"q": q, "collection": COLLECTION, "limit": 5})
    assert resp.status_code == 200, resp.text
    hits: list[dict[str, Any]] = resp.json()["hits"]
    return hits


async def test_ingest_stream_reingest_change_delete_and_reanalyse(
    orch: RunningOrchestrator, moto: MotoServer
) -> None:
    services = orch.services
    gets_before = len(moto.object_gets(BUCKET))
    status = await ingest(orch)
    assert status["state"] == "completed", status
    counters = status["counters"]
    assert counters["upserted"] == 3 and counters["failed"] == 2, status["errors"]
    reasons = {e["path"]: e["reason"] for e in status["errors"]}
    assert reasons[f"s3://{BUCKET}/photos/broken.jpg"].startswith("cannot decode image")
    assert "not ingested" in reasons[f"s3://{BUCKET}/photos/odd//"]
    fetched = moto.object_gets(BUCKET)[gets_before:]
    assert sorted(fetched) == sorted(
        [FLOOD_KEY, "photos/docs/invoice.png", "photos/cat.jpg", "photos/broken.jpg"]
    )
    assert status["source"]["downloads"] == 4
    spool = services.settings.data_dir / ".spool" / status["job_id"]
    assert not spool.exists()  # every copy was released, the job's spool removed

    hits = await search(orch, "flood in valencia")
    assert hits and hits[0]["path"] == f"s3://{BUCKET}/{FLOOD_KEY}"
    news = await orch.client.get(
        "/search",
        params={"q": "flood", "collection": COLLECTION, "path_prefix": f"s3://{BUCKET}/photos/news"},
    )
    assert [h["path"] for h in news.json()["hits"]] == [f"s3://{BUCKET}/{FLOOD_KEY}"]  # filters as folders
    stream = await orch.client.get(f"/media/{hits[0]['id']}/stream", params={"collection": COLLECTION})
    assert stream.status_code == 200 and stream.content == FLOOD
    assert stream.headers["content-type"] == "image/png"
    part = await orch.client.get(
        f"/media/{hits[0]['id']}/stream", params={"collection": COLLECTION}, headers={"Range": "bytes=8-23"}
    )
    assert part.status_code == 206 and part.content == FLOOD[8:24]
    assert part.headers["content-range"] == f"bytes 8-23/{len(FLOOD)}"
    beyond = await orch.client.get(
        f"/media/{hits[0]['id']}/stream",
        params={"collection": COLLECTION},
        headers={"Range": f"bytes={len(FLOOD) + 10}-"},
    )
    assert beyond.status_code == 416
    thumb = await orch.client.get(f"/media/{hits[0]['id']}/thumbnail", params={"collection": COLLECTION})
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"  # local, as for files

    # Unchanged: nothing downloaded (the corrupt object is a remembered failure), no ML call, no write.
    gets_before, ml_before = len(moto.object_gets(BUCKET)), services.ml.requests
    status = await ingest(orch)
    assert status["state"] == "completed", status
    assert moto.object_gets(BUCKET)[gets_before:] == []
    assert services.ml.requests == ml_before
    assert status["counters"]["unchanged"] == 3 and status["counters"]["hashed"] == 0
    assert status["counters"]["failed_before"] == 1

    # One object changes, one goes: only the changed one is read; the deleted one leaves the collection.
    client = moto.client()
    client.put_object(Bucket=BUCKET, Key="photos/docs/invoice.png", Body=RECEIPT)
    client.delete_object(Bucket=BUCKET, Key="photos/cat.jpg")
    gets_before = len(moto.object_gets(BUCKET))
    status = await ingest(orch)
    assert status["state"] == "completed", status
    assert moto.object_gets(BUCKET)[gets_before:] == ["photos/docs/invoice.png"]
    assert status["counters"]["pruned"] == 1 and status["counters"]["unchanged"] == 1
    assert await services.store.count(COLLECTION) == 2
    assert (await search(orch, "harbour ferry ticket"))[0]["path"] == f"s3://{BUCKET}/photos/docs/invoice.png"
    assert await services.store.retrieve(COLLECTION, [point_id(blake3.blake3(INVOICE).hexdigest(), 0)]) == {}

    # A re-analysis walks the s3 root again: every indexed object is read, the cache answers but for tags.
    gets_before, ml_before = len(moto.object_gets(BUCKET)), services.ml.requests
    resp = await orch.client.post(f"/collections/{COLLECTION}/reanalyze", json={"tasks": ["tags"]})
    assert resp.status_code == 202, resp.text
    done = await orch.wait_job(resp.json()["job_id"], timeout_s=120)
    assert done["state"] == "completed", done
    assert sorted(moto.object_gets(BUCKET)[gets_before:]) == [
        "photos/docs/invoice.png",
        FLOOD_KEY,
    ]
    calls = done["ml_calls_by_task"]
    assert isinstance(calls, dict) and calls.get("tags", 0) >= 1 and "ocr" not in calls
    assert await services.store.count(COLLECTION) == 2


async def test_refused_roots(orch: RunningOrchestrator) -> None:
    for path, code, words in [
        ("s3://other-bucket/x", 403, "not in S3_ALLOWED_BUCKETS"),
        ("s3://Bad_Bucket/x", 400, "not a bucket name"),
        ("s3://photos/a//b", 400, "empty"),
    ]:
        resp = await orch.client.post("/jobs", json={"path": path, "collection": COLLECTION})
        assert resp.status_code == code, resp.text
        assert words in resp.json()["detail"]
    resp = await orch.client.post(
        "/jobs", json={"path": ROOT, "collection": COLLECTION, "options": {"watch": True}}
    )
    assert resp.status_code == 400 and "local folder" in resp.json()["detail"]


async def test_the_cli_takes_an_s3_uri(orch: RunningOrchestrator) -> None:
    """`archivist ingest s3://…` sends the URI as it is (a folder is made absolute; a URI must not be)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator.cli",
        "ingest",
        ROOT,
        "-c",
        COLLECTION,
        "--no-wait",
        "--url",
        orch.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, out.decode()
    job = (await orch.client.get("/jobs")).json()["jobs"][0]
    assert job["path"] == ROOT
    assert (await orch.wait_job(job["job_id"], timeout_s=120))["state"] == "completed"


async def test_a_store_that_cannot_be_used_fails_the_job_and_touches_nothing(
    orch: RunningOrchestrator, moto: MotoServer
) -> None:
    services = orch.services
    if not await services.store.collection_exists(COLLECTION):
        assert (await ingest(orch))["state"] == "completed"
    points, indexed = await services.store.count(COLLECTION), await services.index.count(COLLECTION)
    settings = services.settings
    real = services.objects
    cases = [
        ("s3://missing/x", real, "the bucket does not exist"),
        ("s3://locked", real, "access denied"),
        (ROOT, ObjectStorage(settings.model_copy(update={"s3_secret_access_key": "wrong"})), "secret key"),
        (ROOT, ObjectStorage(settings.model_copy(update={"s3_access_key_id": "AKIANOTAKEY"})), "access key"),
        (
            ROOT,
            ObjectStorage(settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"})),
            "unreachable",
        ),
    ]
    try:
        for path, objects, words in cases:
            services.objects = objects
            status = await ingest(orch, path)
            assert status["state"] == "failed", status
            assert "ObjectStoreError" in status["error"] and words in status["error"], status["error"]
            assert await services.store.count(COLLECTION) == points
            assert await services.index.count(COLLECTION) == indexed
    finally:
        services.objects = real
    assert (await search(orch, "flood in valencia"))[0]["path"] == f"s3://{BUCKET}/{FLOOD_KEY}"


def test_an_object_overwritten_after_listing_is_not_read(moto: MotoServer, tmp_path: Path) -> None:
    """The download asks for the listed version (If-Match) and checks what came: an object overwritten in
    between fails with "file changed while it was being read", and leaves nothing behind."""
    client = moto.client()
    client.put_object(Bucket=BUCKET, Key="race/a.png", Body=FLOOD)
    settings = Settings(
        s3_endpoint_url=moto.url,
        s3_access_key_id=moto.access_key_id,
        s3_secret_access_key=moto.secret_access_key,
        data_dir=tmp_path,
    )
    storage = ObjectStorage(settings)
    page = storage.list_page(S3Prefix(BUCKET, "race"), "race/", None)
    (listed,) = page.objects
    assert listed.size == len(FLOOD) and listed.etag.startswith('"')
    copy = storage.download(BUCKET, listed, tmp_path / "ok.part", lambda: False)
    assert copy.path.read_bytes() == FLOOD and copy.path.stat().st_mtime_ns == listed.mtime_ns
    same_size = FLOOD[:-1] + bytes([FLOOD[-1] ^ 1])  # only the ETag tells them apart
    client.put_object(Bucket=BUCKET, Key="race/a.png", Body=same_size)  # overwritten after the listing
    with pytest.raises(ObjectError, match="file changed while it was being read"):
        storage.download(BUCKET, listed, tmp_path / "stale.part", lambda: False)
    assert not (tmp_path / "stale.part").exists()
    gone = ListedObject("race/none.png", 5, listed.mtime_ns, listed.etag)
    with pytest.raises(ObjectError, match="gone"):
        storage.download(BUCKET, gone, tmp_path / "gone.part", lambda: False)
    assert etag_inode(listed.etag) != etag_inode(
        storage.list_page(S3Prefix(BUCKET, "race"), "race/", None).objects[0].etag
    )
