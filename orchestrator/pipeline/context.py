"""Everything a job's stages share, passed explicitly (no module globals)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from orchestrator.cache import ResultCache
from orchestrator.clients.ml import MLClient
from orchestrator.clients.vectors import VectorStore
from orchestrator.file_index import FileIndex, IndexedFile
from orchestrator.media.av_decode import AVOptions
from orchestrator.media.decode_pool import DecodePool
from orchestrator.media.documents import DocumentOptions
from orchestrator.people import PeopleIndex
from orchestrator.people_store import PeopleStore
from orchestrator.pipeline.progress import JobProgress
from orchestrator.points import PointKeeper
from orchestrator.sources.s3 import ObjectScan


@dataclass(slots=True)
class JobControl:
    """Pause/cancel signals. `running` gates the scanner, each prepare file and each infer batch: a pause
    lets the work in flight finish and starts nothing new. The threading twins let the scan thread see
    pause and stop without touching the event loop."""

    running: asyncio.Event = field(default_factory=asyncio.Event)
    running_flag: threading.Event = field(default_factory=threading.Event)
    stop_flag: threading.Event = field(default_factory=threading.Event)
    finishing: bool = False  # the stages are done; people merge, prune and index build run (jobs.py)

    def __post_init__(self) -> None:
        self.resume()

    async def begin_finishing(self) -> None:
        """The runner calls this once the stages are done: a pause accepted while the last work was in
        flight holds the finishing steps until resume; from then on the job cannot be paused."""
        while not self.running.is_set():  # (a pause right after a resume: wait again)
            await self.running.wait()
        self.finishing = True

    def pause(self) -> None:
        self.running.clear()
        self.running_flag.clear()

    def resume(self) -> None:
        self.running.set()
        self.running_flag.set()

    def stop(self) -> None:
        self.stop_flag.set()
        self.resume()  # wake a paused scanner so it can see the stop


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    queue_size: int
    prepare_workers: int
    infer_workers: int
    infer_batch: int
    upsert_batch: int
    ml_image_max_side: int
    thumbnail_size: int
    max_image_pixels: int
    max_file_bytes: int
    include_hidden: bool
    prune: bool  # remove the points of files gone from the tree once a full scan completed
    thumbnails_dir: Path
    models_signature: str  # the manifest's digest (manifest.py), written on every point as "models"
    image_vectors: bool
    # Each record model's "name@version" (result-cache keys per task) and the chunk plans' digests.
    task_models: dict[str, str] = field(default_factory=dict)
    plans: dict[str, str] = field(default_factory=dict)
    # Re-analysis in place: files the stat index has as done are read again (their results come from the
    # cache, but for the tasks whose model changed).
    reanalyze: bool = False
    refresh_tasks: tuple[str, ...] = ()  # asked again whatever the cache holds (a re-analysis's `tasks`)
    text_batch: int = 64  # texts per embed request
    audio_batch: int | None = None  # audio items per request; None: the ML service has no audio models
    audio_tasks: tuple[str, ...] = ()
    image_tasks: tuple[str, ...] = ()  # what the ML service runs on images (a keyframe may skip some)
    av: AVOptions = field(default_factory=AVOptions)
    documents: bool = True  # PDF, DOCX, HTML, Markdown and text files become passages (else skipped)
    doc: DocumentOptions = field(default_factory=DocumentOptions)
    face_cluster_threshold: float = 0.45
    voice_cluster_threshold: float = 0.75
    speaker_context_s: float = 0.0  # audio either side of a chunk that the speaker model hears too
    retry_failed: bool = False  # analyse again files that failed before and did not change since
    # Vector sizes the ML service announced; an answer's vector of another size is refused (None: unknown).
    text_dim: int | None = None
    image_dim: int | None = None
    face_dim: int | None = None
    voice_dim: int | None = None


@dataclass(frozen=True, slots=True)
class ScanScope:
    """The directories a watched folder's pass lists instead of the whole root (orchestrator/watch_plan.py
    makes it from the changed paths). Files are named gone only in a directory listed here, or under a
    `deep` one (or a `shallow` one that no longer exists): never in a directory the pass did not list."""

    shallow: frozenset[str] = frozenset()  # listed; their subdirectories are not entered
    deep: frozenset[str] = frozenset()  # walked with everything under them (created or moved-in trees)


@dataclass(slots=True)
class WatchScan:
    """What a watching job's pass asks of the scanner (orchestrator/watch.py)."""

    settle_s: float  # a new or changed file modified less than this ago is left for a later pass
    scope: ScanScope | None = None  # None: the whole root (the first pass, a catch-up after a restart)
    # Files left because they were still being written; the scan thread appends, the job reads them after
    # the pass and watches them settle.
    deferred: list[str] = field(default_factory=list)


class Checkpoint(Protocol):
    """Where a distributed worker's pass commits what it finished (orchestrator/distributed/ledger.py).
    The upsert stage calls it after each durable write and its done marks; it raises when the pass's
    partition has another owner now (the write's points are idempotent; its counts must not land)."""

    async def files_done(self, files: list[IndexedFile]) -> None: ...


@dataclass(frozen=True, slots=True)
class PartitionScan:
    """A distributed worker's pass: these names of one directory instead of a walk of the root
    (stages/scan_partition.py); `known` are their rows in the shared index (a changed file's old content)."""

    directory: str
    names: tuple[str, ...]
    known: dict[str, IndexedFile] = field(default_factory=dict)


@dataclass(slots=True)
class PipelineContext:
    job_id: str
    root: Path
    collection: str
    config: PipelineConfig
    store: VectorStore
    index: FileIndex
    cache: ResultCache
    ml: MLClient
    progress: JobProgress
    control: JobControl
    decoder: DecodePool
    people: PeopleStore  # names, merges, links (people_store.py)
    # Decoded video/audio files between prepare and the end of their inference (memory bound).
    media_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    watch: WatchScan | None = None  # a watching job's pass (scope, settle); None: an ordinary job's
    # An object-store pass (stages/scan_s3.py lists this prefix instead of walking `root`, then Path()).
    objects: ObjectScan | None = None
    partition: PartitionScan | None = None  # a distributed worker's partition (its files only)
    checkpoint: Checkpoint | None = None  # told of every file done (distributed mode)

    def people_index(self) -> PeopleIndex:
        """This job's view of the collection's people (faces and voices)."""
        config = self.config
        return PeopleIndex(
            self.store,
            self.collection,
            config.face_cluster_threshold,
            config.voice_cluster_threshold,
            self.index,
            self.job_id,
            self.people,
            config.face_dim,
            config.voice_dim,
        )

    def point_keeper(self, people: PeopleIndex) -> PointKeeper:
        return PointKeeper(self.store, self.index, people, self.collection)
