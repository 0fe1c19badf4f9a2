"""Stage 3: batched calls to the ML service, sized from its /capabilities (or ML_INFERENCE_BATCH_SIZE).

Each worker assembles a batch of chunks from the queue: it takes what is there, and when the batch is
not full waits at most LINGER_S for more, so a trickle is not held back and a flood fills batches.
Files whose every chunk was cached pass straight through; an item the ML service could not analyse
fails that file only. The ML service being gone for good raises, which fails the job.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from orchestrator.cache import media_key, result_key
from orchestrator.clients.ml import ImageRequestItem
from orchestrator.pipeline.context import PipelineContext
from orchestrator.pipeline.messages import SENTINEL, AnalyzedFile, ChunkAnalysis, PathLink, PreparedFile

# How long a partly filled batch waits for more work. A few ms of queue latency against a model
# call of hundreds of ms: the wait costs nothing measurable and fills batches when prepare is close behind.
LINGER_S = 0.05
_MAX_TAGS = 8


@dataclass(slots=True)
class _Pending:
    prepared: PreparedFile
    missing: int
    results: dict[int, ChunkAnalysis] = field(default_factory=dict)
    error: str | None = None


def compose_text(caption: str | None, tags: list[str], ocr_text: str) -> str:
    """The text a chunk's `text` vector is computed from: what it shows, then what is written in it."""
    parts = []
    if caption:
        parts.append(caption)
    if tags:
        parts.append("Shows: " + ", ".join(tags) + ".")
    if ocr_text:
        parts.append("Text: " + ocr_text)
    return " ".join(parts)


def analysis_from_result(result: dict[str, Any]) -> tuple[str, list[str], str | None, list[dict[str, Any]]]:
    """OCR text, de-duplicated tag labels (best first), caption and faces of one analyze/images result."""
    ocr = (result.get("ocr") or {}).get("text") or ""
    labels: list[str] = []
    for tag in sorted(result.get("tags") or [], key=lambda t: -float(t.get("score", 0.0))):
        label = str(tag.get("label", "")).strip()
        if label and label not in labels:
            labels.append(label)
    faces = [
        {"box": f.get("box"), "score": f.get("score"), "embedding": f.get("embedding")}
        for f in (result.get("faces") or [])
    ]
    return ocr.strip(), labels[:_MAX_TAGS], result.get("caption"), faces


class InferStage:
    def __init__(self, ctx: PipelineContext) -> None:
        self._ctx = ctx

    async def worker(self, in_q: asyncio.Queue[object], out_q: asyncio.Queue[object]) -> None:
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
        self, item: object, in_q: asyncio.Queue[object], out_q: asyncio.Queue[object]
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

    async def _route(self, item: object, batch: list[PreparedFile], out_q: asyncio.Queue[object]) -> int:
        """Pass through what needs no ML; add the rest to the batch. Returns the chunks added."""
        if isinstance(item, PathLink):
            await out_q.put(item)
            return 0
        assert isinstance(item, PreparedFile)
        missing = len(item.chunks) - len(item.cached)
        if missing == 0:
            await out_q.put(AnalyzedFile(item, dict(item.cached)))
            return 0
        batch.append(item)
        return missing

    async def _infer(self, files: list[PreparedFile]) -> list[AnalyzedFile]:
        ctx = self._ctx
        pending = [_Pending(f, missing=len(f.chunks) - len(f.cached), results=dict(f.cached)) for f in files]
        requests: list[tuple[_Pending, int, ImageRequestItem]] = []
        for p in pending:
            for chunk in p.prepared.chunks:
                if chunk.index not in p.results and chunk.image is not None:
                    requests.append((p, chunk.index, ImageRequestItem(str(len(requests)), chunk.image)))
        with ctx.progress.busy("infer", len(requests)):
            ctx.progress.batch_sizes["infer_last"] = len(requests)
            ctx.progress.add("ml_requests")
            results = await ctx.ml.analyze_images(
                [r[2] for r in requests], request_id=ctx.job_id, on_wait=ctx.progress.set_waiting
            )
            ok: list[tuple[_Pending, int, tuple[str, list[str], str | None, list[dict[str, Any]]]]] = []
            for (p, index, _), result in zip(requests, results, strict=True):
                if result.get("ok"):
                    ok.append((p, index, analysis_from_result(result)))
                elif p.error is None:
                    p.error = str(result.get("error") or "the ML service could not analyse this item")
            texts = [compose_text(a[2], a[1], a[0]) for _, _, a in ok]
            vectors: list[list[float]] = []
            if texts:
                ctx.progress.add("ml_requests")
                vectors = await ctx.ml.embed_text(
                    texts, request_id=ctx.job_id, on_wait=ctx.progress.set_waiting
                )
            fresh: dict[str, Any] = {}
            for (p, index, (ocr, tags, caption, faces)), text, vector in zip(ok, texts, vectors, strict=True):
                analysis = ChunkAnalysis(ocr, tags, caption, faces, text, vector, None)
                p.results[index] = analysis
                fresh[result_key(p.prepared.content_hash, index, ctx.config.models_signature)] = (
                    analysis.to_dict()
                )
                fresh[media_key(p.prepared.content_hash)] = _media_dict(p.prepared)
            ctx.progress.add("inferred", len(ok))
        await ctx.cache.set_many(fresh)
        out: list[AnalyzedFile] = []
        for p in pending:
            if p.error is not None or len(p.results) < len(p.prepared.chunks):
                ctx.progress.fail(p.prepared.entry.path, "infer", p.error or "no result for a chunk")
                continue
            out.append(AnalyzedFile(p.prepared, p.results))
        return out


def _media_dict(prepared: PreparedFile) -> dict[str, Any]:
    m = prepared.media
    return {"media_type": m.media_type, "mime": m.mime, "width": m.width, "height": m.height, "exif": m.exif}
