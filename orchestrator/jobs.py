"""Jobs: a small, validated state machine.

States: queued -> running <-> paused -> completed | failed | cancelled. The allowed transitions live in
TRANSITIONS and nowhere else; an invalid one raises InvalidTransitionError (HTTP 409).
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


class InvalidTransitionError(Exception):
    def __init__(self, job: Job, target: JobState) -> None:
        super().__init__(f"job {job.id} is {job.state.value}; cannot become {target.value}")
        self.current = job.state


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

    def status(self, max_errors: int = 20) -> dict[str, Any]:
        live = self.progress.started_at is not None
        return {
            "job_id": self.id,
            "state": self.state.value,
            "path": str(self.root),
            "collection": self.collection,
            "options": self.options,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "runs": self.runs,
            "waiting_for": self.progress.waiting_for,
            **(
                self.progress.snapshot(max_errors) if live or not self.saved_progress else self.saved_progress
            ),
        }

    def to_row(self) -> JobRow:
        snapshot = self.progress.snapshot(0) if self.progress.started_at is not None else self.saved_progress
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
