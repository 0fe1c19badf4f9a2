"""The Qdrant cluster settings reach the server: shard/replica counts and the write consistency factor when a
collection (and each companion) is created, the write ordering on every write. Checked against the stand-in
server (scripts/qdrant_standin.py), which reports a collection's creation parameters as a server does and
lists the requests it served; plus the stand-in itself: refusing what a server refuses, applying concurrent
writers one at a time."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from qdrant_client import AsyncQdrantClient

from orchestrator.clients.qdrant_cluster import QdrantCluster
from orchestrator.clients.vector_factory import open_vector_store
from orchestrator.clients.vectors import CollectionSpec, PointRecord, VectorStore
from orchestrator.config import Settings
from tests.support.qdrant_server import QdrantStandIn

SPEC = CollectionSpec(dense={"text": 2}, keyword_indexes=("kind",))
FACES = CollectionSpec(dense={"face": 2}, sparse=())
# What each adapter write asks of the server: upsert, set_payload, set_payloads (a batch), delete.
WRITES = {
    ("PUT", "points"),
    ("POST", "points/payload"),
    ("POST", "points/batch"),
    ("POST", "points/delete"),
}


def _point(label: str) -> PointRecord:
    return PointRecord(str(uuid.uuid5(uuid.NAMESPACE_URL, label)), {"text": [1.0, 0.0]}, {}, {"kind": label})


async def _write_everything(store: VectorStore, name: str) -> None:
    await store.upsert(name, [_point("a"), _point("b")])
    a, b = _point("a").id, _point("b").id
    await store.set_payload(name, [a], {"paths": ["/x"]})
    await store.set_payloads(name, {a: {"paths": ["/x", "/y"]}, b: {"paths": ["/z"]}})
    await store.delete(name, [b])


async def _writes_to(standin: QdrantStandIn, name: str) -> list[dict[str, str]]:
    """The query of each write request the stand-in served for collection `name`, with what it wrote."""
    prefix = f"/collections/{name}/"
    found = []
    for request in await asyncio.to_thread(standin.received):
        tail = request["path"].removeprefix(prefix)
        if request["path"].startswith(prefix) and (request["method"], tail) in WRITES | {("PUT", "index")}:
            found.append({"what": f"{request['method']} {tail}", **request["query"]})
    return found


async def test_cluster_settings_reach_creation_and_every_write(
    qdrant_standin: QdrantStandIn, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        qdrant_url=qdrant_standin.url,
        qdrant_shard_number=3,
        qdrant_replication_factor=2,
        qdrant_write_consistency_factor=2,
        qdrant_write_ordering="medium",
    )
    # As Services.open builds it.
    store = open_vector_store(
        settings.data_dir, settings.qdrant_url, settings.qdrant_api_key, settings.qdrant_cluster
    )
    name = f"c{uuid.uuid4().hex[:12]}"
    raw = AsyncQdrantClient(url=qdrant_standin.url, check_compatibility=False)
    try:
        await store.ensure_collection(name, SPEC)
        await store.ensure_collection(f"{name}_faces", FACES)  # a companion
        await _write_everything(store, name)
        for collection in (name, f"{name}_faces"):
            params = (await raw.get_collection(collection)).config.params
            assert (params.shard_number, params.replication_factor, params.write_consistency_factor) == (
                3,
                2,
                2,
            )
        writes = await _writes_to(qdrant_standin, name)
        assert {w["what"] for w in writes} == {f"{m} {t}" for m, t in WRITES} | {"PUT index"}
        assert all(w.get("ordering") == "medium" and w.get("wait") == "true" for w in writes), writes
    finally:
        for collection in (name, f"{name}_faces"):
            await store.delete_collection(collection)
        await raw.close()
        await store.close()


async def test_by_default_writes_are_strong_and_creation_leaves_the_layout_to_the_server(
    qdrant_standin: QdrantStandIn, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, qdrant_url=qdrant_standin.url)
    assert settings.qdrant_cluster == QdrantCluster(write_ordering="strong")
    assert settings.qdrant_cluster.collection_params() == {}  # nothing sent: the server's defaults
    store = open_vector_store(
        settings.data_dir, settings.qdrant_url, settings.qdrant_api_key, settings.qdrant_cluster
    )
    name = f"d{uuid.uuid4().hex[:12]}"
    try:
        await store.ensure_collection(name, SPEC)
        await _write_everything(store, name)
        writes = await _writes_to(qdrant_standin, name)
        assert len(writes) == 5 and all(w.get("ordering") == "strong" for w in writes), writes
    finally:
        await store.delete_collection(name)
        await store.close()


@pytest.mark.parametrize(
    "env",
    [
        {"qdrant_write_ordering": "eventual"},
        {"qdrant_shard_number": 0},
        {"qdrant_replication_factor": 0},
        {"qdrant_replication_factor": 2, "qdrant_write_consistency_factor": 3},
    ],
)
def test_impossible_cluster_settings_fail_at_start(env: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **env)


async def test_the_standin_refuses_what_a_server_refuses(qdrant_standin: QdrantStandIn) -> None:
    name = f"e{uuid.uuid4().hex[:12]}"
    body = {"vectors": {"text": {"size": 2, "distance": "Cosine"}}}
    async with httpx.AsyncClient(base_url=qdrant_standin.url, timeout=30.0) as http:
        try:
            assert (await http.put(f"/collections/{name}", json=body)).json()["result"] is True
            again = await http.put(f"/collections/{name}", json=body)
            assert again.status_code == 400 and "already exists" in again.json()["status"]["error"]
            points = {"points": [{"id": str(uuid.uuid4()), "vector": {"text": [1, 0]}}]}
            bad_order = await http.put(f"/collections/{name}/points?wait=true&ordering=eventual", json=points)
            assert bad_order.status_code == 400 and "error" in bad_order.json()["status"]
            bad_body = await http.put(f"/collections/{name}/points", json={"points": "none"})
            assert bad_body.status_code == 400 and "Format error" in bad_body.json()["status"]["error"]
            missing = await http.post("/collections/nope/points/count", json={"exact": True})
            assert missing.status_code == 404
            assert missing.json()["status"]["error"] == "Not found: Collection `nope` doesn't exist!"
            counted = (await http.post(f"/collections/{name}/points/count", json={})).json()
            assert counted["status"] == "ok" and counted["result"] == {"count": 0}
            assert isinstance(counted["time"], float)
        finally:
            await http.delete(f"/collections/{name}")


async def test_the_standin_applies_concurrent_writers_one_at_a_time(
    qdrant_standin: QdrantStandIn, tmp_path: Path
) -> None:
    """Two stores (as two worker processes hold) write at once: every write lands, reads answer meanwhile."""
    name = f"f{uuid.uuid4().hex[:12]}"
    stores = [open_vector_store(tmp_path, qdrant_standin.url, None) for _ in range(2)]
    try:
        await stores[0].ensure_collection(name, SPEC)
        batches = [[_point(f"{k}-{j}") for j in range(5)] for k in range(20)]
        shared = _point("shared").id
        await stores[0].upsert(name, [_point("shared")])
        await asyncio.gather(
            *(stores[k % 2].upsert(name, batch) for k, batch in enumerate(batches)),
            *(stores[k % 2].set_payload(name, [shared], {f"key{k}": k}) for k in range(10)),
            *(stores[1].count(name) for _ in range(5)),
        )
        assert await stores[1].count(name) == 101
        payload = (await stores[0].retrieve(name, [shared]))[shared]
        assert {f"key{k}" for k in range(10)} <= set(payload)
    finally:
        await stores[0].delete_collection(name)
        for store in stores:
            await store.close()
