"""Stage 2: stat fast path, content hash, type sniffing, cache look-up, decoding. Never on the event loop.

Per directory batch: one file-index query decides which files are unchanged (not read at all). Each other
file is handled by ONE thread call that reads it, hashes it (blake3), sniffs its type, looks its results
up in the result cache and, only on a miss, decodes it into a thumbnail and a downscaled copy for ML.

A file is opened once, without following a symlink at the path opened (O_NOFOLLOW), and only if it is
still the file the scan saw (device and inode): a file swapped for a link or another file between scan
and read fails with that reason instead of being read from wherever the link now points. Which path
claimed a content, and which files the scan found gone, are kept in the file index (TEMP tables), not in
memory. A failure that is a property of the content (not media, undecodable, empty) is remembered there
with the file's stat, so the next scan does not read the file again while it is unchanged.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, TypeVar

import blake3

from orchestrator.cache import media_key, task_key
from orchestrator.file_index import IndexedFile
from orchestrator.manifest import model_key
from orchestrator.media.av_decode import DecodedAV
from orchestrator.media.documents import DecodedDocument
from orchestrator.media.images import MediaDecodeError, decode_image, taken_at_fields, write_thumbnail
from orchestrator.media.sniff import DOCUMENT_EXTENSIONS, MEDIA_EXTENSIONS, Sniffed, describe_unknown, sniff
from orchestrator.media.thumbnails import chunk_thumbnail_path, thumbnail_path
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.messages import (
    SENTINEL,
    ChunkInput,
    DirBatch,
    FileEntry,
    Frame,
    MediaInfo,
    PathLink,
    PreparedFile,
    PrepareQueue,
    ScanQueue,
)

_T = TypeVar("_T")
_HEAD_BYTES = 256  # enough for an MPEG transport stream (two 188-byte packets)
_HASH_BLOCK = 8 << 20
# Images are read whole (hash and decode share the bytes); larger ones are refused, not risked.
MAX_IMAGE_BYTES = 1 << 30
# Claims whose winner is kept in memory too (claims never change within a job): a tree of copies costs one
# index round trip (~0.3 ms from a worker thread) per content, not per copy. Bounded: ~100 bytes each.
CLAIMS_REMEMBERED = 4096
# Names whose owners expect them read: empty or unreadable, they fail (other files are skipped). Text-like
# document names (.txt, .md, .html) are not among them: an empty note is common and says nothing.
EXPECTED_EXTENSIONS = MEDIA_EXTENSIONS | {".pdf", ".docx"}
# How a remembered failure shows in the job's errors (README, "How a job treats each file").
KNOWN_FAILURE_PREFIX = "failed before and unchanged since, not read again (options.retry_failed retries it): "


@dataclass(frozen=True, slots=True)
class _Failed:
    reason: str
    remember: bool = False  # a property of the content: not read again while the file is unchanged


@dataclass(frozen=True, slots=True)
class _Skipped:
    reason: str


@dataclass(frozen=True, slots=True)
class _NeedsDecode:
    """A video/audio file or a document whose results are not all cached: decode it in the pool, then
    finish it."""

    entry: FileEntry
    content_hash: str
    mime: str
    previous: IndexedFile | None
    document: bool = False


@dataclass(frozen=True, slots=True)
class _Duplicate:
    entry: FileEntry
    content_hash: str
    previous: IndexedFile | None


Claim = Callable[[str, str], str]  # (content hash, path) -> the path that claimed the content first


class PrepareStage:
    """The prepare workers. Which path claimed each content lives in the file index (`claims`): exactly
    one path per content is decoded and analysed in a job; the others are linked."""

    def __init__(self, ctx: PipelineContext) -> None:
        self._ctx = ctx
        self._winners: OrderedDict[str, str] = OrderedDict()  # the last CLAIMS_REMEMBERED claims' winners
        self._winners_lock = threading.Lock()  # claims come from the workers' threads

    async def worker(self, in_q: ScanQueue, out_q: PrepareQueue) -> None:
        claim = self._claimer()
        while True:
            message = await in_q.get()
            if message is SENTINEL:
                return
            for batch in message:
                await self._directory(batch, out_q, claim)

    def _claimer(self) -> Claim:
        """A claim for the file's worker thread: a recent content's winner from memory, else the index's
        answer (asked on the index's thread, through this loop, while the worker thread waits: no extra
        thread hop per file)."""
        loop = asyncio.get_running_loop()
        index, job_id = self._ctx.index, self._ctx.job_id
        winners, lock = self._winners, self._winners_lock

        def claim(content_hash: str, path: str) -> str:
            with lock:
                winner = winners.get(content_hash)
                if winner is not None:
                    winners.move_to_end(content_hash)
                    return winner
            future = asyncio.run_coroutine_threadsafe(index.claim(job_id, content_hash, path), loop)
            winner = future.result()
            with lock:
                winners[content_hash] = winner
                if len(winners) > CLAIMS_REMEMBERED:
                    winners.popitem(last=False)
            return winner

        return claim

    async def _directory(self, batch: DirBatch, out_q: PrepareQueue, claim: Claim) -> None:
        """One directory's part: record what was seen, count the unchanged, prepare the rest."""
        ctx = self._ctx
        await ctx.index.add_gone(ctx.job_id, [(batch.directory, name) for name in batch.gone])
        for failure in batch.failures:
            ctx.progress.fail(failure.path, "scan", failure.reason)
        for known in batch.known_failures:
            ctx.progress.fail(known.path, known.stage, f"{KNOWN_FAILURE_PREFIX}{known.reason}")
        ctx.progress.add("failed_before", len(batch.known_failures))
        ctx.progress.add("discovered", len(batch.entries) + len(batch.unchanged) + len(batch.known_failures))
        not_media: list[IndexedFile] = []
        remembered: list[tuple[str, str, int, int, int, str, str]] = []
        unchanged = len(batch.unchanged)
        running = ctx.control.running
        for entry in batch.entries:
            row = batch.known.get(entry.name)
            if (  # a symlinked file: the scanner's fast path sees only regular files
                not ctx.config.reanalyze  # (a re-analysis reads every indexed file again)
                and row is not None
                and row.size == entry.size
                and row.mtime_ns == entry.mtime_ns
                and row.inode == entry.inode
                and entry.scratch is None  # a copy made to be read is read (and released)
            ):
                unchanged += 1
                continue
            try:
                if not running.is_set():
                    await running.wait()  # paused: finish this file, start no new one
                message = await self._prepare(entry, row, claim)
            finally:
                if entry.scratch is not None:  # a remote file's local copy (scan_s3.py): done with it
                    await entry.scratch.release()
            if isinstance(message, IndexedFile):
                not_media.append(message)
            elif isinstance(message, _Failed):
                ctx.progress.fail(entry.path, "prepare", message.reason)
                if message.remember:  # with the scan's stat: what the next scan compares
                    e = entry
                    remembered.append(
                        (e.directory, e.name, e.size, e.mtime_ns, e.inode, "prepare", message.reason)
                    )
            else:
                await out_q.put(message)
        ctx.progress.add("unchanged", unchanged)
        ctx.progress.add("done", unchanged)
        # Remembered so a re-scan does not read them again; they own no points (no content hash).
        await ctx.index.mark_done(ctx.collection, not_media)
        await ctx.index.remember_failures(ctx.collection, remembered)

    async def _prepare(
        self, entry: FileEntry, row: IndexedFile | None, claim: Claim
    ) -> PreparedFile | PathLink | IndexedFile | _Failed:
        """Hash and decode one changed file (one thread hop). Returns the message for the next stage, an
        index row for a file that is not media, or the failure."""
        ctx = self._ctx
        with ctx.progress.busy("prepare"):
            result = await asyncio.to_thread(_prepare_file, entry, row, ctx, claim)
        if isinstance(result, _NeedsDecode):
            result = await self._decode(result)
        if isinstance(result, _Skipped):
            ctx.progress.add("skipped")
            ctx.progress.add("done")
            return IndexedFile(entry.directory, entry.name, entry.size, entry.mtime_ns, entry.inode, "", 0)
        if isinstance(result, _Failed):
            return result
        ctx.progress.add("hashed")
        ctx.progress.add("bytes", result.entry.size)
        if isinstance(result, _Duplicate):
            ctx.progress.add("duplicates")
            return PathLink(entry=result.entry, content_hash=result.content_hash, previous=result.previous)
        ctx.progress.add("chunks", len(result.chunks))
        return result

    async def _decode(self, job: _NeedsDecode) -> PreparedFile | _Failed:
        """Decode a video/audio file in the process pool (time-limited) and cut it into chunk inputs. The
        result holds one of the job's media slots (decoded audio and keyframes) until it is inferred."""
        ctx = self._ctx
        await ctx.media_slots.acquire()
        try:
            prepared: PreparedFile | _Failed
            if job.document:
                options = replace(ctx.config.doc, mime=job.mime)
                with ctx.progress.busy("decode"):
                    document = await ctx.decoder.decode(job.entry.open_path, options)
                with ctx.progress.busy("prepare"):
                    prepared = await asyncio.to_thread(_finish_document, job, document, ctx)
            else:
                with ctx.progress.busy("decode"):
                    decoded = await ctx.decoder.decode(job.entry.open_path, ctx.config.av)
                with ctx.progress.busy("prepare"):
                    prepared = await asyncio.to_thread(_finish_av, job, decoded, ctx)
        except MediaDecodeError as exc:
            ctx.media_slots.release()
            return _Failed(str(exc), remember=True)
        except BaseException:
            ctx.media_slots.release()
            raise
        if isinstance(prepared, _Failed):
            ctx.media_slots.release()
        return prepared


def _prepare_file(
    entry: FileEntry, row: IndexedFile | None, ctx: PipelineContext, claim: Claim
) -> PreparedFile | _NeedsDecode | _Duplicate | _Failed | _Skipped:
    """Runs in a worker thread: everything blocking about one file, in one thread hop (see
    docs/performance-limits.md)."""
    config = ctx.config
    if entry.size == 0:
        return _empty(entry)
    if entry.size > config.max_file_bytes:
        return _Failed(f"file too large: {entry.size} bytes (limit {config.max_file_bytes})")
    try:
        with open_scanned(entry) as fh:
            read = _read_content(fh, entry, config.documents)
    except _ChangedError as exc:
        return _Failed(str(exc))
    except OSError as exc:
        return _Failed(f"cannot read: {exc.strerror or exc}")
    if isinstance(read, _Failed | _Skipped):
        return read
    kind, data, content_hash, entry = read
    previous = row if row is not None and row.content_hash != content_hash else None
    if claim(content_hash, entry.path) != entry.path:
        return _Duplicate(entry, content_hash, previous)
    if kind.media_type == "image":
        return _prepare_image(entry, data, content_hash, kind.mime, previous, ctx)
    if kind.media_type == "audio" and config.audio_batch is None:
        return _Failed("audio file, but the ML service has no audio models")
    if kind.media_type == "document":
        return _cached_document(entry, content_hash, kind.mime, previous, ctx)
    return _cached_av(entry, content_hash, kind.mime, previous, ctx)


def _read_content(
    fh: BinaryIO, entry: FileEntry, documents: bool
) -> tuple[Sniffed, bytes, str, FileEntry] | _Failed | _Skipped:
    """Sniff the open file's type, then read (an image, whole) or stream (video/audio, documents) it for its
    hash. Returns the type, the bytes (images only), the hash and the entry with the stat of the read."""
    head = fh.read(_HEAD_BYTES)
    if not head:
        return _empty(entry)
    kind = sniff(head, entry.name)
    extension = os.path.splitext(entry.name)[1].lower()
    if kind.media_type == "document" and not documents:
        return _Skipped("a document (documents are not ingested: INGEST_DOCUMENTS, options.documents)")
    if kind.media_type == "unknown":
        what = describe_unknown(head)
        if extension in EXPECTED_EXTENSIONS:
            expected = "a document" if extension in DOCUMENT_EXTENSIONS else "media"
            return _Failed(f"content is {what}, not {expected} (name ends in {extension})", remember=True)
        return _Skipped(f"not media: {what}")
    if kind.media_type == "image":
        if entry.size > MAX_IMAGE_BYTES:
            return _Failed(f"image file too large: {entry.size} bytes (limit {MAX_IMAGE_BYTES})")
        data, entry = _read_stable(fh, entry)
        return kind, data, blake3.blake3(data).hexdigest(), entry
    content_hash, entry = _hash_stable(fh, entry)
    return kind, b"", content_hash, entry


def _empty(entry: FileEntry) -> _Failed | _Skipped:
    """An empty file fails only under a media name (its owner expected media there); an empty README or
    sidecar is skipped like any other file that is not media."""
    if os.path.splitext(entry.name)[1].lower() in EXPECTED_EXTENSIONS:
        return _Failed("empty file", remember=True)
    return _Skipped("not media: empty")


def _cached_av(
    entry: FileEntry, content_hash: str, mime: str, previous: IndexedFile | None, ctx: PipelineContext
) -> PreparedFile | _NeedsDecode:
    """A video/audio file whose chunk plan, every task's answers for every chunk and thumbnails are cached
    needs no decoding (infer reads the answers)."""
    config = ctx.config
    plan = config.plans.get("av", "")
    mkey = media_key(content_hash, plan)
    media = ctx.cache.get_many_sync([mkey]).get(mkey)
    # Each chunk: start, end, has keyframes, has audio, shot changes, where its audio starts (ASR word times
    # are relative to it; an entry written before it was kept is decoded again, its answers still cached).
    if media is None or not all(len(c) == 6 for c in media.get("chunks") or [[]]):
        return _NeedsDecode(entry, content_hash, mime, previous)
    chunks = [
        ChunkInput(
            index=i,
            start_s=float(c[0]),
            end_s=float(c[1]),
            has_frames=bool(c[2]),
            has_audio=bool(c[3]),
            cuts=tuple(float(t) for t in c[4]),
            audio_start_s=float(c[5]),
        )
        for i, c in enumerate(media["chunks"])
    ]
    thumbs_ok = media["media_type"] != "video" or all(
        chunk_thumbnail_path(config.thumbnails_dir, content_hash, c.index, config.plans.get("av")).exists()
        for c in chunks
    )
    if not thumbs_ok or not _all_cached(ctx, content_hash, plan, chunks):
        return _NeedsDecode(entry, content_hash, mime, previous)
    return PreparedFile(
        entry=entry, content_hash=content_hash, media=_media_info(media), chunks=chunks, previous=previous
    )


def _all_cached(ctx: PipelineContext, content_hash: str, plan: str, chunks: list[ChunkInput]) -> bool:
    """Every task each chunk needs has its answers in the cache (under the task's current model)."""
    config = ctx.config
    needed = [
        (c.index, task)
        for c in chunks
        for task in (config.image_tasks if c.has_frames else ()) + (config.audio_tasks if c.has_audio else ())
    ]
    if any(task in config.refresh_tasks for _, task in needed):  # asked again: decode
        return False
    keys = [
        task_key(content_hash, plan, index, task, config.task_models.get(model_key(task), "none"))
        for index, task in needed
    ]
    return ctx.cache.has_all_sync(keys)


def _media_info(media: dict[str, Any]) -> MediaInfo:
    return MediaInfo(
        media_type=media["media_type"],
        mime=media["mime"],
        width=int(media["width"]),
        height=int(media["height"]),
        exif=dict(media.get("exif") or {}),
        duration_s=media.get("duration_s"),
        av=dict(media.get("av") or {}),
        document=dict(media.get("document") or {}),
    )


def _cached_document(
    entry: FileEntry, content_hash: str, mime: str, previous: IndexedFile | None, ctx: PipelineContext
) -> PreparedFile | _NeedsDecode:
    """A document whose passages (cached with what decoding found), every picture's answers and every
    passage's thumbnail are cached needs no reading (infer reads the answers, the text vectors are cached)."""
    config = ctx.config
    plan = config.plans.get("document", "")
    mkey = media_key(content_hash, plan)
    media = ctx.cache.get_many_sync([mkey]).get(mkey)
    again = _NeedsDecode(entry, content_hash, mime, previous, document=True)
    if media is None or len(media.get("passages") or []) != len(media.get("chunks") or [None]):
        return again
    chunks = [
        ChunkInput(
            index=i,
            start_s=None,
            end_s=None,
            has_frames=bool(c[2]),
            has_audio=False,
            text=str(p[0]),
            heading=str(p[1]),
            section=p[2],
            page=p[3],
        )
        for i, (c, p) in enumerate(zip(media["chunks"], media["passages"], strict=True))
    ]
    thumbs = config.thumbnails_dir
    if not all(chunk_thumbnail_path(thumbs, content_hash, c.index, plan).exists() for c in chunks):
        return again
    if not _all_cached(ctx, content_hash, plan, chunks):
        return again
    return PreparedFile(
        entry=entry, content_hash=content_hash, media=_media_info(media), chunks=chunks, previous=previous
    )


def _finish_document(
    job: _NeedsDecode, decoded: DecodedDocument, ctx: PipelineContext
) -> PreparedFile | _Failed:
    """In a worker thread: check the file did not change since it was hashed, write each passage's
    thumbnail (its page, or a card), and turn the passages into chunk inputs."""
    changed = _changed_since_hash(job.entry)
    if changed is not None:
        return changed
    thumbs, plan = ctx.config.thumbnails_dir, ctx.config.plans.get("document")
    chunks = []
    for passage in decoded.passages:
        write_thumbnail(
            chunk_thumbnail_path(thumbs, job.content_hash, passage.index, plan), passage.thumbnail_jpeg
        )
        if passage.index == 0:
            write_thumbnail(thumbnail_path(thumbs, job.content_hash), passage.thumbnail_jpeg)
        chunks.append(
            ChunkInput(
                index=passage.index,
                start_s=None,
                end_s=None,
                frames=tuple(Frame(None, jpeg) for jpeg in passage.images),
                has_frames=bool(passage.images),
                text=passage.text,
                heading=passage.heading,
                section=passage.section,
                page=passage.page,
            )
        )
    media = MediaInfo("document", job.mime, decoded.width, decoded.height, {}, document=dict(decoded.facts))
    return PreparedFile(
        entry=job.entry,
        content_hash=job.content_hash,
        media=media,
        chunks=chunks,
        previous=job.previous,
        decoded=True,
    )


def _changed_since_hash(entry: FileEntry) -> _Failed | None:
    """Why the file at the entry's path is no longer the one hashed (None: it still is)."""
    try:
        st = os.stat(entry.open_path, follow_symlinks=False)
    except OSError as exc:
        return _Failed(f"cannot read: {exc.strerror or exc}")
    if stat.S_ISLNK(st.st_mode):
        return _Failed(f"file was {_SWAPPED_FOR_LINK}")
    if not _same_file(st, entry):
        return _Failed(f"file was {_SWAPPED}")
    if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
        return _Failed("file changed while it was being read")
    return None


def _finish_av(job: _NeedsDecode, decoded: DecodedAV, ctx: PipelineContext) -> PreparedFile | _Failed:
    """In a worker thread: check the file did not change since it was hashed, write the chunk thumbnails,
    and turn the decoded chunks into chunk inputs."""
    entry = job.entry
    changed = _changed_since_hash(entry)
    if changed is not None:
        return changed
    if not decoded.chunks:
        return _Failed("no decodable content", remember=True)
    thumbs = ctx.config.thumbnails_dir
    chunks = []
    for chunk in decoded.chunks:
        if chunk.thumbnail_jpeg is not None:
            path = chunk_thumbnail_path(thumbs, job.content_hash, chunk.index, ctx.config.plans.get("av"))
            write_thumbnail(path, chunk.thumbnail_jpeg)
        if chunk.index == 0 and chunk.thumbnail_jpeg is not None:
            write_thumbnail(thumbnail_path(thumbs, job.content_hash), chunk.thumbnail_jpeg)
        chunks.append(
            ChunkInput(
                index=chunk.index,
                start_s=chunk.start_s,
                end_s=chunk.end_s,
                frames=tuple(Frame(k.t_s, k.jpeg) for k in chunk.keyframes),
                audio=chunk.audio_pcm,
                audio_start_s=chunk.audio_start_s,
                has_frames=bool(chunk.keyframes),
                has_audio=chunk.audio_pcm is not None,
                cuts=chunk.cuts,
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
    plan = config.plans.get("image", "")
    mkey = media_key(content_hash, plan)
    thumb = thumbnail_path(config.thumbnails_dir, content_hash)
    whole = [ChunkInput(index=0, start_s=None, end_s=None)]
    media = ctx.cache.get_many_sync([mkey]).get(mkey)
    if media is not None and thumb.exists() and _all_cached(ctx, content_hash, plan, whole):
        return PreparedFile(
            entry=entry, content_hash=content_hash, media=_media_info(media), chunks=whole, previous=previous
        )
    try:
        decoded = decode_image(
            data,
            ml_max_side=config.ml_image_max_side,
            thumb_side=config.thumbnail_size,
            max_pixels=config.max_image_pixels,
        )
    except MediaDecodeError as exc:
        return _Failed(str(exc), remember=True)
    write_thumbnail(thumb, decoded.thumbnail_jpeg)
    return PreparedFile(
        entry=entry,
        content_hash=content_hash,
        media=MediaInfo("image", mime, decoded.width, decoded.height, decoded.exif),
        chunks=[ChunkInput(index=0, start_s=None, end_s=None, frames=(Frame(None, decoded.ml_jpeg),))],
        previous=previous,
    )


class _ChangedError(Exception):
    pass


_SWAPPED_FOR_LINK = "replaced by a symlink after the scan (not followed)"
_SWAPPED = "replaced by another file after the scan (device and inode differ)"
# O_NONBLOCK: a file swapped for a FIFO must not block the open; reads of regular files ignore it.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _same_file(st: os.stat_result, entry: FileEntry) -> bool:
    device, inode = entry.opened_id
    return st.st_ino == inode and (not device or st.st_dev == device)


def open_scanned(entry: FileEntry) -> BinaryIO:
    """Open the file the scan saw, for reading: never through a symlink at the path opened (an in-root
    link's resolved target is opened, so a link swapped in later is refused), and only if it is still a
    regular file with the device and inode the scan recorded. _ChangedError says which it was."""
    try:
        fd = os.open(entry.open_path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _ChangedError(f"file was {_SWAPPED_FOR_LINK}") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _ChangedError("file was replaced by something that is not a regular file after the scan")
        if not _same_file(st, entry):
            raise _ChangedError(f"file was {_SWAPPED}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_stable(fh: BinaryIO, entry: FileEntry) -> tuple[bytes, FileEntry]:
    """Read the whole open file and make sure it did not change meanwhile (else the hash would be stale).

    Returns the stat as it was during the read: that, not the scanner's, goes into the file index."""
    return _stable(fh, entry, _read_whole)


def _hash_stable(fh: BinaryIO, entry: FileEntry) -> tuple[str, FileEntry]:
    """blake3 of a (large) file read as a stream, checked unchanged across the read like `_read_stable`."""
    return _stable(fh, entry, _hash_stream)


def _stable(
    fh: BinaryIO, entry: FileEntry, consume: Callable[[BinaryIO], tuple[_T, int]]
) -> tuple[_T, FileEntry]:
    """`consume` the open file from its start (it returns its result and the bytes it read); retried once
    if the file changed during the read (size or mtime moved, or fewer bytes than its size)."""
    for _ in range(2):
        fh.seek(0)
        before = os.fstat(fh.fileno())
        result, read = consume(fh)
        after = os.fstat(fh.fileno())
        stable = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
        if stable and read == after.st_size:
            inode = after.st_ino if entry.scratch is None else entry.inode  # an object's stays its own
            return result, replace(entry, size=after.st_size, mtime_ns=after.st_mtime_ns, inode=inode)
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
