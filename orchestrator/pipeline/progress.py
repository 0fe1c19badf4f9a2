"""Per-job progress: counters, per-stage busy time, recorded file errors. Only the event loop mutates it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

STAGES = ("scan", "prepare", "decode", "infer", "upsert")  # decode: video/audio in worker processes
COUNTERS = (
    "discovered",  # regular files the scanner found
    "done",  # files finished one way or another: unchanged, stored (marked done), failed or skipped
    "unchanged",  # skipped by the stat index: not even read
    "hashed",
    "duplicates",  # same content as another path: linked, not processed again
    "cache_hits",  # chunks whose ML results came from the result cache
    "chunks",  # chunks that needed or reused ML results
    "inferred",  # chunks the ML service analysed in this job
    "upserted",  # points written to the vector store
    "failed",  # files recorded as failed (including failed_before)
    "failed_before",  # failed in an earlier job and unchanged since: not read again, error shown again
    "skipped",  # files that are not media (no error: a README beside the photos)
    "pruned",  # files gone from the tree since the last scan: their paths left the points
    "partial",  # files stored without a caption (the VLM failed): not marked done, retried next run
    "people_merged",  # face/voice clusters joined into another at the job's end
    "people_linked",  # voices whose link to a face changed at the job's end (links.py)
    "bytes",  # bytes read and hashed
    "ml_requests",  # HTTP inference requests sent to the ML service
    "upsert_requests",  # write calls made to the vector store
)


@dataclass(frozen=True, slots=True)
class FileError:
    path: str
    stage: str
    reason: str
    at: float


@dataclass(slots=True)
class StageTimer:
    """Busy time is the union of the stage's workers' working intervals: wall time during which at
    least one worker was working (two overlapping workers do not count double)."""

    busy_s: float = 0.0
    items: int = 0
    active: int = 0
    since: float = 0.0

    def enter(self, now: float) -> None:
        if self.active == 0:
            self.since = now
        self.active += 1

    def leave(self, now: float, items: int) -> None:
        self.active -= 1
        self.items += items
        if self.active == 0:
            self.busy_s += now - self.since

    def current_busy_s(self, now: float) -> float:
        return self.busy_s + (now - self.since if self.active else 0.0)


@dataclass(slots=True)
class JobProgress:
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    stages: dict[str, StageTimer] = field(default_factory=lambda: {s: StageTimer() for s in STAGES})
    errors: list[FileError] = field(default_factory=list)
    batch_sizes: dict[str, int] = field(default_factory=dict)
    # ML requests by the task they asked for (a request for OCR and faces counts for both; "text": embeds)
    ml_calls_by_task: dict[str, int] = field(default_factory=dict)
    # What the job found against the collection's manifest (manifest.Staleness), and a version it builds
    reanalysis: dict[str, Any] = field(default_factory=dict)
    # Where the job's files come from, while it fetches them (a URL job's download: state, bytes, total)
    source: dict[str, Any] = field(default_factory=dict)
    queues: dict[str, asyncio.Queue[Any]] = field(default_factory=dict)  # read for their depth only
    started_at: float | None = None
    finished_at: float | None = None
    waiting_for: str | None = None  # why the job is not progressing (a dependency it retries), if it is not
    scan_complete: bool = False

    def set_waiting(self, reason: str | None) -> None:
        self.waiting_for = reason

    def add(self, counter: str, n: int = 1) -> None:
        self.counters[counter] += n

    def ml_call(self, tasks: list[str] | tuple[str, ...]) -> None:
        self.counters["ml_requests"] += 1
        for task in tasks:
            self.ml_calls_by_task[task] = self.ml_calls_by_task.get(task, 0) + 1

    def fail(self, path: str, stage: str, reason: str) -> None:
        self.errors.append(FileError(path=path, stage=stage, reason=reason, at=time.time()))
        self.counters["failed"] += 1
        self.counters["done"] += 1

    @contextmanager
    def busy(self, stage: str, items: int = 1) -> Iterator[None]:
        """Time a unit of a stage's own work (not its waiting on queues)."""
        timer = self.stages[stage]
        timer.enter(time.perf_counter())
        try:
            yield
        finally:
            timer.leave(time.perf_counter(), items)

    def elapsed_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at

    def snapshot(self, max_errors: int = 20) -> dict[str, Any]:
        elapsed = self.elapsed_s()
        now = time.perf_counter()
        c = self.counters
        done = c["done"]
        rate = done / elapsed if elapsed > 0 else 0.0
        remaining = c["discovered"] - done
        eta = (
            round(remaining / rate, 1)
            if self.scan_complete and rate > 0 and self.finished_at is None
            else None
        )
        return {
            "counters": dict(self.counters),
            "stages": {
                name: {"busy_s": round(t.current_busy_s(now), 4), "items": t.items}
                for name, t in self.stages.items()
            },
            "batch_sizes": dict(self.batch_sizes),
            "ml_calls_by_task": dict(self.ml_calls_by_task),
            "reanalysis": dict(self.reanalysis),
            "source": dict(self.source),
            "queue_depths": {name: q.qsize() for name, q in self.queues.items()},
            "elapsed_s": round(elapsed, 3),
            "files_done": done,
            "files_per_s": round(rate, 2),
            "eta_s": eta,
            "scan_complete": self.scan_complete,
            "bytes_per_s": round(self.counters["bytes"] / elapsed, 1) if elapsed > 0 else 0.0,
            "errors": [
                {"path": e.path, "stage": e.stage, "reason": e.reason} for e in self.errors[:max_errors]
            ],
        }
