"""Where a first ingest's RSS goes: the in-process engines alone, with the points and cache entries a job
writes, without the pipeline or the ML service.

    python scripts/bench_store_memory.py --points 12000 --json

Writes N chunk-shaped points (a 384-d text vector, a 20-term sparse vector, the payload's path fields and
text, the collection's keyword and float indexes) into a fresh Qdrant Edge collection in batches of 32, and
N result-sized entries into a fresh diskcache, each in its own process (RSS is per process), and reports the
RSS growth from 25 % of the writes to the end, like `bench_reingest.py`'s `first_rss_growth_pct`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import random
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.clients.vectors import CollectionSpec, PointRecord, SparseVector
from orchestrator.pipeline.records import FLOAT_FIELDS, KEYWORD_FIELDS
from orchestrator.points import path_fields
from scripts.bench_cli import bench_main
from scripts.bench_reingest import rss_mb

_BATCH = 32


def _marks(n: int) -> tuple[int, int]:
    return n // 4, n


async def _edge(n: int, work: Path) -> dict[str, float]:
    from orchestrator.clients.vectors_edge import EdgeVectorStore

    store = EdgeVectorStore(work / "edge")
    spec = CollectionSpec(dense={"text": 384}, keyword_indexes=KEYWORD_FIELDS, float_indexes=FLOAT_FIELDS)
    await store.ensure_collection("media", spec)
    rng, rss = random.Random(0), {"start": rss_mb()}
    for start in range(0, n, _BATCH):
        points = []
        for i in range(start, min(start + _BATCH, n)):
            content_hash = f"{i:064x}"
            points.append(
                PointRecord(
                    id=str(uuid.uuid5(uuid.NAMESPACE_OID, content_hash)),
                    dense={"text": [rng.random() for _ in range(384)]},
                    sparse={"sparse": SparseVector(sorted(rng.sample(range(100_000), 20)), [1.0] * 20)},
                    payload={
                        "content_hash": content_hash,
                        "media_type": "image",
                        "text": "tag " * 30,
                        **path_fields([f"/data/originals/d{i // 100}/img_{i}.jpg"]),
                    },
                )
            )
        await store.upsert("media", points)
        if "quarter" not in rss and start + _BATCH >= _marks(n)[0]:
            rss["quarter"] = rss_mb()
    rss["end"] = rss_mb()
    await store.close()
    return rss


def _cache(n: int, work: Path) -> dict[str, float]:
    import diskcache

    # The result cache's settings (orchestrator/cache.py).
    cache = diskcache.Cache(str(work / "cache"), eviction_policy="none", size_limit=2**40)
    value = pickle.dumps({"text": "x" * 2000, "vector": [0.1] * 384})
    rss = {"start": rss_mb()}
    for i in range(n):
        cache.set(f"result:{i:064x}", value)
        if i + 1 == _marks(n)[0]:
            rss["quarter"] = rss_mb()
    rss["end"] = rss_mb()
    cache.close()
    return rss


def _child(engine: str, n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="archivist-store-memory-") as tmp:
        rss = asyncio.run(_edge(n, Path(tmp))) if engine == "edge" else _cache(n, Path(tmp))
    print(json.dumps(rss))


def _measure(engine: str, n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", engine, "--points", str(n)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    rss: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return rss


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"points": args.points}
    for engine in ("edge", "cache"):
        rss = await asyncio.to_thread(_measure, engine, args.points)
        grown = rss["end"] - rss["quarter"]
        result[f"{engine}_rss_mb_at_25pct"] = round(rss["quarter"], 1)
        result[f"{engine}_rss_mb_at_end"] = round(rss["end"], 1)
        result[f"{engine}_kb_per_entry_after_25pct"] = round(
            1024 * grown / (args.points - args.points // 4), 2
        )
        result[f"{engine}_rss_growth_pct"] = round(100 * grown / rss["quarter"], 1)
    return result


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--points", type=int, default=12_000)
    parser.add_argument("--child", choices=("edge", "cache"), help=argparse.SUPPRESS)


if __name__ == "__main__":
    if "--child" in sys.argv:
        ns = argparse.ArgumentParser()
        options(ns)
        ns.add_argument("--json", action="store_true")
        parsed = ns.parse_args()
        _child(parsed.child, parsed.points)
    else:
        bench_main(__doc__, options, run)
