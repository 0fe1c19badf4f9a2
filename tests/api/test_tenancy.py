"""Tenants: a tenant's key reaches only its own collections, on every route; the operator's reaches all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from orchestrator.tenancy import TenantKeys, TenantKeysError
from tests.support import hostile_files as hf
from tests.support.app_factory import counting_store, make_settings
from tests.support.orchestrator_server import running_orchestrator

pytestmark = pytest.mark.slow

OPERATOR, ACME, GLOBEX = "operator-key-0123456789", "acme-key-0123456789abc", "globex-key-0123456789ab"


@asynccontextmanager
async def _clients(url: str) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    keys = {"operator": OPERATOR, "acme": ACME, "globex": GLOBEX}
    clients = {
        name: httpx.AsyncClient(base_url=url, timeout=60.0, headers={"x-api-key": k})
        for name, k in keys.items()
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


async def _wait(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    for _ in range(1200):
        body: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
        if body["state"] not in ("queued", "running", "paused"):
            return body
        await asyncio.sleep(0.1)
    raise TimeoutError(job_id)


async def test_a_tenant_reaches_only_its_own_collections(tmp_path: Path, ml_service_url: str) -> None:
    root = tmp_path / "acme-media"
    root.mkdir()
    (root / "lighthouse.png").write_bytes(hf.text_photo("LIGHTHOUSE KEEPER"))
    settings = make_settings(
        tmp_path / "data",
        ml_service_url,
        [tmp_path],
        api_key=OPERATOR,
        tenant_keys=f"acme:{ACME},globex:{GLOBEX}",
        url_allowed_networks="127.0.0.0/8",
    )
    async with running_orchestrator(settings, counting_store(settings)) as orch, _clients(orch.url) as c:
        acme, globex, operator = c["acme"], c["globex"], c["operator"]
        created = await acme.post("/jobs", json={"path": str(root), "collection": "acme-photos"})
        assert created.status_code == 202, created.text
        job_id = created.json()["job_id"]
        assert (await _wait(acme, job_id))["state"] == "completed"
        hits = (
            await acme.get("/search", params={"q": "lighthouse keeper", "collection": "acme-photos"})
        ).json()
        media_id = hits["hits"][0]["id"]
        person_routes = [("GET", "/people/person-x"), ("PATCH", "/people/person-x"), ("POST", "/people/undo")]

        # Every route that names acme's collection (or its job) answers globex as if it did not exist.
        coll = {"collection": "acme-photos"}
        refused = [
            ("GET", "/collections/acme-photos", None, None),
            ("DELETE", "/collections/acme-photos", None, None),
            ("POST", "/collections/acme-photos/reanalyze", None, None),
            ("DELETE", "/collections/acme-photos/versions/2", None, None),
            ("GET", "/search", {"q": "lighthouse", **coll}, None),
            ("POST", "/search", None, {"query": "lighthouse", **coll}),
            ("POST", "/search", None, {"media_id": media_id, **coll}),
            ("GET", f"/media/{media_id}", coll, None),
            ("GET", f"/media/{media_id}/thumbnail", coll, None),
            ("GET", f"/media/{media_id}/stream", coll, None),
            ("GET", f"/media/{media_id}/timeline", coll, None),
            ("GET", "/people", coll, None),
            *[(m, p, coll, {"name": "x"} if m == "PATCH" else None) for m, p in person_routes],
            ("POST", "/people/person-x/merge", coll, {"people": ["person-y"]}),
            ("POST", "/people/person-x/split", coll, {"clusters": ["person-y"]}),
            ("GET", f"/jobs/{job_id}", None, None),
            ("GET", f"/status/{job_id}", None, None),
            ("GET", f"/jobs/{job_id}/errors", None, None),
            ("GET", f"/jobs/{job_id}/events", None, None),
            ("POST", f"/jobs/{job_id}/pause", None, None),
            ("POST", f"/jobs/{job_id}/resume", None, None),
            ("POST", f"/jobs/{job_id}/cancel", None, None),
        ]
        for method, path, params, body in refused:
            resp = await globex.request(method, path, params=params, json=body)
            assert resp.status_code == 404, (method, path, resp.status_code, resp.text)
        image = {"image": ("x.png", hf.text_photo("LIGHTHOUSE"), "image/png")}
        resp = await globex.post("/search/image", files=image, data=coll)
        assert resp.status_code == 404, resp.text
        ws_url = orch.url.replace("http", "ws") + f"/jobs/{job_id}/ws"
        async with websockets.connect(ws_url, additional_headers={"x-api-key": GLOBEX}) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404

        # Listings leave acme's out; writing into acme's name is refused; the operator's metrics are its own.
        assert "acme-photos" not in [
            x["name"] for x in (await globex.get("/collections")).json()["collections"]
        ]
        assert job_id not in [j["job_id"] for j in (await globex.get("/jobs")).json()["jobs"]]
        taken = await globex.post("/jobs", json={"path": str(root), "collection": "acme-photos"})
        assert taken.status_code == 409, taken.text
        taken = await globex.post("/jobs", json={"text": "hello", "title": "t", "collection": "acme-photos"})
        assert taken.status_code == 409, taken.text
        upload = {"file": ("x.png", hf.text_photo("X"), "image/png")}
        taken = await globex.post("/uploads", files=upload, data={"collection": "acme-photos"})
        assert taken.status_code == 409, taken.text
        stream = {"url": "rtsp://127.0.0.1:9/live", "collection": "acme-photos"}
        assert (await globex.post("/streams", json=stream)).status_code == 409
        mine = await acme.post("/streams", json=stream)
        assert mine.status_code == 202, mine.text
        stream_id = mine.json()["stream_id"]
        assert (await globex.get(f"/streams/{stream_id}")).status_code == 404
        assert (await globex.post(f"/streams/{stream_id}/cancel")).status_code == 404
        assert stream_id not in [s["stream_id"] for s in (await globex.get("/streams")).json()["streams"]]
        assert (await acme.post(f"/streams/{stream_id}/cancel")).status_code == 200
        assert (await globex.get("/metrics")).status_code == 403

        # acme reads all of it; the operator too; a collection from before tenants is the operator's alone.
        assert (await acme.get(f"/media/{media_id}/thumbnail", params=coll)).status_code == 200
        assert (await acme.get(f"/jobs/{job_id}")).status_code == 200
        assert [x["name"] for x in (await acme.get("/collections")).json()["collections"]] == ["acme-photos"]
        assert (await operator.get("/collections/acme-photos")).status_code == 200
        assert (await operator.get("/metrics")).status_code == 200
        signed = hits["hits"][0]["thumbnail_url"]  # made for acme, works without a key (an <img>)
        async with httpx.AsyncClient(base_url=orch.url) as anonymous:
            assert (await anonymous.get(signed)).status_code == 200
            assert (await anonymous.get("/collections")).status_code == 401
        assert (await acme.delete("/collections/acme-photos")).status_code == 200


def test_tenant_keys_are_checked_at_start_up() -> None:
    keys = TenantKeys.parse("acme:0123456789abcdef, globex:fedcba9876543210,acme:another-long-key-000")
    assert keys.tenant_for("another-long-key-000") == "acme"
    assert keys.tenant_for("0123456789abcdef") == "acme"
    assert keys.tenant_for("nope") is None
    for bad in ("acme", "ACME:0123456789abcdef", "acme:short", "a:0123456789abcdef,b:0123456789abcdef"):
        with pytest.raises(TenantKeysError):
            TenantKeys.parse(bad)
