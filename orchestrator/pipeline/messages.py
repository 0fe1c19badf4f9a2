"""What flows through the pipeline's queues. Frozen, slotted dataclasses; pydantic stays at the HTTP edge.

Queue contracts (each queue is bounded; each ends with one SENTINEL per downstream worker), typed below
(`ScanQueue`, `PrepareQueue`, `InferQueue`) so mypy checks every put and get; no runtime assert:
    scan    -> prepare : list[DirBatch]    (directories' changed entries + unchanged names, stat'ed)
    prepare -> infer   : PreparedFile | PathLink     (answers cached per task are read by infer)
    infer   -> upsert  : AnalyzedFile | PathLink
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from orchestrator.file_index import IndexedFile
from orchestrator.ids import point_id


class Sentinel(enum.Enum):
    """The end of a queue's stream (one per downstream worker). An enum member, so `x is SENTINEL`
    narrows a queue item's type for mypy."""

    SENTINEL = "SENTINEL"

    def __repr__(self) -> str:
        return "SENTINEL"


SENTINEL: Final = Sentinel.SENTINEL
End: TypeAlias = Literal[Sentinel.SENTINEL]


@dataclass(frozen=True, slots=True)
class ScratchCopy:
    """A local copy of a file that lives elsewhere (an object in a store: stages/scan_s3.py), with the
    file's size and mtime. Prepare opens it instead of the file's path, checks the copy's own device and
    inode, and awaits `release` once done with the file, whatever the outcome (the copy is deleted)."""

    path: str
    device: int
    inode: int
    release: Callable[[], Awaitable[None]] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One regular file as the scanner saw it (lstat of the path, or stat of a symlink's in-root target).

    `device` and `inode` identify the file the scan saw: prepare opens it without following a symlink
    and refuses another file found at its place. `target` is the resolved path of an in-root symlink
    (what is opened), None for a plain file. A remote file (`scratch`) is read from its local copy; its
    size, mtime and inode (an object's: a number made from its ETag) stay what the index keeps."""

    path: str
    directory: str
    name: str
    size: int
    mtime_ns: int
    inode: int
    device: int = 0  # 0: not known (a parked duplicate read back from the index; never opened again)
    target: str | None = None
    scratch: ScratchCopy | None = None

    @property
    def open_path(self) -> str:
        if self.scratch is not None:
            return self.scratch.path
        return self.target or self.path

    @property
    def opened_id(self) -> tuple[int, int]:
        """(device, inode) the file opened must have (device 0: not checked)."""
        if self.scratch is not None:
            return self.scratch.device, self.scratch.inode
        return self.device, self.inode


@dataclass(frozen=True, slots=True)
class ScanFailure:
    path: str
    reason: str
    is_directory: bool = False  # a directory that could not be listed: its files may still exist


@dataclass(frozen=True, slots=True)
class KnownFailure:
    """A file that failed before (a reason of its content) and has not changed since: not read again."""

    path: str
    stage: str
    reason: str


@dataclass(frozen=True, slots=True)
class DirBatch:
    """Part of one directory: files that are new or changed (with their old index rows, if any), files
    that failed to scan, the number (as names) of unchanged files, indexed files that are gone, and files
    whose remembered failure still holds."""

    directory: str
    entries: list[FileEntry]
    failures: list[ScanFailure] = field(default_factory=list)
    known: dict[str, IndexedFile] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # indexed names no longer in the directory (pruning)
    known_failures: list[KnownFailure] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What decoding the file told us; goes into the point payload."""

    media_type: str  # "image" | "video" | "audio" | "document"
    mime: str
    width: int
    height: int
    exif: dict[str, Any]  # images: EXIF; video/audio: container facts (taken_at from creation_time)
    duration_s: float | None = None
    av: dict[str, Any] = field(default_factory=dict)  # codecs, rotation, fps, sample rate (video/audio)
    document: dict[str, Any] = field(default_factory=dict)  # format, title, author, pages (documents)


# Which chunk plan (manifest.plan_settings) cuts a file of each media type into chunks.
PLAN_KINDS: Final = {"image": "image", "video": "av", "audio": "av", "document": "document"}


def plan_kind(media_type: str) -> str:
    return PLAN_KINDS.get(media_type, "av")


@dataclass(frozen=True, slots=True)
class Frame:
    """One picture of a chunk for the ML service: the image itself, or a keyframe at `t_s`."""

    t_s: float | None
    jpeg: bytes


@dataclass(frozen=True, slots=True)
class ChunkInput:
    """One unit of ML work: an image (one chunk, one frame), a time span of a video/audio file with its
    keyframes and its audio (int16 mono 16 kHz PCM from `audio_start_s`, a little wider than the span), or a
    passage of a document (`text` under `heading`, on `page`; its pictures are its frames).
    `has_frames`/`has_audio` say which tasks it needs; `frames` is empty and `audio` None when the file
    was not decoded (every task's answers are cached)."""

    index: int
    start_s: float | None
    end_s: float | None
    frames: tuple[Frame, ...] = ()
    audio: bytes | None = None
    audio_start_s: float = 0.0
    has_frames: bool = True
    has_audio: bool = False
    cuts: tuple[float, ...] = ()  # shot changes inside the span: faces are on screen within their shot
    text: str = ""  # a document passage's own text
    heading: str = ""
    section: int | None = None  # documents: 1-based section (text under one heading), 0 before the first
    page: int | None = None  # documents with pages (PDF): 1-based


@dataclass(frozen=True, slots=True)
class ChunkAnalysis:
    """The ML service's understanding of one chunk, as cached and as stored in the payload.

    Times are absolute seconds in the file. `faces` holds an image's faces, or a chunk's face tracks
    (faces followed across its keyframes: `start_s`/`end_s`, best `box`, mean `embedding`).
    `words` are `[word, start_s, end_s]`; `turns` are speaker turns `{start_s, end_s, speaker, embedding}`
    (`speaker` is local to the chunk; voice clusters are assigned per collection when points are written)."""

    ocr_text: str
    tags: list[str]
    caption: str | None
    faces: list[dict[str, Any]]
    text: str  # what the text vector was computed from
    text_vector: list[float]
    image_vector: list[float] | None
    transcript: str = ""
    words: list[list[Any]] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)
    language: str | None = None
    scene: dict[str, Any] | None = None  # a VLM's description, objects, on-screen text, setting

    def to_dict(self) -> dict[str, Any]:
        return {
            "ocr_text": self.ocr_text,
            "tags": self.tags,
            "caption": self.caption,
            "faces": self.faces,
            "text": self.text,
            "text_vector": self.text_vector,
            "image_vector": self.image_vector,
            "transcript": self.transcript,
            "words": self.words,
            "turns": self.turns,
            "language": self.language,
            "scene": self.scene,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkAnalysis:
        return cls(
            ocr_text=data["ocr_text"],
            tags=list(data["tags"]),
            caption=data["caption"],
            faces=list(data["faces"]),
            text=data["text"],
            text_vector=list(data["text_vector"]),
            image_vector=data["image_vector"],
            transcript=data.get("transcript", ""),
            words=list(data.get("words") or []),
            turns=list(data.get("turns") or []),
            language=data.get("language"),
            scene=data.get("scene"),
        )


@dataclass(frozen=True, slots=True)
class PreparedFile:
    """A changed or new file, hashed, and decoded unless every task's answers are cached under its hash."""

    entry: FileEntry
    content_hash: str
    media: MediaInfo
    chunks: list[ChunkInput]
    previous: IndexedFile | None  # what the file index had for this path, when the content changed
    decoded: bool = False  # a decoded video/audio file: holds one of the job's media slots until inferred

    @property
    def point_ids(self) -> list[str]:
        return [point_id(self.content_hash, c.index) for c in self.chunks]


@dataclass(frozen=True, slots=True)
class PathLink:
    """Another path whose content another file of this job carries: add the path to that content's
    points (the upsert stage knows them once the first copy is written); no decoding, no ML, no vectors."""

    entry: FileEntry
    content_hash: str
    previous: IndexedFile | None


@dataclass(frozen=True, slots=True)
class AnalyzedFile:
    prepared: PreparedFile
    chunks: dict[int, ChunkAnalysis]
    # Stored without some results (a VLM caption failed): not marked done, so the next run asks again.
    partial: bool = False


# The pipeline's queues (see the module docstring).
ScanQueue: TypeAlias = "asyncio.Queue[list[DirBatch] | End]"
PrepareQueue: TypeAlias = "asyncio.Queue[PreparedFile | PathLink | End]"
InferQueue: TypeAlias = "asyncio.Queue[AnalyzedFile | PathLink | End]"
