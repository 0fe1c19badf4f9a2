"""Jobs: a small, validated state machine.

States: queued -> running <-> paused -> completed | failed | cancelled. The allowed transitions live in
TRANSITIONS and nowhere else; an invalid one raises InvalidTransitionError (HTTP 409).

Finishing: once its stages are done, a job runs its finishing steps (people merge, prune, index build) with
`finishing` set. They start only while the job runs (a pause accepted while the last work was in flight
holds them until resume) and are never interrupted by the user: a pause is refused (JobFinishingError, a
409), a cancel waits for them and then ends the job cancelled. So a pause or cancel never turns a job that
did its work into a failed one.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.job_store import ErrorRow, JobRow
from orchestrator.pipeline.context import JobControl
from orchestrator.pipeline.progress import JobProgress


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
class Job:
    id: str
    root: Path
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
        """ "ingest" (a directory into a collection) or "reanalyze" (a collection's files again, no root)."""
        return REANALYZE if self.options.get("kind") == REANALYZE else "ingest"

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
            **progress,
        }

    def to_row(self) -> JobRow:
        live = self.progress.started_at is not None
        snapshot = self.progress.snapshot(ROW_ERRORS) if live else self.saved_progress
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
            root=Path(row.root),
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
        )
