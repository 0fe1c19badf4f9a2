"""Search quality on a labelled corpus, hybrid against each branch alone, and search latency at 10k and
100k chunks (embedded engine).

    python scripts/eval_search.py [--sizes 10000,100000] [--latency-queries 300] [--json]

Builds the corpus of scripts/eval_corpus.py (real photographs from installed packages, English and
Spanish text rendered into images, spoken news in audio files and a video), ingests it with the real
JobManager, the real ML service (default CPU models; started here unless --ml-url) and Qdrant Edge, then
runs every query three ways through `orchestrator.search.search` (the API's code): hybrid (the default:
dense text + keyword, fused), dense only, keyword only. An answerable query is found when a file that
answers it is among the first 5 hits (a spoken sentence: and the hit starts within 2 s of it).
`no_match_precision`: of the queries the search said had no good match, the share that indeed have none
(`no_match_recall`: of those with none, the share it said so of). The latency figures come from
scripts/bench_search_latency.py (hybrid query, no filter, p95). Per query, the evidence of the first hit
(text cosine, keyword share) is printed: the relevance floor's defaults were chosen from it.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.config import Settings
from orchestrator.search import SearchQuery, SearchResult, resolve_target, search, search_floors
from orchestrator.services import Services
from scripts.bench_cli import bench_main
from scripts.bench_jobs import completed_job, job_manager
from scripts.bench_search_latency import measure
from scripts.eval_corpus import Query, build
from scripts.ml_process import ml_service

TOP = 5
TIME_TOLERANCE_S = 2.0
MODES = ("hybrid", "dense", "keyword")


def rank_of(result: SearchResult, query: Query, root: Path) -> int | None:
    """1-based rank of the first hit that answers the query, else None."""
    wanted = {str(root / e) for e in query.expected}
    for n, hit in enumerate(result.hits, 1):
        if not wanted & set(hit.paths):
            continue
        if query.at_s is not None and (
            hit.start_s is None or abs(hit.start_s - query.at_s) > TIME_TOLERANCE_S
        ):
            continue
        return n
    return None


async def evaluate(services: Services, queries: list[Query], root: Path, collection: str) -> dict[str, Any]:
    settings = services.settings
    target = await resolve_target(services.catalog, collection)
    floors = search_floors(settings, target)
    ranks: dict[str, list[int | None]] = {m: [] for m in MODES}
    flagged: list[bool] = []
    rows = []
    for query in queries:
        for mode in MODES:
            request = SearchQuery(query.text, collection, limit=10, mode=mode)  # type: ignore[arg-type]
            result = await search(services.store, services.ml, services.index, request, target, floors)
            ranks[mode].append(rank_of(result, query, root))
            if mode == "hybrid":
                flagged.append(result.no_good_match)
                top = result.hits[0].relevance if result.hits else {}
                texts = [h.relevance.get("text") or 0.0 for h in result.hits]
                rows.append(
                    {
                        "query": query.text,
                        "kind": query.kind,
                        "rank": ranks[mode][-1],
                        "no_good_match": result.no_good_match,
                        "top_text": top.get("text"),
                        "top_keywords": top.get("keywords"),
                        "texts": [round(t, 2) for t in texts],
                        "top": Path(result.hits[0].path or "").name if result.hits else None,
                    }
                )
    answerable = [i for i, q in enumerate(queries) if q.expected]
    none = [i for i, q in enumerate(queries) if not q.expected]

    def recall(mode: str, subset: list[int] | None = None) -> float:
        chosen = subset if subset is not None else answerable
        found = [ranks[mode][i] for i in chosen]
        return sum(1 for r in found if r is not None and r <= TOP) / max(1, len(found))

    said_none = [i for i, f in enumerate(flagged) if f]
    kinds = sorted({q.kind for q in queries if q.expected})

    def mrr(mode: str) -> float:
        return sum(1 / r for i in answerable if (r := ranks[mode][i])) / len(answerable)

    def by_kind(mode: str) -> dict[str, float]:
        return {k: round(recall(mode, [i for i in answerable if queries[i].kind == k]), 3) for k in kinds}

    return {
        "rows": rows,
        "recall_at_5": round(recall("hybrid"), 3),
        "mrr": round(mrr("hybrid"), 3),
        "dense_only_mrr": round(mrr("dense"), 3),
        "keyword_only_mrr": round(mrr("keyword"), 3),
        "dense_only_recall_at_5": round(recall("dense"), 3),
        "keyword_only_recall_at_5": round(recall("keyword"), 3),
        "recall_at_5_by_kind": {m: by_kind(m) for m in MODES},
        "no_match_precision": round(sum(1 for i in said_none if i in none) / max(1, len(said_none)), 3),
        "no_match_recall": round(sum(1 for i in none if flagged[i]) / max(1, len(none)), 3),
        "false_no_match": sum(1 for i in said_none if i in answerable),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="archivist-eval-search-"))
    try:
        root = work / "media"
        built = time.perf_counter()
        corpus = build(root)
        build_s = time.perf_counter() - built
        with ml_service(args.ml_url) as ml_url:
            settings = Settings(data_dir=work / "data", ml_service_url=ml_url, allowed_roots=str(work))
            async with job_manager(settings) as (services, manager):
                wall, job = await completed_job(manager, root, "eval")
                failed = job.status()["counters"]["failed"]
                quality = await evaluate(services, corpus.queries, root, "eval")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.json:
        for row in quality["rows"]:
            print(
                f"{row['kind']:>11} {row['rank'] or '-':>2} {'NONE' if row['no_good_match'] else '    '} "
                f"text={row['top_text']} kw={row['top_keywords']} {row['query']!r} -> {row['top']} "
                f"{row['texts']}"
            )
    sizes = [int(s) for s in args.sizes.split(",") if s]
    latency = await measure(sizes, args.latency_queries) if sizes else {}
    recall, dense = quality["recall_at_5"], quality["dense_only_recall_at_5"]
    return {
        "queries": len(corpus.queries),
        "answerable": sum(1 for q in corpus.queries if q.expected),
        "recall_at_5": recall,
        "mrr": quality["mrr"],
        "dense_only_mrr": quality["dense_only_mrr"],
        "keyword_only_mrr": quality["keyword_only_mrr"],
        "dense_only_recall_at_5": dense,
        "keyword_only_recall_at_5": quality["keyword_only_recall_at_5"],
        "hybrid_vs_dense": round(recall / dense, 3) if dense else None,
        "no_match_precision": quality["no_match_precision"],
        "no_match_recall": quality["no_match_recall"],
        "false_no_match": quality["false_no_match"],
        "recall_at_5_by_kind": quality["recall_at_5_by_kind"],
        "p95_ms_10k": latency.get("p95_ms_10k"),
        "p95_ms_100k": latency.get("p95_ms_100k"),
        "corpus_files": len(corpus.files),
        "failed_files": failed,
        "ingest_s": round(wall, 1),
        "build_corpus_s": round(build_s, 1),
    }


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="10000,100000", help="latency sizes (chunks); empty: skip")
    parser.add_argument("--latency-queries", type=int, default=300)


def main() -> None:
    bench_main(__doc__, options, run)


if __name__ == "__main__":
    main()
