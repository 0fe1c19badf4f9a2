"""VectorStore over Qdrant Edge: the Qdrant engine in-process, one shard per collection.

Layout under the store's root: `<name>/shard/` is the EdgeShard, `<name>/spec.json` the CollectionSpec
it was made from. spec.json is written last, so a directory without it is a creation that never
finished and holds nothing anyone was told was stored.

Every shard call runs on one thread owned by the store: shard calls block (fsync, index builds), so
they must stay off the event loop, and one thread serialises them without locks, also over the
store's own map of open shards, which only that thread touches. The engine holds the GIL while it works,
so `optimize()` (minutes at 100k points) runs in a child process (`python -m` this module) on the closed
shard: the store's thread waits for it without the GIL, and the event loop goes on.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import qdrant_edge as qe
import structlog

from orchestrator.clients.vector_params import HNSW_EF_CONSTRUCT, HNSW_EF_SEARCH, HNSW_M
from orchestrator.clients.vectors import (
    RRF_K,
    CollectionNotFoundError,
    CollectionSpec,
    CollectionSpecMismatchError,
    PointRecord,
    ScoredPoint,
    SearchFilter,
    SearchRequest,
    SparseVector,
    canonical_id,
    check_points,
    dense_vectors_of,
    filter_conditions,
    search_branches,
    validate_collection_name,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Below this many KB of vectors matching a filter, search scans them exactly instead of walking the
# graph; Qdrant's default (10 MB, ~6.5k 384-d float vectors).
FULL_SCAN_THRESHOLD_KB = 10_000

_SPEC_FILE = "spec.json"
_SHARD_DIR = "shard"


@dataclass(frozen=True, slots=True)
class EdgeIndexParams:
    """HNSW build (m, ef_construct) and search (hnsw_ef) parameters; the defaults are measured."""

    m: int = HNSW_M
    ef_construct: int = HNSW_EF_CONSTRUCT
    hnsw_ef: int | None = HNSW_EF_SEARCH  # None: the engine's own default
    full_scan_threshold_kb: int = FULL_SCAN_THRESHOLD_KB


@dataclass(slots=True)
class _Collection:
    shard: qe.EdgeShard
    spec: CollectionSpec


class EdgeVectorStore:
    """Embedded Qdrant Edge: collections are shards under `root`; writes are flushed before returning."""

    def __init__(self, root: Path, index: EdgeIndexParams | None = None) -> None:
        self._root = Path(root)
        self._index = index or EdgeIndexParams()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-edge")
        self._open: dict[str, _Collection] = {}  # touched only on the executor thread
        self._closed = False

    # --- plumbing ---------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("EdgeVectorStore is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def _dir(self, name: str) -> Path:
        return self._root / validate_collection_name(name)

    def _config(self, spec: CollectionSpec) -> qe.EdgeConfig:
        return _edge_config(spec, self._index)

    def _get(self, name: str) -> _Collection:
        coll = self._open.get(name)
        if coll is not None:
            return coll
        spec_path = self._dir(name) / _SPEC_FILE
        if not spec_path.is_file():
            raise CollectionNotFoundError(name)
        spec = CollectionSpec.from_json(json.loads(spec_path.read_text()))
        started = time.perf_counter()
        # Passing the config re-checks it against the segments and applies the current HNSW settings.
        shard = qe.EdgeShard.load(str(self._dir(name) / _SHARD_DIR), self._config(spec))
        coll = self._open[name] = _Collection(shard, spec)
        log.info("vectors.edge.opened", collection=name, seconds=round(time.perf_counter() - started, 3))
        return coll

    # --- collections ------------------------------------------------------------------------

    async def ensure_collection(self, name: str, spec: CollectionSpec) -> None:
        validate_collection_name(name)
        await self._run(self._ensure_sync, name, spec)

    def _ensure_sync(self, name: str, spec: CollectionSpec) -> None:
        directory = self._dir(name)
        if (directory / _SPEC_FILE).is_file():
            coll = self._get(name)
            if coll.spec.dense != spec.dense or set(coll.spec.sparse) != set(spec.sparse):
                raise CollectionSpecMismatchError(
                    f"collection {name!r} has vectors {coll.spec.to_json()}, asked for {spec.to_json()}"
                )
            missing_kw = tuple(f for f in spec.keyword_indexes if f not in coll.spec.keyword_indexes)
            missing_fl = tuple(f for f in spec.float_indexes if f not in coll.spec.float_indexes)
            if missing_kw or missing_fl:
                self._create_indexes(coll.shard, missing_kw, missing_fl)
                coll.spec = CollectionSpec(
                    dense=coll.spec.dense,
                    sparse=coll.spec.sparse,
                    keyword_indexes=coll.spec.keyword_indexes + missing_kw,
                    float_indexes=coll.spec.float_indexes + missing_fl,
                )
                coll.shard.flush()
                _write_json_atomic(directory / _SPEC_FILE, coll.spec.to_json())
            return
        if directory.exists():
            # No spec.json: an earlier create died half-way, before anything could be stored.
            log.warning("vectors.edge.partial_collection_removed", collection=name)
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        shard = qe.EdgeShard.create(str(directory / _SHARD_DIR), self._config(spec))
        self._create_indexes(shard, spec.keyword_indexes, spec.float_indexes)
        shard.flush()
        _write_json_atomic(directory / _SPEC_FILE, spec.to_json())
        self._open[name] = _Collection(shard, spec)
        log.info("vectors.edge.created", collection=name, spec=spec.to_json())

    @staticmethod
    def _create_indexes(shard: qe.EdgeShard, keyword: tuple[str, ...], floats: tuple[str, ...]) -> None:
        for field_name in keyword:
            shard.update(qe.UpdateOperation.create_field_index(field_name, qe.PayloadSchemaType.Keyword))
        for field_name in floats:
            shard.update(qe.UpdateOperation.create_field_index(field_name, qe.PayloadSchemaType.Float))

    async def collection_exists(self, name: str) -> bool:
        spec_path = self._dir(name) / _SPEC_FILE
        return await self._run(spec_path.is_file)

    async def list_collections(self) -> list[str]:
        return await self._run(self._list_sync)

    def _list_sync(self) -> list[str]:
        if not self._root.is_dir():
            return []
        return sorted(p.name for p in self._root.iterdir() if (p / _SPEC_FILE).is_file())

    async def delete_collection(self, name: str) -> None:
        validate_collection_name(name)
        await self._run(self._delete_collection_sync, name)

    def _delete_collection_sync(self, name: str) -> None:
        coll = self._open.pop(name, None)
        if coll is not None:
            coll.shard.close()
        directory = self._dir(name)
        if directory.exists():
            # spec.json goes first: if the tree removal dies half-way, what is left reads as absent.
            (directory / _SPEC_FILE).unlink(missing_ok=True)
            shutil.rmtree(directory)
            log.info("vectors.edge.deleted", collection=name)

    # --- points -----------------------------------------------------------------------------

    async def upsert(self, name: str, points: list[PointRecord]) -> None:
        if not points:
            return
        await self._run(self._upsert_sync, name, points)

    def _upsert_sync(self, name: str, points: list[PointRecord]) -> None:
        coll = self._get(name)
        check_points(coll.spec, points)
        edge_points = [qe.Point(canonical_id(p.id), _edge_vectors(p), p.payload) for p in points]
        coll.shard.update(qe.UpdateOperation.upsert_points(edge_points))
        coll.shard.flush()  # the WAL is not fsynced per update; flush is what makes it durable

    async def retrieve(self, name: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        return await self._run(self._retrieve_sync, name, ids)

    def _retrieve_sync(self, name: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        wanted = {canonical_id(i): i for i in ids}  # answer under the caller's spelling of each id
        records = self._get(name).shard.retrieve(list(wanted), True, False)
        return {wanted[str(r.id)]: dict(r.payload or {}) for r in records}

    async def set_payload(self, name: str, ids: list[str], payload: dict[str, Any]) -> None:
        if not ids:
            return
        await self._run(self._set_payload_sync, name, ids, payload)

    async def retrieve_vectors(self, name: str, ids: list[str]) -> dict[str, dict[str, list[float]]]:
        if not ids:
            return {}
        return await self._run(self._retrieve_vectors_sync, name, ids)

    def _retrieve_vectors_sync(self, name: str, ids: list[str]) -> dict[str, dict[str, list[float]]]:
        wanted = {canonical_id(i): i for i in ids}
        records = self._get(name).shard.retrieve(list(wanted), False, True)
        return {wanted[str(r.id)]: dense_vectors_of(r.vector) for r in records}

    def _set_payload_sync(self, name: str, ids: list[str], payload: dict[str, Any]) -> None:
        shard = self._get(name).shard
        # By filter rather than by id list: by id, one missing point fails the whole call.
        id_filter = qe.Filter(must=[qe.HasIdCondition({canonical_id(i) for i in ids})])
        shard.update(qe.UpdateOperation.set_payload_by_filter(id_filter, payload))
        shard.flush()

    async def set_payloads(self, name: str, updates: dict[str, dict[str, Any]]) -> None:
        if not updates:
            return
        await self._run(self._set_payloads_sync, name, updates)

    def _set_payloads_sync(self, name: str, updates: dict[str, dict[str, Any]]) -> None:
        shard = self._get(name).shard
        for point, payload in updates.items():
            id_filter = qe.Filter(must=[qe.HasIdCondition({canonical_id(point)})])
            shard.update(qe.UpdateOperation.set_payload_by_filter(id_filter, payload))
        shard.flush()  # one flush for the whole batch: the flush, not the update, is what costs

    async def delete(self, name: str, ids: list[str]) -> None:
        if not ids:
            return
        await self._run(self._delete_sync, name, ids)

    def _delete_sync(self, name: str, ids: list[str]) -> None:
        shard = self._get(name).shard
        shard.update(qe.UpdateOperation.delete_points([canonical_id(i) for i in ids]))
        shard.flush()

    async def dense_vectors(self, name: str) -> dict[str, int]:
        return await self._run(lambda: dict(self._get(name).spec.dense))

    async def count(self, name: str) -> int:
        return await self._run(lambda: self._get(name).shard.count(qe.CountRequest(exact=True)))

    async def scroll(
        self, name: str, filter: SearchFilter | None, limit: int, offset: str | None
    ) -> tuple[list[ScoredPoint], str | None]:
        if limit < 1:
            raise ValueError("scroll limit must be positive")
        request = qe.ScrollRequest(
            offset=canonical_id(offset) if offset is not None else None,
            limit=limit,
            filter=_edge_filter(filter),
            with_payload=True,
            with_vector=False,
        )
        records, next_id = await self._run(lambda: self._get(name).shard.scroll(request))
        points = [ScoredPoint(str(r.id), 0.0, dict(r.payload or {})) for r in records]
        return points, None if next_id is None else str(next_id)

    async def search(self, name: str, request: SearchRequest) -> list[ScoredPoint]:
        branches = search_branches(request)
        edge_filter = _edge_filter(request.filter)
        params = qe.SearchParams(hnsw_ef=self._index.hnsw_ef)
        with_vector = list(request.with_vectors) if request.with_vectors else False
        if len(branches) == 1:
            vname, vector = branches[0]
            query = qe.QueryRequest(
                limit=request.limit,
                query=qe.Query.Nearest(_edge_query_vector(vector), using=vname),
                filter=edge_filter,
                params=params,
                with_payload=True,
                with_vector=with_vector,
            )
        else:
            # The filter goes on every branch so each prefetch fills its limit with allowed points.
            prefetches = [
                qe.Prefetch(
                    limit=request.prefetch_limit,
                    query=qe.Query.Nearest(_edge_query_vector(vector), using=vname),
                    filter=edge_filter,
                    params=params,
                )
                for vname, vector in branches
            ]
            query = qe.QueryRequest(
                limit=request.limit,
                # The stub declares Rrf apart from Fusion although the engine takes it as one.
                query=cast("qe.Fusion", qe.Fusion.Rrf(k=RRF_K)),
                prefetches=prefetches,
                filter=edge_filter,
                with_payload=True,
                with_vector=with_vector,
            )
        hits = await self._run(lambda: self._get(name).shard.query(query))
        return [
            ScoredPoint(str(h.id), float(h.score), dict(h.payload or {}), dense_vectors_of(h.vector))
            for h in hits
        ]

    # --- maintenance --------------------------------------------------------------------------

    async def optimize(self, name: str) -> None:
        """Merge segments and build the HNSW index; blocks this store's other calls while it runs."""
        await self._run(self._optimize_sync, name)

    def _optimize_sync(self, name: str) -> None:
        coll = self._get(name)
        started = time.perf_counter()
        # In this process the event loop stood still for the whole optimize (31 s at 20k chunk points, 4.5-16
        # min at 100k on 2 cores: docs/performance-limits.md); in a child only the reopen holds the GIL.
        coll.shard.flush()
        coll.shard.close()
        del self._open[name]
        try:
            changed = _optimize_in_child(self._dir(name) / _SHARD_DIR, coll.spec, self._index)
        finally:
            coll = self._get(name)  # reopened on the segments the child left
        info = coll.shard.info()
        log.info(
            "vectors.edge.optimized",
            collection=name,
            changed=changed,
            seconds=round(time.perf_counter() - started, 2),
            segments=info.segments_count,
            points=info.points_count,
            indexed_vectors=info.indexed_vectors_count,
        )

    async def shard_info(self, name: str) -> dict[str, int]:
        """Edge-only diagnostics: points, segments and vectors covered by an HNSW index."""
        info = await self._run(lambda: self._get(name).shard.info())
        return {
            "points": info.points_count,
            "segments": info.segments_count,
            "indexed_vectors": info.indexed_vectors_count,
        }

    async def close(self) -> None:
        if self._closed:
            return
        await self._run(self._close_sync)
        self._closed = True
        self._executor.shutdown(wait=False)  # its queue is empty: close ran last on it

    def _close_sync(self) -> None:
        while self._open:
            name, coll = self._open.popitem()
            coll.shard.flush()
            coll.shard.close()
            log.info("vectors.edge.closed", collection=name)


def _edge_config(spec: CollectionSpec, index: EdgeIndexParams) -> qe.EdgeConfig:
    return qe.EdgeConfig(
        vectors={
            vname: qe.EdgeVectorParams(size=size, distance=qe.Distance.Cosine)
            for vname, size in spec.dense.items()
        },
        sparse_vectors={vname: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf) for vname in spec.sparse},
        hnsw_config=qe.HnswIndexConfig(
            m=index.m, ef_construct=index.ef_construct, full_scan_threshold=index.full_scan_threshold_kb
        ),
    )


def _optimize_in_child(shard_dir: Path, spec: CollectionSpec, index: EdgeIndexParams) -> bool:
    """`optimize()` of a closed shard in a child process (this module's `__main__`); True if it changed."""
    job = {"shard": str(shard_dir), "spec": spec.to_json(), "index": dataclasses.asdict(index)}
    package_root = str(Path(__file__).resolve().parents[2])  # importable from a checkout too
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", __name__, json.dumps(job), str(os.getpid())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"optimize of {shard_dir} failed (exit code {done.returncode}): {done.stderr[-2000:]}"
        )
    return bool(json.loads(done.stdout.strip().splitlines()[-1])["changed"])


def _optimize_main(job_json: str, parent_pid: int) -> None:
    """The child: die with the orchestrator (two processes must never write one shard), then optimize."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the orchestrator died before the line above took effect
        sys.exit(1)
    job = json.loads(job_json)
    config = _edge_config(CollectionSpec.from_json(job["spec"]), EdgeIndexParams(**job["index"]))
    shard = qe.EdgeShard.load(job["shard"], config)
    try:
        changed = shard.optimize()
        shard.flush()
    finally:
        shard.close()
    print(json.dumps({"changed": changed}))


def _edge_vectors(point: PointRecord) -> dict[str, qe.NamedVector]:
    vectors: dict[str, qe.NamedVector] = dict(point.dense)
    for vname, sparse in point.sparse.items():
        vectors[vname] = qe.SparseVector(list(sparse.indices), list(sparse.values))
    return vectors


def _edge_query_vector(vector: list[float] | SparseVector) -> list[float] | qe.SparseVector:
    if isinstance(vector, SparseVector):
        return qe.SparseVector(list(vector.indices), list(vector.values))
    return vector


def _edge_filter(search_filter: SearchFilter | None) -> qe.Filter | None:
    if search_filter is None:
        return None
    must: list[qe.ConditionType] = []
    for key, kind, value in filter_conditions(search_filter):
        if kind == "value":
            must.append(qe.FieldCondition(key, match=qe.MatchValue(value)))
        elif kind == "any":
            must.append(qe.FieldCondition(key, match=qe.MatchAny(value)))
        else:
            low, high = value
            must.append(qe.FieldCondition(key, range=qe.RangeFloat(gte=low, lte=high)))
    return qe.Filter(must=must) if must else None


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a power cut too
    finally:
        os.close(dir_fd)


if __name__ == "__main__":
    _optimize_main(sys.argv[1], int(sys.argv[2]))
