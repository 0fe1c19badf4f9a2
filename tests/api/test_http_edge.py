"""The orchestrator's HTTP edge over real loopback HTTP (no ML service needed: jobs wait for it, which keeps
them active): trusted hosts, strict query parameters and bodies, the body size limit, WebSocket close codes,
event producers stopping when their client goes, files served only through a checked descriptor, deleting
a collection a job writes to."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
import yaml  # type: ignore[import-untyped]  # no stubs in the lock

from orchestrator.clients.vectors import CollectionSpec, PointRecord
from orchestrator.config import Settings
from orchestrator.file_index import IndexedFile
from tests.support.app_factory import counting_store, make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator
from tests.support.polling import until
from tests.test_deploy_files import ROOT, compose_env, interpolate, python_snippet

DOWN_ML = "http://127.0.0.1:9"  # nothing listens: a job waits for it (ML_RETRY_DEADLINE_S) and stays active


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    (tmp_path / "media").mkdir(exist_ok=True)
    values: dict[str, object] = {"ml_retry_deadline_s": 120.0, **overrides}
    return make_settings(tmp_path / "data", DOWN_ML, [tmp_path / "media"], **values)


async def _active_job(orch: RunningOrchestrator, path: Path, collection: str = "media") -> str:
    resp = await orch.client.post("/jobs", json={"path": str(path), "collection": collection})
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["job_id"]
    return job_id


# --- trusted hosts (DNS rebinding) ----------------------------------------------------------------------


async def test_a_foreign_host_header_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        port = orch.url.rsplit(":", 1)[1]
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.:1"):
            for path in ("/health", "/jobs", "/collections"):
                resp = await orch.client.get(path, headers={"host": host})
                assert resp.status_code == 400, (host, path, resp.status_code)
        resp = await orch.client.delete("/collections/media", headers={"host": "evil.example"})
        assert resp.status_code == 400
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
            assert (await orch.client.get("/health", headers={"host": host})).status_code == 200, host
        # The WebSocket handshake too (a browser opens it from the rebound page just as well).
        assert await _ws_handshake_status(int(port), "evil.example") == 400
        assert await _ws_handshake_status(int(port), f"127.0.0.1:{port}") == 101


async def _ws_handshake_status(port: int, host: str) -> int:
    """The status line's code of a WebSocket upgrade sent with this Host (a client library sets its own)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET /jobs/nope/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_trusted_hosts_star_turns_the_check_off(tmp_path: Path) -> None:
    settings = _settings(tmp_path, trusted_hosts="*")
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        assert (await orch.client.get("/health", headers={"host": "anything.example"})).status_code == 200


def test_trusted_host_list(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).trusted_host_list == ["localhost", "127.0.0.1", "[::1]"]
    named = Settings(data_dir=tmp_path, host="Archivist.LAN", api_key="k")
    assert named.trusted_host_list == ["localhost", "127.0.0.1", "[::1]", "archivist.lan"]
    assert "0.0.0.0" not in Settings(data_dir=tmp_path, host="0.0.0.0", api_key="k").trusted_host_list
    assert "[::]" not in Settings(data_dir=tmp_path, host="::", api_key="k").trusted_host_list
    assert Settings(data_dir=tmp_path, host="::1").trusted_host_list[-1] == "[::1]"
    assert Settings(data_dir=tmp_path, trusted_hosts="a.example, *").trusted_host_list == ["*"]
    assert Settings(data_dir=tmp_path, trusted_hosts="fe80::1").trusted_host_list == [
        "[fe80::1]",
        "127.0.0.1",
    ]


async def test_compose_lets_the_service_name_and_its_healthcheck_in(tmp_path: Path) -> None:
    """docker-compose.yml's TRUSTED_HOSTS admits the compose service name, the host's loopback (the port
    mapping) and the Host header its healthcheck sends; other names still get 400."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    env = compose_env(compose["orchestrator"])
    trusted = interpolate(env["TRUSTED_HOSTS"], {})
    settings = _settings(tmp_path, trusted_hosts=trusted, host=interpolate(env["HOST"], {}), api_key="k")
    snippet = python_snippet(compose["orchestrator"])
    healthcheck_host = re.findall(r"http://([^/]+)/", snippet)[0]
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        for host in (healthcheck_host, "orchestrator:8002", "localhost:8002", "127.0.0.1:8002"):
            assert (await orch.client.get("/health", headers={"host": host})).status_code == 200, host
        assert (await orch.client.get("/health", headers={"host": "rebound.example:8002"})).status_code == 400


# --- strict requests ------------------------------------------------------------------------------------


async def test_unknown_query_parameters_and_body_fields_are_422(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        for path in (
            "/search?q=cat&type=audio",  # the filter is media_type: never an unfiltered search
            "/search?q=cat&media_type=audio&limit=3&colection=x",
            "/health?verbose=1",
            "/jobs?state=running",
            "/collections?x=1",
            "/metrics?x=1",
            "/people?collection=media&kind=face",
            "/media/00000000-0000-0000-0000-000000000000?collection=media&x=1",
            "/jobs/nope/events?since=1",
        ):
            resp = await orch.client.get(path)
            assert resp.status_code == 422, (path, resp.status_code, resp.text)
            assert resp.json()["detail"][0]["type"] == "extra_forbidden", resp.text
        resp = await orch.client.get("/search", params={"q": "cat", "media_type": "audios"})
        assert resp.status_code == 422
        # Declared parameters still pass (here: 404, the job does not exist).
        assert (await orch.client.get("/jobs/nope/errors?offset=0&limit=5")).status_code == 404

        media = str(tmp_path / "media")
        for body in (
            {"path": media, "colection": "x"},
            {"path": media, "options": {"include_hiden": True}},
            {"path": media, "options": {"retry_failed": "false"}},  # bool("false") would be True
            {"path": media, "options": {"prune": 0}},
            {"path": media, "options": {"retry_failed": None}},
            {"path": media, "options": []},
            {"path": ""},
        ):
            resp = await orch.client.post("/jobs", json=body)
            assert resp.status_code == 422, (body, resp.text)
        resp = await orch.client.post("/ingest", json={"directory_path": media, "path": media})
        assert resp.status_code == 422
        resp = await orch.client.post("/search", json={"query": "cat", "type": "audio"})
        assert resp.status_code == 422
        # A body where the route takes none is not ignored either.
        job_id = await _active_job(orch, tmp_path / "media")
        resp = await orch.client.post(f"/jobs/{job_id}/pause", json={"force": True})
        assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body"]
        assert (await orch.client.post(f"/jobs/{job_id}/cancel")).status_code == 200


async def test_options_reach_the_job_as_a_dict(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        resp = await orch.client.post(
            "/jobs",
            json={
                "path": str(tmp_path / "media"),
                "options": {"retry_failed": True, "include_hidden": False},
            },
        )
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["job_id"]
        job = await orch.app.state.jobs.get(job_id)
        assert job.options == {"retry_failed": True, "include_hidden": False, "prune": True}
        assert (await orch.client.get(f"/jobs/{job_id}")).json()["options"] == job.options
        await orch.client.post(f"/jobs/{job_id}/cancel")
        # Unset include_hidden stays out of the dict: the pipeline then falls back to INCLUDE_HIDDEN.
        resp = await orch.client.post(
            "/ingest", json={"directory_path": str(tmp_path / "media"), "collection": "other"}
        )
        assert resp.status_code == 202
        job = await orch.app.state.jobs.get(resp.json()["job_id"])
        assert job.options == {"prune": True, "retry_failed": False}
        await orch.client.post(f"/jobs/{job.id}/cancel")


async def test_request_bodies_over_the_limit_are_413(tmp_path: Path) -> None:
    settings = _settings(tmp_path, max_request_bytes=1000)
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        big = {"path": str(tmp_path / "media"), "collection": "x" * 10, "pad": "y" * 2000}
        resp = await orch.client.post("/jobs", json=big)
        assert resp.status_code == 413

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"query": "'
            for _ in range(20):
                yield b"z" * 100
            yield b'"}'

        resp = await orch.client.post(
            "/search", content=chunked(), headers={"content-type": "application/json"}
        )
        assert resp.status_code == 413
        ok = await orch.client.post("/search", json={"query": "cat", "collection": "none"})
        assert ok.status_code != 413


# --- live events ----------------------------------------------------------------------------------------


async def _ws_close(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Connect, expect the server to close, return the close code and reason the client received."""
    async with websockets.connect(url, additional_headers=headers, proxy=None, open_timeout=10) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_websocket_close_codes_reach_the_client_and_bearer_works(tmp_path: Path) -> None:
    settings = _settings(tmp_path, api_key="s3cret")
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        key = {"x-api-key": "s3cret"}
        job_id = (
            await orch.client.post("/jobs", json={"path": str(tmp_path / "media")}, headers=key)
        ).json()["job_id"]
        ws_url = orch.url.replace("http", "ws") + f"/jobs/{job_id}/ws"
        assert (await _ws_close(ws_url))[0] == 4401
        assert (await _ws_close(ws_url, {"authorization": "Bearer wrong"}))[0] == 4401
        assert (await _ws_close(ws_url + "?api_key=wrong"))[0] == 4401
        missing = orch.url.replace("http", "ws") + "/jobs/nope/ws"
        assert await _ws_close(missing, {"authorization": "Bearer s3cret"}) == (4404, "no job nope")
        for headers, url in (
            ({"authorization": "Bearer s3cret"}, ws_url),
            (key, ws_url),
            ({}, ws_url + "?api_key=s3cret"),
        ):
            async with websockets.connect(url, additional_headers=headers, proxy=None) as ws:
                event = await asyncio.wait_for(ws.recv(), 10)
                assert f'"job_id":"{job_id}"' in str(event)
        sse = await orch.client.get(f"/jobs/{job_id}/events")
        assert sse.status_code == 401
        await orch.client.post(f"/jobs/{job_id}/cancel", headers=key)


async def test_event_producers_stop_when_their_client_goes(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        streams = orch.app.state.event_streams
        running = await _active_job(orch, tmp_path / "media")  # waits for the ML service
        # MAX_CONCURRENT_JOBS=1: this one stays queued, its status unchanged, so nothing is sent to a
        # client that left: only noticing the disconnect itself can stop its producer.
        job_id = await _active_job(orch, tmp_path / "media", "second")
        assert (await orch.client.get(f"/jobs/{job_id}")).json()["state"] == "queued"
        async with orch.client.stream("GET", f"/jobs/{job_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            assert (await asyncio.wait_for(anext(lines), 10)) == "event: progress"
            assert (await asyncio.wait_for(anext(lines), 10)).startswith('data: {"type":"progress"')
            assert streams.active == 1
        await until(
            lambda: streams.active == 0, "the SSE producer gone", 10
        )  # the client hung up mid-job: its producer is gone

        ws_url = orch.url.replace("http", "ws") + f"/jobs/{job_id}/ws"
        async with websockets.connect(ws_url, proxy=None) as ws:
            await asyncio.wait_for(ws.recv(), 10)
            assert streams.active == 1
        await until(lambda: streams.active == 0, "the WebSocket producer gone", 10)
        assert (await orch.app.state.jobs.get(job_id)).active  # the job itself goes on

        # A job that ends closes both streams with a last "end" event.
        await orch.client.post(f"/jobs/{job_id}/cancel")
        await orch.client.post(f"/jobs/{running}/cancel")
        async with orch.client.stream("GET", f"/jobs/{job_id}/events") as stream:
            body = [line async for line in stream.aiter_lines()]
        assert "event: end" in body and streams.active == 0
        async with websockets.connect(ws_url, proxy=None) as ws:
            messages = [m async for m in ws]
        assert '"type":"end"' in str(messages[-1])


# --- served files ---------------------------------------------------------------------------------------

SPEC = CollectionSpec(dense={"text": 4})


async def _point(orch: RunningOrchestrator, payload: dict[str, Any], collection: str = "media") -> str:
    store = orch.services.store
    await store.ensure_collection(collection, SPEC)
    point_id = str(uuid.uuid4())
    await store.upsert(collection, [PointRecord(point_id, {"text": [1.0, 0.0, 0.0, 0.0]}, {}, payload)])
    return point_id


def _open_fds_of(path: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                count += 1
        except OSError:
            continue
    return count


async def test_thumbnail_names_from_the_payload_are_validated(tmp_path: Path) -> None:
    """A writable Qdrant must not turn a payload into a read of any *.jpg."""
    settings = _settings(tmp_path)
    secret = tmp_path / "outside" / "secret.jpg"
    secret.parent.mkdir()
    secret.write_bytes(b"\xff\xd8\xff secret")
    good = "ab" * 32
    thumb = settings.thumbnails_dir / good[:2] / f"{good}.jpg"
    thumb.parent.mkdir(parents=True)
    thumb.write_bytes(b"\xff\xd8\xff thumbnail")
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        # data/thumbnails/../../outside/secret.jpg is tmp_path/outside/secret.jpg
        forged = await _point(orch, {"content_hash": "../outside/secret", "media_type": "image"})
        resp = await orch.client.get(f"/media/{forged}/thumbnail")
        assert resp.status_code == 404 and b"secret" not in resp.content
        bad_index = await _point(
            orch, {"content_hash": good, "media_type": "video", "chunk_index": "0/../../../outside/x"}
        )
        assert (await orch.client.get(f"/media/{bad_index}/thumbnail")).status_code == 404
        real = await _point(orch, {"content_hash": good, "media_type": "image"})
        resp = await orch.client.get(f"/media/{real}/thumbnail")
        assert resp.status_code == 200 and resp.content == b"\xff\xd8\xff thumbnail"
        # A thumbnail that is a symlink (to anywhere) is not served either.
        thumb.unlink()
        thumb.symlink_to(secret)
        resp = await orch.client.get(f"/media/{real}/thumbnail")
        assert resp.status_code == 404 and b"secret" not in resp.content


async def test_stream_serves_only_checked_regular_files_under_the_roots(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    media = tmp_path / "media"
    (media / "photos").mkdir()
    original = media / "photos" / "a.jpg"
    original.write_bytes(bytes(range(256)) * 4)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.jpg").write_bytes(b"secret" * 10)
    (media / "link.jpg").symlink_to(original)  # inside the root, but a symlink
    os.mkfifo(media / "pipe.jpg")  # would block a plain open
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        refused = [
            str(outside / "a.jpg"),
            f"{media}/../outside/a.jpg",
            str(media / "link.jpg"),
            str(media / "pipe.jpg"),
            str(media / "photos"),
            "relative/a.jpg",
            f"{media}/a\x00.jpg",
        ]
        for path in refused:
            point = await _point(orch, {"paths": [path], "mime": "image/jpeg"})
            resp = await orch.client.get(f"/media/{point}/stream")
            assert resp.status_code == 404 and b"secret" not in resp.content, path

        point = await _point(orch, {"paths": [*refused, str(original)], "mime": "image/jpeg"})
        whole = await orch.client.get(f"/media/{point}/stream")
        assert whole.status_code == 200 and whole.content == original.read_bytes()
        assert whole.headers["content-type"] == "image/jpeg" and whole.headers["accept-ranges"] == "bytes"
        part = await orch.client.get(f"/media/{point}/stream", headers={"range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == original.read_bytes()[10:20]
        unsatisfiable = await orch.client.get(f"/media/{point}/stream", headers={"range": "bytes=5000-"})
        assert unsatisfiable.status_code == 416
        await until(
            lambda: _open_fds_of(original) == 0, "every descriptor closed", 10
        )  # every descriptor was closed

        # The parent directory swapped for a symlink that leads outside: refused on the opened file.
        (media / "photos").rename(media / "photos.orig")
        (media / "photos").symlink_to(outside)
        resp = await orch.client.get(f"/media/{point}/stream")
        assert resp.status_code == 404 and b"secret" not in resp.content


# --- metrics behind the key -----------------------------------------------------------------------------


async def test_metrics_need_the_key_when_one_is_set(tmp_path: Path) -> None:
    settings = _settings(tmp_path, api_key="s3cret")
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        assert (await orch.client.get("/metrics")).status_code == 401
        ok = await orch.client.get("/metrics", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and "archivist_jobs" in ok.text
        assert (await orch.client.get("/health")).status_code == 200


# --- deleting a collection ------------------------------------------------------------------------------


async def test_deleting_a_collection_an_active_job_writes_to_is_409(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        index = orch.services.index
        await _point(orch, {"content_hash": "ab" * 32}, collection="c")
        await _point(orch, {}, collection="c_faces")
        row = IndexedFile(str(tmp_path / "media"), "a.jpg", 1, 1, 1, "ab" * 32, 1)
        await index.mark_done("c", [row])
        job_id = await _active_job(orch, tmp_path / "media", "c")

        for name in ("c", "c_faces"):
            resp = await orch.client.delete(f"/collections/{name}")
            assert resp.status_code == 409, resp.text
            assert resp.json()["detail"]["jobs"] == [job_id]
        assert await orch.services.store.count("c") == 1 and await index.count("c") == 1

        await orch.client.post(f"/jobs/{job_id}/cancel")
        await orch.wait_job(job_id, timeout_s=30)
        resp = await orch.client.delete("/collections/c")
        assert resp.status_code == 200, resp.text
        assert not await orch.services.store.collection_exists("c")
        assert not await orch.services.store.collection_exists("c_faces")
        assert await index.count("c") == 0  # so the next ingest reads every file again
        assert (await orch.client.delete("/collections/c")).status_code == 404

        # While a deletion runs, no job for that collection (or its companions) starts.
        orch.app.state.deletions.names.add("d")
        try:
            for collection in ("d", "d_faces", "d_voices"):
                resp = await orch.client.post(
                    "/jobs", json={"path": str(tmp_path / "media"), "collection": collection}
                )
                assert resp.status_code == 409, resp.text
        finally:
            orch.app.state.deletions.names.discard("d")
