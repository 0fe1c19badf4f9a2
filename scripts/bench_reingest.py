"""Re-ingest speed against the bare file-system walk, and memory staying flat, on a large tree.

    python scripts/bench_reingest.py --files 100000 --distinct 1000 --json
    python scripts/bench_reingest.py --files 20000 --distinct 20000 --repeats 1 --json   # memory per content

Builds N files made of D distinct small images and byte-identical copies of them under other names and
folders (so the first ingest hashes every file but calls the ML service only D times), ingests the tree
once (real ML service, embedded Qdrant Edge, the real JobManager), then re-ingests it unchanged, and times
a bare recursive os.scandir + stat of the same tree in the same run. The last line is one JSON object.

Memory: RSS when 25 % of the files are done and at the end, for the first ingest (`first_rss_growth_pct`:
with many distinct contents it shows state kept per content) and for one more re-ingest, not timed
(`reingest_rss_growth_pct`). `--trace` runs under tracemalloc and adds the Python heap at both marks and
where it grew most (slower: not for timings).
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
import tracemalloc
from dataclasses import dataclass, field
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


@dataclass(slots=True)
class Memory:
    """RSS (MB) at marks of one job (fractions of its files done) and at its end; with --trace, the Python
    heap (MB) at the same marks and tracemalloc snapshots to compare."""

    rss: dict[float, float] = field(default_factory=dict)
    heap: dict[float, float] = field(default_factory=dict)
    snapshots: dict[float, tracemalloc.Snapshot] = field(default_factory=dict)

    def take(self, mark: float) -> None:
        self.rss[mark] = rss_mb()
        if tracemalloc.is_tracing():
            self.heap[mark] = tracemalloc.get_traced_memory()[0] / 2**20
            self.snapshots[mark] = tracemalloc.take_snapshot()

    def growth_pct(self, start: float, end: float = 1.0) -> float | None:
        if not self.rss.get(start) or end not in self.rss:
            return None
        return round(100 * (self.rss[end] - self.rss[start]) / self.rss[start], 1)

    def heap_growth(self, start: float, top: int = 8) -> list[str]:
        """The allocation sites whose live memory grew most between `start` and the end."""
        if start not in self.snapshots or 1.0 not in self.snapshots:
            return []
        diff = self.snapshots[1.0].compare_to(self.snapshots[start], "lineno")
        return [
            f"{d.traceback[0].filename}:{d.traceback[0].lineno} {d.size_diff / 2**20:+.2f} MB"
            for d in diff[:top]
        ]


async def ingest(
    manager: JobManager, root: Path, total: int, marks: tuple[float, ...] = (), poll_s: float = 0.05
) -> tuple[float, Job, Memory]:
    """Run one job to its end; returns wall seconds, the job, and its memory at the `marks` (fractions of
    the files done; sampled by a side task, so the timing is not stretched by polling) and at its end."""
    memory = Memory()

    async def sample(job: Job) -> None:
        for mark in marks:
            # Progress has no event to wait on; a poll in a side task does not touch the timing.
            while job.progress.counters["done"] < mark * total:  # noqa: ASYNC110
                await asyncio.sleep(poll_s)
            memory.take(mark)

    start = time.perf_counter()
    job = await manager.submit(root, "bench", {})
    sampler = asyncio.create_task(sample(job)) if marks else None
    await manager.wait(job.id)
    wall = time.perf_counter() - start
    if sampler is not None:
        sampler.cancel()
    if job.state is not JobState.COMPLETED:
        raise RuntimeError(f"job ended {job.state}: {job.error}")
    memory.take(1.0)
    return wall, job, memory


async def run(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging("WARNING")
    if args.trace:
        tracemalloc.start()
    work = Path(tempfile.mkdtemp(prefix="archivist-reingest-"))
    try:
        tree = work / "tree"
        t0 = time.perf_counter()
        build_tree(tree, args.files, args.distinct)
        build_s = time.perf_counter() - t0
        with ml_service(args.ml_url, log_path=work / "ml.log") as ml_url:
            settings = Settings(data_dir=work / "data", ml_service_url=ml_url, allowed_roots=str(work))
            async with job_manager(settings) as (_services, manager):
                first_s, first, first_mem = await ingest(manager, tree, args.files, (0.10, 0.25))
                walks, reingests = [], []
                for _ in range(args.repeats):  # alternate, then take medians: the machine is shared
                    t = time.perf_counter()
                    assert scandir_stat(str(tree)) == args.files
                    walks.append(time.perf_counter() - t)
                    wall, again, _ = await ingest(manager, tree, args.files)
                    reingests.append(wall)
                # One more re-ingest, not timed, polled closely enough to catch its 25 % mark.
                _, _, again_mem = await ingest(manager, tree, args.files, (0.25,), poll_s=0.001)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    walk_s, reingest_s = statistics.median(walks), statistics.median(reingests)
    c1, c2 = first.progress.counters, again.progress.counters
    rss_10, rss_end = first_mem.rss.get(0.10, 0.0), first_mem.rss[1.0]
    traced: dict[str, Any] = {}
    if args.trace:
        traced = {
            "first_heap_mb_at_25pct": _mb(first_mem.heap.get(0.25)),
            "first_heap_mb_at_end": _mb(first_mem.heap.get(1.0)),
            "first_heap_growth_top": first_mem.heap_growth(0.25),
            "reingest_heap_growth_top": again_mem.heap_growth(0.25),
        }
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
        "rss_growth_pct": first_mem.growth_pct(0.10),
        "first_rss_mb_at_25pct": _mb(first_mem.rss.get(0.25)),
        "first_rss_growth_pct": first_mem.growth_pct(0.25),
        "reingest_rss_mb_at_25pct": _mb(again_mem.rss.get(0.25)),
        "reingest_rss_mb_at_end": _mb(again_mem.rss.get(1.0)),
        "reingest_rss_growth_pct": again_mem.growth_pct(0.25),
        **traced,
    }


def _mb(value: float | None) -> float | None:
    """A mark the job ended before sampling (a fast re-ingest) has no value."""
    return None if value is None else round(value, 1)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trace", action="store_true", help="tracemalloc: Python heap and where it grew")


def main() -> None:
    bench_main(__doc__, options, run)


if __name__ == "__main__":
    main()
