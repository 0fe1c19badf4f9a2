"""Re-ingest speed against the bare file-system walk, and memory staying flat, on a large tree.

    python scripts/bench_reingest.py --files 100000 --distinct 1000 --json

Builds N files made of D distinct small images and byte-identical copies of them under other names and
folders (so the first ingest hashes every file but calls the ML service only D times), ingests the tree
once (real ML service, embedded Qdrant Edge, the real JobManager), then re-ingests it unchanged, and times
a bare recursive os.scandir + stat of the same tree in the same run. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.config import Settings
from orchestrator.job_manager import JobManager
from orchestrator.jobs import Job, JobState
from orchestrator.logs import configure_logging
from scripts.bench_cli import bench_main
from scripts.bench_jobs import job_manager
from scripts.bench_pipeline import make_images
from scripts.ml_process import ml_service

FILES_PER_DIR = 100


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_tree(root: Path, files: int, distinct: int) -> None:
    """D distinct images, then copies round-robin until N files, 100 per folder, two levels deep."""
    originals = make_images(root / "originals", distinct, size=(128, 96))
    for i in range(files - distinct):
        n = i + distinct
        folder = root / f"copies{n // 10_000:02d}" / f"f{(n // FILES_PER_DIR) % 100:02d}"
        if i % FILES_PER_DIR == 0 or not folder.exists():
            folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(originals[i % distinct], folder / f"copy_{n:06d}.jpg")


def scandir_stat(root: str) -> int:
    count = 0
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    entry.stat(follow_symlinks=False)
                    count += 1
    return count


async def ingest(
    manager: JobManager, root: Path, total: int, sample_at: float | None
) -> tuple[float, Job, float]:
    """Run one job to its end; returns wall seconds, the job, and RSS (MB) once `sample_at` of the files
    were done (sampled by a side task, so the timing is not stretched by polling)."""
    rss_at = 0.0

    async def sample(job: Job) -> None:
        nonlocal rss_at
        # Progress has no event to wait on; a 50 ms poll in a side task does not touch the timing.
        while sample_at is not None and job.progress.counters["done"] < sample_at * total:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        rss_at = rss_mb()

    start = time.perf_counter()
    job = await manager.submit(root, "bench", {})
    sampler = asyncio.create_task(sample(job)) if sample_at is not None else None
    await manager.wait(job.id)
    wall = time.perf_counter() - start
    if sampler is not None:
        sampler.cancel()
    if job.state is not JobState.COMPLETED:
        raise RuntimeError(f"job ended {job.state}: {job.error}")
    return wall, job, rss_at


async def run(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging("WARNING")
    work = Path(tempfile.mkdtemp(prefix="archivist-reingest-"))
    try:
        tree = work / "tree"
        t0 = time.perf_counter()
        build_tree(tree, args.files, args.distinct)
        build_s = time.perf_counter() - t0
        with ml_service(args.ml_url, log_path=work / "ml.log") as ml_url:
            settings = Settings(data_dir=work / "data", ml_service_url=ml_url, allowed_roots=str(work))
            async with job_manager(settings) as (_services, manager):
                first_s, first, rss_10 = await ingest(manager, tree, args.files, 0.10)
                rss_end = rss_mb()
                walks, reingests = [], []
                for _ in range(args.repeats):  # alternate, then take medians: the machine is shared
                    t = time.perf_counter()
                    assert scandir_stat(str(tree)) == args.files
                    walks.append(time.perf_counter() - t)
                    wall, again, _ = await ingest(manager, tree, args.files, None)
                    reingests.append(wall)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    walk_s, reingest_s = statistics.median(walks), statistics.median(reingests)
    c1, c2 = first.progress.counters, again.progress.counters
    return {
        "files": args.files,
        "distinct": args.distinct,
        "build_tree_s": round(build_s, 1),
        "first_ingest_s": round(first_s, 2),
        "first_ingest_files_per_s": round(args.files / first_s, 1),
        "first_ingest_ml_calls": c1["ml_requests"],
        "first_ingest_inferred": c1["inferred"],
        "first_ingest_duplicates": c1["duplicates"],
        "scandir_stat_s": round(walk_s, 3),
        "scandir_stat_files_per_s": round(args.files / walk_s),
        "reingest_s": round(reingest_s, 3),
        "reingest_files_per_s": round(args.files / reingest_s),
        "reingest_vs_scandir": round(walk_s / reingest_s, 3),
        "reingest_ml_calls": c2["ml_requests"],
        "reingest_upserts": c2["upsert_requests"],
        "reingest_unchanged": c2["unchanged"],
        "rss_mb_at_10pct": round(rss_10, 1),
        "rss_mb_at_end": round(rss_end, 1),
        "rss_growth_pct": round(100 * (rss_end - rss_10) / rss_10, 1) if rss_10 else None,
    }


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)


def main() -> None:
    bench_main(__doc__, options, run)


if __name__ == "__main__":
    main()
