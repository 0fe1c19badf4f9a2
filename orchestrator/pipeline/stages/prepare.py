"""Stage 2: stat fast path, content hash, type sniffing, cache look-up, decoding. Never on the event loop.

Per directory batch: one file-index query decides which files are unchanged (not read at all). Each other
file is handled by ONE thread call that reads it, hashes it (blake3), sniffs its type, looks its results
up in the result cache and, only on a miss, decodes it into a thumbnail and a downscaled copy for ML.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import blake3

from orchestrator.cache import media_key, result_key
from orchestrator.file_index import IndexedFile
from orchestrator.media.av_decode import DecodedAV
from orchestrator.media.images import MediaDecodeError, decode_image, taken_at_fields, write_thumbnail
from orchestrator.media.sniff import MEDIA_EXTENSIONS, describe_unknown, sniff
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.messages import (
    SENTINEL,
    ChunkAnalysis,
    ChunkInput,
    DirBatch,
    FileEntry,
    Frame,
    MediaInfo,
    PathLink,
    PreparedFile,
)

_T = TypeVar("_T")
_HEAD_BYTES = 256  # enough for an MPEG transport stream (two 188-byte packets)
_HASH_BLOCK = 8 << 20
# Images are read whole (hash and decode share the bytes); larger ones are refused, not risked.
MAX_IMAGE_BYTES = 1 << 30


@dataclass(frozen=True, slots=True)
class _Failed:
    reason: str


@dataclass(frozen=True, slots=True)
class _Skipped:
    reason: str


@dataclass(frozen=True, slots=True)
class _NeedsDecode:
    """A video/audio file whose results are not all cached: decode it in the pool, then finish it."""

    entry: FileEntry
    content_hash: str
    mime: str
    previous: IndexedFile | None
    cached: dict[int, ChunkAnalysis]


@dataclass(frozen=True, slots=True)
class _Duplicate:
    entry: FileEntry
    content_hash: str
    previous: IndexedFile | None


class PrepareStage:
    """Shared state of the prepare workers: which contents this job has already claimed."""

    def __init__(self, ctx: PipelineContext) -> None:
        self._ctx = ctx
        # content hash -> the path that claimed it. Written from worker threads with dict.setdefault,
        # which is atomic: exactly one path per content is decoded and analysed; the others are linked.
        self._claims: dict[str, str] = {}
        self.gone: list[tuple[str, str]] = []  # (directory, name) the scanner found gone, for pruning

    async def worker(self, in_q: asyncio.Queue[object], out_q: asyncio.Queue[object]) -> None:
        while True:
            message = await in_q.get()
            if message is SENTINEL:
                return
            assert isinstance(message, list)
            for batch in message:
                await self._directory(batch, out_q)

    async def _directory(self, batch: DirBatch, out_q: asyncio.Queue[object]) -> None:
        """One directory's part: record what was seen, count the unchanged, prepare the rest."""
        ctx = self._ctx
        self.gone.extend((batch.directory, name) for name in batch.gone)
        for failure in batch.failures:
            ctx.progress.fail(failure.path, "scan", failure.reason)
        ctx.progress.add("discovered", len(batch.entries) + len(batch.unchanged))
        not_media: list[IndexedFile] = []
        unchanged = len(batch.unchanged)
        running = ctx.control.running
        for entry in batch.entries:
            row = batch.known.get(entry.name)
            if (  # a symlinked file: the scanner's fast path sees only regular files
                row is not None
                and row.size == entry.size
                and row.mtime_ns == entry.mtime_ns
                and row.inode == entry.inode
            ):
                unchanged += 1
                continue
            if not running.is_set():
                await running.wait()  # paused: finish this file, start no new one
            message = await self._prepare(entry, row)
            if isinstance(message, IndexedFile):
                not_media.append(message)
            elif message is not None:
                await out_q.put(message)
        ctx.progress.add("unchanged", unchanged)
        ctx.progress.add("done", unchanged)
        # Remembered so a re-scan does not read them again; they own no points (no content hash).
        await ctx.index.mark_done(ctx.collection, not_media)

    async def _prepare(
        self, entry: FileEntry, row: IndexedFile | None
    ) -> PreparedFile | PathLink | IndexedFile | None:
        """Hash and decode one changed file (one thread hop). Returns the message for the next stage, an
        index row for a file that is not media, or None for a failure (recorded here)."""
        ctx = self._ctx
        with ctx.progress.busy("prepare"):
            result = await asyncio.to_thread(_prepare_file, entry, row, ctx, self._claims)
        if isinstance(result, _NeedsDecode):
            result = await self._decode(result)
        if isinstance(result, _Skipped):
            ctx.progress.add("skipped")
            ctx.progress.add("done")
            return IndexedFile(entry.directory, entry.name, entry.size, entry.mtime_ns, entry.inode, "", 0)
        if isinstance(result, _Failed):
            ctx.progress.fail(entry.path, "prepare", result.reason)
            return None
        ctx.progress.add("hashed")
        ctx.progress.add("bytes", result.entry.size)
        if isinstance(result, _Duplicate):
            ctx.progress.add("duplicates")
            return PathLink(entry=result.entry, content_hash=result.content_hash, previous=result.previous)
        ctx.progress.add("chunks", len(result.chunks))
        ctx.progress.add("cache_hits", len(result.cached))
        return result

    async def _decode(self, job: _NeedsDecode) -> PreparedFile | _Failed:
        """Decode a video/audio file in the process pool (time-limited) and cut it into chunk inputs. The
        result holds one of the job's media slots (decoded audio and keyframes) until it is inferred."""
        ctx = self._ctx
        await ctx.media_slots.acquire()
        try:
            with ctx.progress.busy("decode"):
                decoded = await ctx.decoder.decode(job.entry.path, ctx.config.av)
            with ctx.progress.busy("prepare"):
                prepared = await asyncio.to_thread(_finish_av, job, decoded, ctx)
        except MediaDecodeError as exc:
            ctx.media_slots.release()
            return _Failed(str(exc))
        except BaseException:
            ctx.media_slots.release()
            raise
        if isinstance(prepared, _Failed):
            ctx.media_slots.release()
        return prepared


def _prepare_file(
    entry: FileEntry, row: IndexedFile | None, ctx: PipelineContext, claims: dict[str, str]
) -> PreparedFile | _NeedsDecode | _Duplicate | _Failed | _Skipped:
    """Runs in a worker thread: everything blocking about one file, in one thread hop (see
    docs/performance-limits.md)."""
    config = ctx.config
    if entry.size == 0:
        return _Failed("empty file")
    if entry.size > config.max_file_bytes:
        return _Failed(f"file too large: {entry.size} bytes (limit {config.max_file_bytes})")
    try:
        with open(entry.path, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except OSError as exc:
        return _Failed(f"cannot read: {exc.strerror or exc}")
    if not head:
        return _Failed("empty file")
    kind = sniff(head)
    extension = os.path.splitext(entry.name)[1].lower()
    if kind.media_type == "unknown":
        what = describe_unknown(head)
        if extension in MEDIA_EXTENSIONS:
            return _Failed(f"content is {what}, not media (name ends in {extension})")
        return _Skipped(f"not media: {what}")
    data = b""
    try:
        if kind.media_type == "image":
            if entry.size > MAX_IMAGE_BYTES:
                return _Failed(f"image file too large: {entry.size} bytes (limit {MAX_IMAGE_BYTES})")
            data, entry = _read_stable(entry)
            content_hash = blake3.blake3(data).hexdigest()
        else:
            content_hash, entry = _hash_stable(entry)
    except _ChangedError as exc:
        return _Failed(str(exc))
    except OSError as exc:
        return _Failed(f"cannot read: {exc.strerror or exc}")
    previous = row if row is not None and row.content_hash != content_hash else None
    if claims.setdefault(content_hash, entry.path) != entry.path:
        return _Duplicate(entry, content_hash, previous)
    if kind.media_type == "image":
        return _prepare_image(entry, data, content_hash, kind.mime, previous, ctx)
    if kind.media_type == "audio" and config.audio_batch is None:
        return _Failed("audio file, but the ML service has no audio models")
    return _cached_av(entry, content_hash, kind.mime, previous, ctx)


def _cached_av(
    entry: FileEntry, content_hash: str, mime: str, previous: IndexedFile | None, ctx: PipelineContext
) -> PreparedFile | _NeedsDecode:
    """A fully cached video/audio file (chunk plan, every chunk's results, thumbnails) needs no decoding."""
    config = ctx.config
    mkey = media_key(content_hash)
    media = ctx.cache.get_many_sync([mkey]).get(mkey)
    if media is None or "chunks" not in media:
        return _NeedsDecode(entry, content_hash, mime, previous, {})
    plan = [(float(a), float(b)) for a, b in media["chunks"]]
    keys = [result_key(content_hash, i, config.models_signature) for i in range(len(plan))]
    hits = ctx.cache.get_many_sync(keys)
    cached = {i: ChunkAnalysis.from_dict(hits[k]) for i, k in enumerate(keys) if k in hits}
    thumbs_ok = media["media_type"] != "video" or all(
        chunk_thumbnail_path(config.thumbnails_dir, content_hash, i).exists() for i in range(len(plan))
    )
    if len(cached) < len(plan) or not thumbs_ok:
        return _NeedsDecode(entry, content_hash, mime, previous, cached)
    return PreparedFile(
        entry=entry,
        content_hash=content_hash,
        media=_media_info(media),
        chunks=[ChunkInput(index=i, start_s=a, end_s=b) for i, (a, b) in enumerate(plan)],
        cached=cached,
        previous=previous,
    )


def _media_info(media: dict[str, Any]) -> MediaInfo:
    return MediaInfo(
        media_type=media["media_type"],
        mime=media["mime"],
        width=int(media["width"]),
        height=int(media["height"]),
        exif=dict(media.get("exif") or {}),
        duration_s=media.get("duration_s"),
        av=dict(media.get("av") or {}),
    )


def _finish_av(job: _NeedsDecode, decoded: DecodedAV, ctx: PipelineContext) -> PreparedFile | _Failed:
    """In a worker thread: check the file did not change since it was hashed, write the chunk thumbnails,
    and turn the decoded chunks into chunk inputs (cached chunks carry no bytes)."""
    entry = job.entry
    try:
        st = os.stat(entry.path)
    except OSError as exc:
        return _Failed(f"cannot read: {exc.strerror or exc}")
    if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
        return _Failed("file changed while it was being read")
    if not decoded.chunks:
        return _Failed("no decodable content")
    thumbs = ctx.config.thumbnails_dir
    chunks = []
    for chunk in decoded.chunks:
        if chunk.thumbnail_jpeg is not None:
            write_thumbnail(chunk_thumbnail_path(thumbs, job.content_hash, chunk.index), chunk.thumbnail_jpeg)
        if chunk.index == 0 and chunk.thumbnail_jpeg is not None:
            write_thumbnail(thumbnail_path(thumbs, job.content_hash), chunk.thumbnail_jpeg)
        cached = chunk.index in job.cached
        chunks.append(
            ChunkInput(
                index=chunk.index,
                start_s=chunk.start_s,
                end_s=chunk.end_s,
                frames=() if cached else tuple(Frame(k.t_s, k.jpeg) for k in chunk.keyframes),
                audio=None if cached else chunk.audio_pcm,
                audio_start_s=chunk.audio_start_s,
            )
        )
    probe = decoded.probe
    exif: dict[str, Any] = {}
    if probe.creation_time:
        exif.update(taken_at_fields(probe.creation_time))
    av = {
        "container": probe.container,
        "video_codec": probe.video_codec,
        "audio_codec": probe.audio_codec,
        "rotation": probe.rotation,
        "fps": probe.fps,
        "sample_rate": probe.sample_rate,
        "channels": probe.channels,
        "has_audio": probe.has_audio,
    }
    return PreparedFile(
        entry=entry,
        content_hash=job.content_hash,
        media=MediaInfo(
            decoded.media_type, job.mime, probe.width, probe.height, exif, round(probe.duration_s, 3), av
        ),
        chunks=chunks,
        cached=dict(job.cached),
        previous=job.previous,
        decoded=True,
    )


def _prepare_image(
    entry: FileEntry,
    data: bytes,
    content_hash: str,
    mime: str,
    previous: IndexedFile | None,
    ctx: PipelineContext,
) -> PreparedFile | _Failed:
    config = ctx.config
    rkey = result_key(content_hash, 0, config.models_signature)
    mkey = media_key(content_hash)
    hits = ctx.cache.get_many_sync([rkey, mkey])
    thumb = thumbnail_path(config.thumbnails_dir, content_hash)
    if rkey in hits and mkey in hits and thumb.exists():
        return PreparedFile(
            entry=entry,
            content_hash=content_hash,
            media=_media_info(hits[mkey]),
            chunks=[ChunkInput(index=0, start_s=None, end_s=None)],
            cached={0: ChunkAnalysis.from_dict(hits[rkey])},
            previous=previous,
        )
    try:
        decoded = decode_image(
            data,
            ml_max_side=config.ml_image_max_side,
            thumb_side=config.thumbnail_size,
            max_pixels=config.max_image_pixels,
        )
    except MediaDecodeError as exc:
        return _Failed(str(exc))
    write_thumbnail(thumb, decoded.thumbnail_jpeg)
    cached = {0: ChunkAnalysis.from_dict(hits[rkey])} if rkey in hits else {}
    return PreparedFile(
        entry=entry,
        content_hash=content_hash,
        media=MediaInfo("image", mime, decoded.width, decoded.height, decoded.exif),
        chunks=[
            ChunkInput(
                index=0, start_s=None, end_s=None, frames=() if cached else (Frame(None, decoded.ml_jpeg),)
            )
        ],
        cached=cached,
        previous=previous,
    )


def thumbnail_path(thumbnails_dir: Path, content_hash: str) -> Path:
    return thumbnails_dir / content_hash[:2] / f"{content_hash}.jpg"


def chunk_thumbnail_path(thumbnails_dir: Path, content_hash: str, index: int) -> Path:
    """A video chunk's thumbnail (its middle keyframe)."""
    return thumbnails_dir / content_hash[:2] / f"{content_hash}_{index}.jpg"


class _ChangedError(Exception):
    pass


def _read_stable(entry: FileEntry) -> tuple[bytes, FileEntry]:
    """Read the whole file and make sure it did not change meanwhile (else the hash would be stale).

    Returns the stat as it was during the read: that, not the scanner's, goes into the file index."""
    return _stable(entry, _read_whole)


def _hash_stable(entry: FileEntry) -> tuple[str, FileEntry]:
    """blake3 of a (large) file read as a stream, checked unchanged across the read like `_read_stable`."""
    return _stable(entry, _hash_stream)


def _stable(entry: FileEntry, consume: Callable[[BinaryIO], tuple[_T, int]]) -> tuple[_T, FileEntry]:
    """`consume` the open file (it returns its result and the bytes it read); retried once if the file
    changed during the read (size or mtime moved, or fewer bytes than its size)."""
    for _ in range(2):
        with open(entry.path, "rb") as fh:
            before = os.fstat(fh.fileno())
            result, read = consume(fh)
            after = os.fstat(fh.fileno())
        stable = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
        if stable and read == after.st_size:
            return result, replace(entry, size=after.st_size, mtime_ns=after.st_mtime_ns, inode=after.st_ino)
    raise _ChangedError("file changed while it was being read")


def _read_whole(fh: BinaryIO) -> tuple[bytes, int]:
    data = fh.read()
    return data, len(data)


def _hash_stream(fh: BinaryIO) -> tuple[str, int]:
    hasher = blake3.blake3()
    read = 0
    while block := fh.read(_HASH_BLOCK):
        hasher.update(block)
        read += len(block)
    return hasher.hexdigest(), read
