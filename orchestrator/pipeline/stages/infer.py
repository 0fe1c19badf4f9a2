"""Stage 3: batched calls to the ML service, sized from its /capabilities (or ML_INFERENCE_BATCH_SIZE).

Each worker assembles a batch of chunks from the queue: it takes what is there, and when the batch is
not full waits at most LINGER_S for more, so a trickle is not held back and a flood fills batches.
Files whose every chunk was cached pass straight through; an item the ML service could not analyse
fails that file only. The ML service being gone for good raises, which fails the job.

A batch is analysed in rounds of at most `infer_batch` chunks, and each round's results are cached as it
ends (per chunk, also the good chunks of a file that fails): a failure or crash late in a long video keeps
the ML work done before it, and the next run asks only for the chunks not cached yet.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from orchestrator import answers
from orchestrator.cache import media_key, result_key
from orchestrator.clients.ml import AudioRequestItem, ImageRequestItem
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.messages import (
    SENTINEL,
    AnalyzedFile,
    ChunkAnalysis,
    ChunkInput,
    End,
    InferQueue,
    PathLink,
    PreparedFile,
    PrepareQueue,
)
from orchestrator.pipeline.unify import Speech, Visual, compose_text, mean_vector, merge_frames, speech

# How long a partly filled batch waits for more work. A few ms of queue latency against a model
# call of hundreds of ms: the wait costs nothing measurable and fills batches when prepare is close behind.
LINGER_S = 0.05


CAPTION_TASK = "caption"  # the VLM's image task (docs/ml-api.md)


def _only_caption_failed(result: dict[str, Any]) -> bool:
    """An analyze/images item answered except for its caption: its only failed task (``task_errors``,
    docs/ml-api.md) is the VLM's. An item that failed as a whole has no task errors."""
    failed = result.get("task_errors")
    return isinstance(failed, dict) and set(failed) == {CAPTION_TASK}


@dataclass(slots=True)
class _Pending:
    prepared: PreparedFile
    results: dict[int, ChunkAnalysis] = field(default_factory=dict)
    frames: dict[int, list[tuple[float | None, dict[str, Any]]]] = field(default_factory=dict)
    audio: dict[int, dict[str, Any]] = field(default_factory=dict)
    partial: set[int] = field(default_factory=set)  # chunks stored without a caption: not cached, retried
    error: str | None = None

    def fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason


class InferStage:
    def __init__(self, ctx: PipelineContext) -> None:
        self._ctx = ctx

    async def worker(self, in_q: PrepareQueue, out_q: InferQueue) -> None:
        while True:
            await self._ctx.control.running.wait()  # paused: the batch in flight finished, no new one
            first = await in_q.get()
            if first is SENTINEL:
                return
            batch, ended = await self._collect(first, in_q, out_q)
            if batch:
                for analyzed in await self._infer(batch):
                    await out_q.put(analyzed)
            if ended:
                return

    async def _collect(
        self, item: PreparedFile | PathLink | End, in_q: PrepareQueue, out_q: InferQueue
    ) -> tuple[list[PreparedFile], bool]:
        """Fill one batch; returns it and whether the upstream sentinel was read."""
        batch: list[PreparedFile] = []
        chunks = 0
        deadline = time.monotonic() + LINGER_S
        while True:
            if item is SENTINEL:
                return batch, True
            chunks += await self._route(item, batch, out_q)
            if chunks >= self._ctx.config.infer_batch:
                return batch, False
            try:
                item = in_q.get_nowait()
                continue
            except asyncio.QueueEmpty:
                pass
            if not batch:  # nothing to infer yet: wait as long as it takes
                item = await in_q.get()
                deadline = time.monotonic() + LINGER_S
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return batch, False
            try:
                item = await asyncio.wait_for(in_q.get(), remaining)
            except TimeoutError:
                return batch, False

    async def _route(
        self, item: PreparedFile | PathLink, batch: list[PreparedFile], out_q: InferQueue
    ) -> int:
        """Pass through what needs no ML; add the rest to the batch. Returns the chunks added."""
        if isinstance(item, PathLink):
            await out_q.put(item)
            return 0
        missing = len(item.chunks) - len(item.cached)
        if missing == 0:
            if item.decoded:  # decoded only for its thumbnails: its results were all cached
                self._ctx.media_slots.release()
            await out_q.put(AnalyzedFile(item, dict(item.cached)))
            return 0
        batch.append(item)
        return missing

    async def _infer(self, files: list[PreparedFile]) -> list[AnalyzedFile]:
        """Analyse every missing chunk of these files in rounds of at most `infer_batch` chunks, each round
        cached as it ends. A file with a failed chunk still has its other chunks analysed and cached: the
        next run asks for the failed one only."""
        ctx = self._ctx
        pending = [_Pending(f, results=dict(f.cached)) for f in files]
        todo = [(p, c) for p in pending for c in p.prepared.chunks if c.index not in p.results]
        try:
            with ctx.progress.busy("infer", len(todo)):
                for part in _slices(todo, ctx.config.infer_batch):
                    await self._round(part)
        finally:
            for p in pending:
                if p.prepared.decoded:
                    ctx.media_slots.release()
        out: list[AnalyzedFile] = []
        for p in pending:
            if p.error is not None or len(p.results) < len(p.prepared.chunks):
                ctx.progress.fail(p.prepared.entry.path, "infer", p.error or "no result for a chunk")
                continue
            out.append(AnalyzedFile(p.prepared, p.results, partial=bool(p.partial)))
            if p.partial:
                ctx.progress.add("partial")
        return out

    async def _round(self, part: list[tuple[_Pending, ChunkInput]]) -> None:
        """One round: its chunks' keyframes/images, then their audio, then their text vectors; the
        results of every chunk that got all of its answers are cached before this returns."""
        if not part:
            return
        images: list[_ImageJob] = []
        audio: list[tuple[_Pending, int, AudioRequestItem]] = []
        for p, chunk in part:
            middle = len(chunk.frames) // 2
            for n, frame in enumerate(chunk.frames):
                item = ImageRequestItem(str(len(images)), frame.jpeg)
                # One scene description (VLM) per chunk, from its middle keyframe, not one per frame.
                images.append(_ImageJob(p, chunk.index, frame.t_s, item, caption=n == middle))
            p.frames[chunk.index] = []
            if chunk.audio is not None:
                audio.append((p, chunk.index, AudioRequestItem(str(len(audio)), chunk.audio)))
        self._ctx.progress.batch_sizes["infer_last"] = len(images) + len(audio)
        await self._analyze_images(images)
        await self._analyze_audio(audio)
        pending = list({id(p): p for p, _ in part}.values())
        fresh = await self._unify(pending)
        for p in pending:  # this round's raw answers are in p.results now
            p.frames.clear()
            p.audio.clear()
        await self._ctx.cache.set_many(fresh)

    async def _analyze_images(self, requests: list[_ImageJob]) -> None:
        ctx = self._ctx
        tasks = ctx.config.image_tasks
        without_caption = [t for t in tasks if t != CAPTION_TASK] if CAPTION_TASK in tasks else None
        groups = [
            ([r for r in requests if r.caption or without_caption is None], None),
            ([r for r in requests if not r.caption and without_caption is not None], without_caption),
        ]
        for group, group_tasks in groups:
            for part in _slices(group, ctx.config.infer_batch):
                ctx.progress.add("ml_requests")
                results = await ctx.ml.analyze_images(
                    [r.item for r in part],
                    tasks=group_tasks,
                    request_id=ctx.job_id,
                    on_wait=ctx.progress.set_waiting,
                )
                for job, result in zip(part, results, strict=True):
                    error = result.get("error")
                    if result.get("ok"):
                        job.pending.frames[job.index].append((job.t_s, result))
                    elif _only_caption_failed(result):
                        # The VLM failed (slow, bad answer): keep what the local models found, store the
                        # chunk without a caption, and do not cache it, so a later run asks again.
                        job.pending.frames[job.index].append((job.t_s, result))
                        job.pending.partial.add(job.index)
                    else:
                        job.pending.fail(str(error or "the ML service could not analyse this item"))

    async def _analyze_audio(self, requests: list[tuple[_Pending, int, AudioRequestItem]]) -> None:
        ctx = self._ctx
        if not requests:
            return
        if ctx.config.audio_batch is None:
            for p, _, _ in requests:
                p.fail("the ML service has no audio models")
            return
        for part in _slices(requests, ctx.config.audio_batch):
            ctx.progress.add("ml_requests")
            results = await ctx.ml.analyze_audio(
                [r[2] for r in part], request_id=ctx.job_id, on_wait=ctx.progress.set_waiting
            )
            for (p, index, _), result in zip(part, results, strict=True):
                if result.get("ok"):
                    p.audio[index] = result
                else:
                    p.fail(str(result.get("error") or "the ML service could not analyse this audio"))

    async def _unify(self, pending: list[_Pending]) -> dict[str, Any]:
        """One ChunkAnalysis per analysed chunk (text vectors embedded in batches); returns cache entries."""
        ctx = self._ctx
        # (file, chunk, what it shows, what is said, its image vector when an image–text model runs)
        parts: list[tuple[_Pending, int, Visual, Speech, list[float] | None]] = []
        config = ctx.config
        for p in pending:
            chunks = {c.index: c for c in p.prepared.chunks}
            last = max(chunks)
            for index, frames in p.frames.items():
                chunk = chunks[index]
                if len(frames) < len(chunk.frames) or (chunk.audio is not None and index not in p.audio):
                    continue  # one of its items failed (so did its file): the others' chunks go on
                visual = merge_frames(frames, config.face_dim) if frames else Visual()
                said = Speech("", [], [], None)
                if index in p.audio:
                    said = speech(
                        p.audio[index],
                        chunk.audio_start_s,
                        chunk.start_s or 0.0,
                        chunk.end_s or 0.0,
                        index == last,
                        config.voice_dim,
                    )
                given = [r["image_vector"] for _, r in frames if r.get("image_vector") is not None]
                checked = [answers.vector(v, config.image_dim) for v in given]
                bad = next((v for v, c in zip(given, checked, strict=True) if c is None), None)
                if bad is not None:
                    why = answers.describe_vector(bad, config.image_dim)
                    p.fail(f"the ML service returned an invalid image vector: {why}")
                    continue
                image_vector = mean_vector([c for c in checked if c is not None])
                parts.append((p, index, visual, said, image_vector))
        texts = [compose_text(v, s.transcript) for _, _, v, s, _ in parts]
        vectors: list[list[float] | None] = []
        for part in _slices(texts, ctx.config.text_batch):
            ctx.progress.add("ml_requests")
            vectors.extend(
                await ctx.ml.embed_text(part, request_id=ctx.job_id, on_wait=ctx.progress.set_waiting)
            )
        fresh: dict[str, Any] = {}
        for (p, index, visual, said, image_vector), text, vector in zip(parts, texts, vectors, strict=True):
            if vector is None:
                p.fail("the ML service could not embed this chunk's text")
                continue
            if (checked_text := answers.vector(vector, config.text_dim)) is None:
                why = answers.describe_vector(vector, config.text_dim)
                p.fail(f"the ML service returned an invalid text vector: {why}")
                continue
            vector = checked_text
            analysis = ChunkAnalysis(
                visual.ocr_text,
                visual.tags,
                visual.caption,
                visual.faces,
                text,
                vector,
                image_vector,
                said.transcript,
                said.words,
                said.turns,
                said.language,
                visual.scene,
            )
            p.results[index] = analysis
            if index in p.partial:
                continue
            fresh[result_key(p.prepared.content_hash, index, ctx.config.models_signature)] = (
                analysis.to_dict()
            )
            fresh[media_key(p.prepared.content_hash)] = media_dict(p.prepared)
        ctx.progress.add("inferred", len(parts))
        return fresh


@dataclass(slots=True)
class _ImageJob:
    pending: _Pending
    index: int  # chunk
    t_s: float | None
    item: ImageRequestItem
    caption: bool  # this frame asks for the scene description when a VLM runs


_T = TypeVar("_T")


def _slices(items: list[_T], size: int) -> list[list[_T]]:
    return [items[i : i + size] for i in range(0, len(items), max(1, size))]


def media_dict(prepared: PreparedFile) -> dict[str, Any]:
    """What the media key caches: enough to rebuild the PreparedFile of a fully cached file."""
    m = prepared.media
    return {
        "media_type": m.media_type,
        "mime": m.mime,
        "width": m.width,
        "height": m.height,
        "exif": m.exif,
        "duration_s": m.duration_s,
        "av": m.av,
        "chunks": [[c.start_s, c.end_s] for c in prepared.chunks],
    }
