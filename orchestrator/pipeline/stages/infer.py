"""Stage 3: batched calls to the ML service, sized from its /capabilities (or ML_INFERENCE_BATCH_SIZE).

Each worker assembles a batch of chunks from the queue: it takes what is there, and when the batch is
not full waits at most LINGER_S for more, so a trickle is not held back and a flood fills batches.
Each chunk's answers are read from the result cache per task first; the ML service is asked only for
the tasks not cached (a new OCR model: OCR only), and a text only when its vector is not cached. An
item the ML service could not analyse fails that file only. The ML service being gone for good raises,
which fails the job.

A batch is analysed in rounds of at most `infer_batch` chunks, and each round's results are cached as it
ends (per chunk, also the good chunks of a file that fails): a failure or crash late in a long video keeps
the ML work done before it, and the next run asks only for the chunks not cached yet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from orchestrator import answers
from orchestrator.cache import media_key, task_key, text_key
from orchestrator.clients.ml import AudioRequestItem, ImageRequestItem
from orchestrator.logs import get_logger
from orchestrator.manifest import model_key
from orchestrator.pipeline import task_results
from orchestrator.pipeline.chunk_answers import CAPTION_TASK, ChunkAnswers
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.file_language import Heard, file_language, prefer_second, to_transcribe_again
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
    plan_kind,
)
from orchestrator.pipeline.speaker_context import speaker_context
from orchestrator.pipeline.unify import Speech, Visual, compose_text, mean_vector, merge_frames, speech

log = get_logger(__name__)
SPEAKERS_TASK = "speakers"  # the audio task whose requests carry the speaker context
ASR_TASK = "asr"

# How long a partly filled batch waits for more work. A few ms of queue latency against a model
# call of hundreds of ms: the wait costs nothing measurable and fills batches when prepare is close behind.
LINGER_S = 0.05


def _only_caption_failed(result: dict[str, Any]) -> bool:
    """An analyze/images item answered except for its caption: its only failed task (``task_errors``,
    docs/ml-api.md) is the VLM's. An item that failed as a whole has no task errors."""
    failed = result.get("task_errors")
    return isinstance(failed, dict) and set(failed) == {CAPTION_TASK}


@dataclass(slots=True)
class _Pending:
    prepared: PreparedFile
    results: dict[int, ChunkAnalysis] = field(default_factory=dict)
    chunks: dict[int, ChunkAnswers] = field(default_factory=dict)  # this round's
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
        """Pass duplicates through; add files to the batch (their cached answers are read per round).
        Returns the chunks added."""
        if isinstance(item, PathLink):
            await out_q.put(item)
            return 0
        batch.append(item)
        return len(item.chunks)

    async def _infer(self, files: list[PreparedFile]) -> list[AnalyzedFile]:
        """Analyse every missing chunk of these files in rounds of at most `infer_batch` chunks, each round
        cached as it ends. A file with a failed chunk still has its other chunks analysed and cached: the
        next run asks for the failed one only."""
        ctx = self._ctx
        pending = [_Pending(f) for f in files]
        todo = [(p, c) for p in pending for c in p.prepared.chunks]
        try:
            with ctx.progress.busy("infer", len(todo)):
                for part in _rounds(pending, ctx.config.infer_batch):
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
        """One round: the chunks' cached answers per task, then the ML service for the tasks not cached
        (keyframes/images, then audio), then their text vectors (cached per text); every answer is
        cached before this returns."""
        if not part:
            return
        config = self._ctx.config
        for p, chunk in part:
            plan = config.plans.get(plan_kind(p.prepared.media.media_type), "")
            p.chunks[chunk.index] = ChunkAnswers(
                chunk,
                plan,
                image_tasks=config.image_tasks if chunk.has_frames else (),
                audio_tasks=config.audio_tasks if chunk.has_audio else (),
            )
        await self._read_cached(part)
        images: list[_ImageJob] = []
        audio: list[_AudioJob] = []
        for p, chunk in part:
            self._plan_requests(p, p.chunks[chunk.index], images, audio)
        self._ctx.progress.batch_sizes["infer_last"] = len(images) + len(audio)
        await self._analyze_images(images)
        await self._analyze_audio(audio)
        pending = list({id(p): p for p, _ in part}.values())
        fresh = await self._unify(pending)
        for p in pending:  # this round's answers are in p.results (and the cache) now
            p.chunks.clear()
        await self._ctx.cache.set_many(fresh)

    def _task_key(self, p: _Pending, c: ChunkAnswers, task: str) -> str:
        model = self._ctx.config.task_models.get(model_key(task), "none")
        return task_key(p.prepared.content_hash, c.plan, c.chunk.index, task, model)

    async def _read_cached(self, part: list[tuple[_Pending, ChunkInput]]) -> None:
        """Each chunk's cached answers per task (one cache hop per round); the tasks a re-analysis asks
        again (`refresh_tasks`) are not read."""
        refresh = self._ctx.config.refresh_tasks
        keys: list[str] = []
        for p, chunk in part:
            c = p.chunks[chunk.index]
            keys.extend(self._task_key(p, c, t) for t in (*c.image_tasks, *c.audio_tasks) if t not in refresh)
        hits = await self._ctx.cache.get_many(keys)
        for p, chunk in part:
            c = p.chunks[chunk.index]
            tasks = (*c.image_tasks, *c.audio_tasks)
            c.take_cached({t: hits[k] for t in tasks if (k := self._task_key(p, c, t)) in hits})
        self._ctx.progress.add("cache_hits", sum(1 for p, ch in part if p.chunks[ch.index].cached))

    def _plan_requests(
        self, p: _Pending, c: ChunkAnswers, images: list[_ImageJob], audio: list[_AudioJob]
    ) -> None:
        """The requests for what this chunk's cache did not have."""
        missing = c.missing_image_tasks()
        if missing:
            if not c.chunk.frames:
                p.fail("results missing from the cache and the file was not decoded; run the job again")
                return
            middle = len(c.chunk.frames) // 2
            for n, frame in enumerate(c.chunk.frames):
                # One scene description (VLM) per chunk, from its middle keyframe, not one per frame.
                needed = tuple(
                    t for t in missing if t not in c.frames[n] and (t != CAPTION_TASK or n == middle)
                )
                if needed:
                    item = ImageRequestItem(str(len(images)), frame.jpeg)
                    images.append(_ImageJob(p, c, n, item, needed))
        missing_audio = c.missing_audio_tasks()
        if missing_audio:
            if c.chunk.audio is None:
                p.fail("results missing from the cache and the file was not decoded; run the job again")
                return
            before, after = b"", b""
            if SPEAKERS_TASK in missing_audio:
                chunks = p.prepared.chunks
                before, after = speaker_context(chunks, c.chunk, self._ctx.config.speaker_context_s)
            request = AudioRequestItem(str(len(audio)), c.chunk.audio, before, after)
            audio.append(_AudioJob(p, c, request, missing_audio))

    async def _analyze_images(self, requests: list[_ImageJob]) -> None:
        ctx = self._ctx
        for tasks, part in _by_tasks(requests, ctx.config.infer_batch):
            ctx.progress.ml_call(tasks)
            results = await ctx.ml.analyze_images(
                [r.item for r in part],
                tasks=list(tasks),
                request_id=ctx.job_id,
                on_wait=ctx.progress.set_waiting,
            )
            for job, result in zip(part, results, strict=True):
                if not (result.get("ok") or _only_caption_failed(result)):
                    job.pending.fail(str(result.get("error") or "the ML service could not analyse this item"))
                    continue
                frame = job.chunk.frames[job.frame]
                for task in tasks:
                    if task == CAPTION_TASK and not result.get("ok"):
                        # The VLM failed (slow, bad answer): keep what the local models found, store the
                        # chunk without a caption, and do not cache it, so a later run asks again.
                        job.pending.partial.add(job.chunk.chunk.index)
                        frame[task] = {}
                        continue
                    frame[task] = task_results.split(result, task)
                    job.chunk.fresh.add(task)

    async def _analyze_audio(self, requests: list[_AudioJob]) -> None:
        ctx = self._ctx
        if not requests:
            return
        if ctx.config.audio_batch is None:
            for r in requests:
                r.pending.fail("the ML service has no audio models")
            return
        for tasks, part in _by_tasks(requests, ctx.config.audio_batch):
            ctx.progress.ml_call(tasks)
            results = await ctx.ml.analyze_audio(
                [r.item for r in part],
                tasks=list(tasks),
                request_id=ctx.job_id,
                on_wait=ctx.progress.set_waiting,
            )
            for job, result in zip(part, results, strict=True):
                if not result.get("ok"):
                    job.pending.fail(
                        str(result.get("error") or "the ML service could not analyse this audio")
                    )
                    continue
                for task in tasks:
                    job.chunk.audio[task] = task_results.split(result, task)
                    job.chunk.fresh.add(task)
        await self._settle_languages(requests)

    async def _settle_languages(self, requests: list[_AudioJob]) -> None:
        """Each file's chunks of this round whose unsure language is not the file's are transcribed again in
        the file's language (file_language.py); the answer whose words are surer is the one cached."""
        ctx = self._ctx
        # Per file of this round: its language, and the chunks to transcribe again in it.
        settled: dict[int, tuple[str | None, set[int]]] = {}
        for p in {id(r.pending): r.pending for r in requests}.values():
            heard = [Heard.of(i, c.audio[ASR_TASK]) for i, c in p.chunks.items() if ASR_TASK in c.audio]
            language = file_language(heard)
            settled[id(p)] = (language, set(to_transcribe_again(heard, language)))
        again: list[_AudioJob] = []
        for r in requests:
            language, redo = settled[id(r.pending)]
            if r.chunk.chunk.index in redo and ASR_TASK in r.chunk.fresh:
                item = dataclasses.replace(r.item, context_before=b"", context_after=b"", language=language)
                again.append(_AudioJob(r.pending, r.chunk, item, (ASR_TASK,)))
        if not again or ctx.config.audio_batch is None:
            return
        changed = 0
        for _, part in _by_tasks(again, ctx.config.audio_batch):
            ctx.progress.ml_call((ASR_TASK,))
            results = await ctx.ml.analyze_audio(
                [r.item for r in part],
                tasks=[ASR_TASK],
                request_id=ctx.job_id,
                on_wait=ctx.progress.set_waiting,
            )
            for job, result in zip(part, results, strict=True):
                answer = task_results.split(result, ASR_TASK)
                if result.get("ok") and prefer_second(job.chunk.audio[ASR_TASK], answer):
                    job.chunk.audio[ASR_TASK] = answer
                    changed += 1
        log.info("languages_settled", job_id=ctx.job_id, asked_again=len(again), changed=changed)

    async def _unify(self, pending: list[_Pending]) -> dict[str, Any]:
        """One ChunkAnalysis per chunk with all its answers (text vectors from the cache, else embedded in
        batches); returns the cache entries of what was answered now."""
        ctx = self._ctx
        config = ctx.config
        fresh: dict[str, Any] = {}
        # (file, chunk, what it shows, what is said, its image vector when an image–text model runs)
        parts: list[tuple[_Pending, int, Visual, Speech, list[float] | None]] = []
        for p in pending:
            last = max(c.index for c in p.prepared.chunks)
            analysed = any(c.complete for c in p.chunks.values())
            if analysed and (p.prepared.decoded or p.prepared.media.media_type == "image"):
                plan = next(iter(p.chunks.values())).plan  # what decoding found: once per file
                fresh[media_key(p.prepared.content_hash, plan)] = media_dict(p.prepared)
            for index, c in p.chunks.items():
                entries = c.fresh_entries(caption_partial=index in p.partial)
                fresh.update({self._task_key(p, c, task): entry for task, entry in entries.items()})
                if not c.complete:
                    continue  # one of its items failed (so did its file): the others' chunks go on
                frames = c.joined_frames()
                span = (c.chunk.start_s or 0.0, c.chunk.end_s or 0.0)
                visual = (
                    merge_frames(frames, config.face_dim, span, c.chunk.cuts)
                    if frames and c.image_tasks
                    else Visual()
                )
                said = Speech("", [], [], None)
                if c.audio_tasks:
                    said = speech(
                        c.joined_audio(),
                        c.chunk.audio_start_s,
                        c.chunk.start_s or 0.0,
                        c.chunk.end_s or 0.0,
                        index == last,
                        config.voice_dim,
                    )
                given = [r["image_vector"] for _, r in frames if r.get("image_vector") is not None]
                checked = [answers.vector(v, config.image_dim) for v in given]
                bad = next((v for v, ok in zip(given, checked, strict=True) if ok is None), None)
                if bad is not None:
                    why = answers.describe_vector(bad, config.image_dim)
                    p.fail(f"the ML service returned an invalid image vector: {why}")
                    continue
                image_vector = mean_vector([v for v in checked if v is not None])
                parts.append((p, index, visual, said, image_vector))
        texts = [compose_text(v, s.transcript, _passage(p.prepared, i)) for p, i, v, s, _ in parts]
        vectors = await self._text_vectors(texts, fresh)
        for (p, index, visual, said, image_vector), text, vector in zip(parts, texts, vectors, strict=True):
            if vector is None:
                p.fail("the ML service could not embed this chunk's text")
                continue
            if (checked_text := answers.vector(vector, config.text_dim)) is None:
                why = answers.describe_vector(vector, config.text_dim)
                p.fail(f"the ML service returned an invalid text vector: {why}")
                continue
            p.results[index] = ChunkAnalysis(
                visual.ocr_text,
                visual.tags,
                visual.caption,
                visual.faces,
                text,
                checked_text,
                image_vector,
                said.transcript,
                said.words,
                said.turns,
                said.language,
                visual.scene,
            )
            if index not in p.partial:
                fresh[text_key(config.task_models.get("text", "none"), text)] = checked_text
        ctx.progress.add("inferred", sum(1 for p, index, *_ in parts if not p.chunks[index].cached))
        return fresh

    async def _text_vectors(self, texts: list[str], fresh: dict[str, Any]) -> list[list[float] | None]:
        """The text vector of each text: from the cache (or this round), else embedded in batches."""
        ctx = self._ctx
        model = ctx.config.task_models.get("text", "none")
        keys = [text_key(model, t) for t in texts]
        known = await ctx.cache.get_many([k for k in dict.fromkeys(keys) if k not in fresh])
        known.update({k: fresh[k] for k in keys if k in fresh})
        wanted = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in known))
        embedded: dict[str, list[float] | None] = {}
        for part in _slices(wanted, ctx.config.text_batch):
            ctx.progress.ml_call(("text",))
            answers_ = await ctx.ml.embed_text(part, request_id=ctx.job_id, on_wait=ctx.progress.set_waiting)
            embedded.update(zip(part, answers_, strict=True))
        return [known[k] if k in known else embedded.get(t) for t, k in zip(texts, keys, strict=True)]


@dataclass(slots=True)
class _ImageJob:
    pending: _Pending
    chunk: ChunkAnswers
    frame: int  # the keyframe's position in the chunk
    item: ImageRequestItem
    tasks: tuple[str, ...]  # what it is asked for (the scene description only on a chunk's middle frame)


@dataclass(slots=True)
class _AudioJob:
    pending: _Pending
    chunk: ChunkAnswers
    item: AudioRequestItem
    tasks: tuple[str, ...]


_T = TypeVar("_T")


def _rounds(pending: list[_Pending], size: int) -> list[list[tuple[_Pending, ChunkInput]]]:
    """Rounds of at most ``size`` chunks that never split a file of ``size`` chunks or fewer, and cut a longer
    one at fixed offsets from its start: which of a file's chunks share a round (and so settle its language
    together, file_language.py) does not depend on which other files arrived with it."""
    rounds: list[list[tuple[_Pending, ChunkInput]]] = []
    current: list[tuple[_Pending, ChunkInput]] = []
    for p in pending:
        chunks = [(p, c) for c in p.prepared.chunks]
        if len(current) + len(chunks) > size and current:
            rounds.append(current)
            current = []
        for piece in _slices(chunks, size):
            if len(current) + len(piece) > size:
                rounds.append(current)
                current = []
            current.extend(piece)
    if current:
        rounds.append(current)
    return rounds


def _slices(items: list[_T], size: int) -> list[list[_T]]:
    return [items[i : i + size] for i in range(0, len(items), max(1, size))]


_Job = TypeVar("_Job", "_ImageJob", "_AudioJob")


def _by_tasks(requests: list[_Job], size: int) -> list[tuple[tuple[str, ...], list[_Job]]]:
    """The requests grouped by what they ask (one ML request asks the same tasks of all its items), each
    group cut to the endpoint's batch size."""
    groups: dict[tuple[str, ...], list[_Job]] = {}
    for r in requests:
        groups.setdefault(r.tasks, []).append(r)
    return [(tasks, part) for tasks, group in groups.items() for part in _slices(group, size)]


def _passage(prepared: PreparedFile, index: int) -> str:
    """A document passage's heading and text (what it says), "" for other media."""
    if prepared.media.media_type != "document":
        return ""
    chunk = prepared.chunks[index]
    return f"{chunk.heading}\n{chunk.text}".strip() if chunk.heading else chunk.text


def media_dict(prepared: PreparedFile) -> dict[str, Any]:
    """What the media key caches: enough to rebuild the PreparedFile of a fully cached file."""
    m = prepared.media
    if m.media_type == "document":
        return {
            "media_type": m.media_type,
            "mime": m.mime,
            "width": m.width,
            "height": m.height,
            "document": m.document,
            "chunks": [[None, None, c.has_frames, False, [], 0.0] for c in prepared.chunks],
            # Each passage's text, heading, section and page (the cached file is not read again).
            "passages": [[c.text, c.heading, c.section, c.page] for c in prepared.chunks],
        }
    return {
        "media_type": m.media_type,
        "mime": m.mime,
        "width": m.width,
        "height": m.height,
        "exif": m.exif,
        "duration_s": m.duration_s,
        "av": m.av,
        # Each chunk's span, whether it has keyframes and audio (which tasks it needs), its shot changes, and
        # where its audio starts (the ASR's and the speaker model's times are relative to it).
        "chunks": [
            [c.start_s, c.end_s, c.has_frames, c.has_audio, list(c.cuts), c.audio_start_s]
            for c in prepared.chunks
        ],
    }
