"""Jobs: a small, validated state machine.

States: queued -> running <-> paused -> completed | failed | cancelled. The allowed transitions live in
TRANSITIONS and nowhere else; an invalid one raises InvalidTransitionError (HTTP 409).

Finishing: once its stages are done, a job runs its finishing steps (people merge, prune, index build) with
`finishing` set. They start only while the job runs (a pause accepted while the last work was in flight
holds them until resume) and are never interrupted by the user: a pause is refused (JobFinishingError, a
409), a cancel waits for them and then ends the job cancelled. So a pause or cancel never turns a job that
did its work into a failed one.

Watching (options.watch): after its first pass the job stays `running` and listens to its root; each
burst of changes is one more pass (job_manager.py); it never completes by itself: a cancel ends it, its
root going fails it. Paused, it collects changes and passes over them after resume.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field
from typing import Any

from orchestrator.job_store import ErrorRow, JobRow
from orchestrator.pipeline.context import JobControl
from orchestrator.pipeline.progress import JobProgress
from orchestrator.sources.roots import Root, S3Prefix, parse_root
from orchestrator.sources.stream_status import StreamStatus


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.PAUSED, JobState.CANCELLED, JobState.FAILED}),
    JobState.RUNNING: frozenset({JobState.PAUSED, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}),
    JobState.PAUSED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}
ACTIVE = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.PAUSED})
REANALYZE = "reanalyze"  # a job's options["kind"] for a re-analysis (api/collections.py)
STREAM = "stream"  # a job's options["kind"] for a live stream (api/streams.py, sources/streams.py)
# A job's row keeps its first errors (every one is in the error table), so an old job's status shows them.
ROW_ERRORS = 20


class InvalidTransitionError(Exception):
    def __init__(self, job: Job, target: JobState, why: str | None = None) -> None:
        super().__init__(why or f"job {job.id} is {job.state.value}; cannot become {target.value}")
        self.current = job.state


class JobFinishingError(InvalidTransitionError):
    """A pause asked for while the job runs its finishing steps (they are short and not interruptible)."""

    def __init__(self, job: Job, target: JobState) -> None:
        why = (
            f"job {job.id} is finishing (people merge, prune, index build) and ends in a moment; "
            f"it cannot become {target.value} now"
        )
        super().__init__(job, target, why)


class JobNotFoundError(Exception):
    pass


@dataclass(slots=True)
class WatchStatus:
    """A watching job's folder (orchestrator/watch.py; GET /jobs/{id} "watch"). Only the loop writes it."""

    listening: bool = False  # the folder is watched now (paused too: changes are collected)
    passes: int = 0  # pipeline passes over the folder in this process, the first (whole) one included
    events: int = 0  # changes the notifier reported
    pending: int = 0  # changed paths waiting to settle or for the next pass
    last_event_at: float | None = None
    last_pass_at: float | None = None  # when the last pass ended
    last_pass_s: float | None = None  # how long it took

    def to_json(self) -> dict[str, Any]:
        return {
            "passes": self.passes,
            "events": self.events,
            "pending": self.pending,
            "last_event_at": self.last_event_at,
            "last_pass_at": self.last_pass_at,
            "last_pass_s": self.last_pass_s,
        }


@dataclass(slots=True)
class Job:
    id: str
    root: Root  # a local directory, or an object-store prefix (s3://bucket/prefix); Path() for a re-analysis
    collection: str
    options: dict[str, Any]
    idempotency_key: str | None = None
    state: JobState = JobState.QUEUED
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    runs: int = 0  # pipeline runs: more than one when a restart resumed it
    progress: JobProgress = field(default_factory=JobProgress)
    saved_progress: dict[str, Any] = field(default_factory=dict)  # last snapshot of an earlier process
    control: JobControl = field(default_factory=JobControl)
    task: asyncio.Task[None] | None = None
    stored_errors: int = 0  # how many of progress.errors the store already has
    cancel_requested: bool = False  # a cancel that came while finishing: the job ends cancelled after it
    watch: WatchStatus = field(default_factory=WatchStatus)  # a watching job's folder (`watches`)
    stream: StreamStatus = field(default_factory=StreamStatus)  # a live stream's health (`streams`)

    def transition(self, target: JobState) -> None:
        if target not in TRANSITIONS[self.state]:
            raise InvalidTransitionError(self, target)
        self.state = target
        if target not in ACTIVE:
            self.finished_at = time.time()
            self.progress.finished_at = self.finished_at

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def kind(self) -> str:
        """ "ingest" (a directory into a collection), "reanalyze" (a collection's files again, no root) or
        "stream" (a live stream recorded into its directory, ingested as its segments close)."""
        kind = self.options.get("kind")
        return kind if kind in (REANALYZE, STREAM) else "ingest"

    @property
    def streams(self) -> bool:
        """A live stream: it runs until cancelled, one more pass each time segments close."""
        return self.kind == STREAM

    @property
    def watches(self) -> bool:
        """An ingest that keeps watching its root after the first pass (options.watch): it runs until
        cancelled (or its root goes), one more pass per burst of changes. Local folders only (the API
        refuses it for the others)."""
        local = not isinstance(self.root, S3Prefix) and self.kind not in (REANALYZE, STREAM)
        return local and bool(self.options.get("watch"))

    @property
    def refresh_tasks(self) -> tuple[str, ...]:
        """Tasks a re-analysis asks again whatever the cache holds (its `tasks`)."""
        return tuple(str(t) for t in self.options.get("tasks") or ())

    @property
    def finishing(self) -> bool:
        """Its stages are done and its finishing steps run (people merge, prune, index build)."""
        return self.active and self.control.finishing

    def status(self, max_errors: int = ROW_ERRORS) -> dict[str, Any]:
        live = self.progress.started_at is not None
        if live or not self.saved_progress:
            progress = self.progress.snapshot(max_errors)
        else:  # a job of an earlier process, or one that ended and left memory: its row
            progress = {**self.saved_progress, "errors": self.saved_progress.get("errors", [])[:max_errors]}
        return {
            "job_id": self.id,
            "state": self.state.value,
            "kind": self.kind,
            "path": None if self.kind == REANALYZE else str(self.root),
            "collection": self.collection,
            "options": self.options,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "runs": self.runs,
            "finishing": self.finishing,
            "waiting_for": self.progress.waiting_for,
            "watching": self.active and self.watch.listening,
            "watch": self.watch.to_json() if self.watches else None,
            **progress,
            "stream": self.stream.to_json() if self.streams else None,
        }

    def to_row(self) -> JobRow:
        live = self.progress.started_at is not None
        snapshot = self.progress.snapshot(ROW_ERRORS) if live else self.saved_progress
        if self.streams:  # its counts outlive a restart (StreamStatus.from_json)
            snapshot = {**snapshot, "stream": self.stream.to_json()}
        return JobRow(
            id=self.id,
            root=str(self.root),
            collection=self.collection,
            options=self.options,
            state=self.state.value,
            error=self.error,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            runs=self.runs,
            idempotency_key=self.idempotency_key,
            progress=snapshot,
        )

    def unsaved_errors(self) -> list[ErrorRow]:
        errors = self.progress.errors[self.stored_errors :]
        return [
            ErrorRow(seq=self.stored_errors + i, path=e.path, stage=e.stage, reason=e.reason, at=e.at)
            for i, e in enumerate(errors)
        ]

    @classmethod
    def from_row(cls, row: JobRow) -> Job:
        return cls(
            id=row.id,
            root=parse_root(row.root),
            collection=row.collection,
            options=row.options,
            idempotency_key=row.idempotency_key,
            state=JobState(row.state),
            error=row.error,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            runs=row.runs,
            saved_progress=row.progress,
            stream=StreamStatus.from_json(row.progress.get("stream")),
        )
