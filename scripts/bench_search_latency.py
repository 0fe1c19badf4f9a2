"""Search latency of the embedded engine (Qdrant Edge) at given collection sizes, as the search API sees it.

For each size, in a temporary directory: a collection made through `EdgeVectorStore` with the spec a job
creates (`negotiate.collection_spec`: dense `text` 384-d and `image` 512-d, cosine; sparse `sparse` with IDF;
the keyword and float payload indexes of `pipeline/records.py`), filled with chunk-shaped points in durable
batches of the pipeline's size (`DEFAULT_UPSERT_BATCH`), then `optimize()` when the job would run it (at
`ANN_INDEX_THRESHOLD` points and more; `optimize="always"|"never"` overrides). Then held-out queries go
through `store.search` (the async API, one thread hop, as the server calls it), every kind in turn per query:

- `hybrid`: what `orchestrator/search.py` sends for a page of 10: the `text` and `image` dense branches and
  the `sparse` branch fused by RRF, limit 20 (its RERANK_DEPTH), prefetch_limit 50, the hits' `text` and
  `image` vectors returned (its relevance floor reads them) with their whole payloads;
- `dense`: the `text` branch alone (the baseline: the fusion's cost is hybrid minus dense);
- `image`, `sparse`: the other branches alone, without filter (where the fusion's time goes);
every kind returns the same vectors and payloads, so the differences are the branches and the fusion.

hybrid and dense each without filter and with a `media_type`, a path-prefix (`dirs`) and a date-range
(`taken_at_ts`) filter. Reported per size: p50 / p95 / mean ms per query kind, build seconds (upsert,
optimize), the collection's size on disk, the process RSS before, after the build and after the queries, and
the dense branch's recall@10 against exact search (a check that the vectors behave like embeddings).

The data is synthetic but shaped for an ANN index like real embeddings: a few hundred topics of uneven
size in a 32-d latent space, each point its topic's centre plus noise, projected to the text and image
spaces (correlated, as a chunk's picture and words are) with a little isotropic noise, normalised. Uniform
random vectors would make HNSW both slow and wrong (docs/performance-limits.md). Texts are 40 words of a
Zipf-distributed vocabulary, half of them from the point's topic; their terms are those of
`orchestrator.keywords` (the job's analysis), weighted by BM25's term-frequency part, plus the file name's;
a query is 4 words, 3 of its topic.

    .venv/bin/python -m scripts.bench_search_latency --sizes 10000,100000 --queries 300

`measure(...)` is the importable entry: top-level `p95_ms_<size>` (e.g. `p95_ms_10k`) is the hybrid query's
p95 without filter; everything else is under `sizes[<label>]`. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.clients.ml import Capabilities
from orchestrator.clients.vectors import PointRecord, SearchFilter, SearchRequest, SparseVector
from orchestrator.clients.vectors_edge import EdgeIndexParams, EdgeVectorStore
from orchestrator.config import Settings
from orchestrator.ids import PIPELINE_VERSION, point_id
from orchestrator.keywords import AVG_TERMS, K1, B, sparse_vector
from orchestrator.logs import configure_logging
from orchestrator.pipeline.negotiate import DEFAULT_UPSERT_BATCH, collection_spec
from orchestrator.points import path_fields

Matrix = npt.NDArray[np.float32]
Optimize = Literal["auto", "always", "never"]
Progress = Callable[[str], None]

TEXT_DIM, IMAGE_DIM = 384, 512  # MiniLM-L6 and CLIP ViT-B/32, the default models
COLLECTION = "media"
# What orchestrator/search.py asks for a page of 10: max(RERANK_DEPTH, offset + limit + 1) hits, and
# max(50, that) candidates per branch.
LIMIT, PREFETCH_LIMIT = 20, 50
TOP_K = 10  # recall@10 of the dense branch

# The data set: a media library under /data/media/<year>/<event>/, 2015-2024.
YEARS = range(2015, 2025)
EVENTS_PER_YEAR = 30
MEDIA_SHARE = {"image": 0.80, "video": 0.15, "audio": 0.05}  # of files; video/audio have several chunks
CHUNK_S = 15.0
PERSONS = 200
DATE_RANGE = (datetime(2021, 3, 1, tzinfo=UTC).timestamp(), datetime(2021, 9, 1, tzinfo=UTC).timestamp())
FILTERS: dict[str, SearchFilter | None] = {
    "none": None,
    "media_type": SearchFilter(match={"media_type": "video"}),
    "path_prefix": SearchFilter(match={"dirs": "/data/media/2019"}),
    "date_range": SearchFilter(ranges={"taken_at_ts": DATE_RANGE}),
}
BranchKind = Literal["hybrid", "dense", "image", "sparse"]
# (query kind, filter): hybrid and dense under every filter, the other branches alone without one.
CASES: tuple[tuple[BranchKind, str], ...] = (
    *(("hybrid", f) for f in FILTERS),
    *(("dense", f) for f in FILTERS),
    ("image", "none"),
    ("sparse", "none"),
)


# --- the synthetic library ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CorpusShape:
    topics: int = 300
    latent: int = 32  # intrinsic dimension of the embeddings
    spread: float = 0.55  # a point's distance from its topic centre, per latent dimension
    isotropic: float = 0.25  # noise added in the full space, relative to the signal's norm
    vocabulary: int = 30_000
    topic_words: int = 40  # words typical of a topic
    topic_share: float = 0.5  # of a text's words
    text_words: int = 40
    seed: int = 0


@dataclass(frozen=True, slots=True)
class MediaFile:
    media_type: str
    chunks: int
    topic: int
    path: str
    content_hash: str
    taken_at_ts: float | None
    people: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Query:
    text: Matrix  # 1-d
    image: Matrix
    sparse: SparseVector


class Library:
    """Deterministic files, chunk points and held-out queries (same seed, same library)."""

    def __init__(self, shape: CorpusShape) -> None:
        self.shape = shape
        rng = np.random.default_rng([shape.seed, 0])
        self._centres = rng.standard_normal((shape.topics, shape.latent)).astype(np.float32)
        popularity = 1.0 / np.arange(1, shape.topics + 1) ** 0.8  # a few large topics, many small ones
        self._topic_p = popularity / popularity.sum()
        self._to_text = (rng.standard_normal((shape.latent, TEXT_DIM)) / math.sqrt(shape.latent)).astype(
            np.float32
        )
        self._to_image = (rng.standard_normal((shape.latent, IMAGE_DIM)) / math.sqrt(shape.latent)).astype(
            np.float32
        )
        self._words = _vocabulary(shape.vocabulary, rng)
        zipf = 1.0 / np.arange(1, shape.vocabulary + 1) ** 1.07
        self._word_p = zipf / zipf.sum()
        # A topic's words come from below the most frequent few hundred (those say little about anything).
        self._topic_vocab = rng.integers(300, shape.vocabulary, size=(shape.topics, shape.topic_words))
        self._term_cache: dict[int, tuple[int, ...]] = {}

    # files and points

    def files(self, points: int) -> list[MediaFile]:
        """Files until `points` chunks: images one chunk, video and audio 1-12 chunks of 15 s."""
        rng = np.random.default_rng([self.shape.seed, 1])
        kinds, shares = list(MEDIA_SHARE), list(MEDIA_SHARE.values())
        files: list[MediaFile] = []
        total = 0
        for n in itertools.count():
            if total >= points:
                break
            media_type = kinds[int(rng.choice(len(kinds), p=shares))]
            chunks = min(points - total, 1 if media_type == "image" else int(rng.integers(1, 13)))
            year = int(rng.choice(YEARS))
            event = int(rng.integers(EVENTS_PER_YEAR))
            extension = {"image": "jpg", "video": "mp4", "audio": "m4a"}[media_type]
            has_date = rng.random() < {"image": 0.9, "video": 0.6, "audio": 0.0}[media_type]
            when = datetime(year, 1, 1, tzinfo=UTC).timestamp() + float(rng.random()) * 365 * 86_400
            people = tuple(
                f"person-{p:04d}" for p in rng.choice(PERSONS, int(rng.integers(0, 4)), replace=False)
            )
            files.append(
                MediaFile(
                    media_type=media_type,
                    chunks=chunks,
                    topic=int(rng.choice(self.shape.topics, p=self._topic_p)),
                    path=f"/data/media/{year}/event-{event:02d}/{media_type}-{n:07d}.{extension}",
                    content_hash=f"{n:016x}{int(rng.integers(2**62)):048x}",
                    taken_at_ts=when if has_date else None,
                    people=people if rng.random() < 0.3 else (),
                )
            )
            total += chunks
        return files

    def points(self, chunks: Sequence[tuple[MediaFile, int]], batch: int) -> tuple[list[PointRecord], Matrix]:
        """The points of these (file, chunk index) pairs and their text vectors (for exact search); `batch`
        seeds their randomness."""
        rng = np.random.default_rng([self.shape.seed, 2, batch])
        topics = np.array([f.topic for f, _ in chunks])
        text, image = self._vectors(topics, rng)
        texts = self._texts(topics, rng)
        records = []
        for row, (media, index) in enumerate(chunks):
            words = [self._words[w] for w in texts[row]]
            records.append(
                PointRecord(
                    id=point_id(media.content_hash, index),
                    dense={"text": text[row].tolist()}
                    | ({} if media.media_type == "audio" else {"image": image[row].tolist()}),
                    # Keywords: the chunk's text and its file's name, as records.py indexes them.
                    sparse={"sparse": self._document_vector(texts[row], media.path)},
                    payload=_payload(media, index, words),
                )
            )
        return records, text

    def queries(self, count: int) -> list[Query]:
        """Held-out points of the same topics: their vectors, and 3 words of their topic and a common
        one as the query's keywords (each term weighing 1, as keywords.query_vector weighs them)."""
        rng = np.random.default_rng([self.shape.seed, 3])
        topics = rng.choice(self.shape.topics, size=count, p=self._topic_p)
        text, image = self._vectors(topics, rng)
        found = []
        for row, topic in enumerate(topics):
            own = rng.choice(self._topic_vocab[topic], size=3, replace=False)
            common = rng.choice(self.shape.vocabulary, p=self._word_p)
            terms = sorted({t for w in (*own, common) for t in self._terms(int(w))})
            found.append(Query(text[row], image[row], SparseVector(terms, [1.0] * len(terms))))
        return found

    def _vectors(self, topics: npt.NDArray[np.int64], rng: np.random.Generator) -> tuple[Matrix, Matrix]:
        shape = self.shape
        latent = self._centres[topics] + shape.spread * rng.standard_normal((len(topics), shape.latent))
        # The picture and the words of a chunk are about the same thing, not the same point.
        seen = latent + shape.spread * rng.standard_normal(latent.shape)
        return (
            _embed(latent.astype(np.float32) @ self._to_text, shape.isotropic, rng),
            _embed(seen.astype(np.float32) @ self._to_image, shape.isotropic, rng),
        )

    def _texts(self, topics: npt.NDArray[np.int64], rng: np.random.Generator) -> list[list[int]]:
        """Each chunk's words (vocabulary indices): topic words and common ones."""
        shape = self.shape
        size = (len(topics), shape.text_words)
        own = rng.random(size) < shape.topic_share
        topical = self._topic_vocab[topics[:, None], rng.integers(shape.topic_words, size=size)]
        common = rng.choice(shape.vocabulary, size=size, p=self._word_p)
        rows: list[list[int]] = np.where(own, topical, common).tolist()
        return rows

    def _terms(self, word: int) -> tuple[int, ...]:
        """A vocabulary word's term ids, by the project's own analysis (keywords.py), computed once."""
        terms = self._term_cache.get(word)
        if terms is None:
            terms = self._term_cache[word] = tuple(sparse_vector(self._words[word]).indices)
        return terms

    def _document_vector(self, words: list[int], path: str) -> SparseVector:
        """BM25 document weights of the words' terms and the file name's (the engine adds IDF).

        The words' terms are `keywords.sparse_vector`'s (cached per word: its Snowball stemming costs
        0.3-1 ms a text, minutes at 100k points); the weights are its BM25 term-frequency part."""
        counts = Counter(t for w in words for t in self._terms(w))
        counts.update(sparse_vector(_name_words(path)).indices)
        length = sum(counts.values())
        norm = K1 * (1 - B + B * length / AVG_TERMS)
        indices = sorted(counts)
        weights = [counts[i] * (K1 + 1) / (counts[i] + norm) for i in indices]
        return SparseVector(indices=indices, values=weights)


def _embed(signal: Matrix, isotropic: float, rng: np.random.Generator) -> Matrix:
    norms = np.linalg.norm(signal, axis=1, keepdims=True)
    noise = rng.standard_normal(signal.shape).astype(np.float32) * (
        isotropic * norms / math.sqrt(signal.shape[1])
    )
    vectors = signal + noise
    normalised: Matrix = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    return normalised


def _vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    """`size` distinct pronounceable words of 2-3 syllables."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    n = len(syllables)
    picked = rng.choice(n**2 + n**3, size=size, replace=False)  # 2-syllable words first, then 3

    def word(i: int) -> str:
        length, k = (2, i) if i < n**2 else (3, i - n**2)
        return "".join(syllables[k // n**p % n] for p in range(length))

    return [word(int(i)) for i in picked]


def _name_words(path: str) -> str:
    """The words of a file's name ("video-0000042.mp4" -> "video 0000042")."""
    return os.path.splitext(os.path.basename(path))[0].replace("-", " ")


def _payload(media: MediaFile, index: int, words: list[str]) -> dict[str, Any]:
    """A chunk record's payload with the fields and sizes `pipeline/records.py` writes."""
    timed = media.media_type != "image"
    start_s = index * CHUNK_S if timed else None
    transcript = " ".join(words[:25]) if timed else ""
    taken_at = (
        datetime.fromtimestamp(media.taken_at_ts, UTC).isoformat() if media.taken_at_ts is not None else None
    )
    return {
        **path_fields([media.path]),
        "media_type": media.media_type,
        "mime": {"image": "image/jpeg", "video": "video/mp4", "audio": "audio/mp4"}[media.media_type],
        "content_hash": media.content_hash,
        "chunk_index": index,
        "chunk_count": media.chunks,
        "chunk_plan": "a1b2c3d4e5f6" if timed else None,
        "start_s": start_s,
        "end_s": None if start_s is None else start_s + CHUNK_S,
        "size": 2_400_000 + 1_000_000 * media.chunks,
        "width": None if media.media_type == "audio" else 1920,
        "height": None if media.media_type == "audio" else 1080,
        "duration_s": media.chunks * CHUNK_S if timed else None,
        "taken_at": taken_at,
        "taken_at_ts": media.taken_at_ts,
        "exif": {"make": "Canon", "model": "EOS 80D", "iso": 200} if media.media_type == "image" else {},
        "av": {"video_codec": "h264", "audio_codec": "aac", "fps": 25.0} if timed else {},
        "ocr_text": " ".join(words[30:34]),
        "tags": words[25:31],
        "caption": None,
        "scene": None,
        "faces_count": len(media.people),
        "faces": [{"box": [120, 80, 260, 240], "score": 0.93, "person": person} for person in media.people],
        "transcript": transcript,
        "words": [[w, start_s + 0.5 * n, start_s + 0.5 * n + 0.4] for n, w in enumerate(words[:25])]
        if start_s is not None
        else [],
        "language": "en" if timed else None,
        "speakers": [],
        "people": list(media.people),
        "text": " ".join(words),
        "text_chars": len(transcript) + len(" ".join(words[30:34])),
        "models": "text=all-MiniLM-L6-v2@bench;image_text=clip@bench",
        "pipeline_version": PIPELINE_VERSION,
        "indexed_at": 1_767_225_600.0,
    }


# --- measuring -----------------------------------------------------------------------------------


def size_label(points: int) -> str:
    """10000 -> "10k", 100000 -> "100k", 500 -> "500"."""
    return f"{points // 1000}k" if points >= 1000 and points % 1000 == 0 else str(points)


def rss_mb() -> float:
    """This process's resident set (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so RSS shows what is live (glibc only)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def disk_mb(root: Path) -> float:
    """Space the files under `root` occupy (allocated blocks, like du: the WAL is preallocated sparse)."""
    blocks = sum(p.stat().st_blocks for p in root.rglob("*") if p.is_file())
    return blocks * 512 / 2**20


def _request(
    kind: BranchKind, query: Query, search_filter: SearchFilter | None, prefetch: int
) -> SearchRequest:
    text, image = query.text.tolist(), query.image.tolist()
    dense: dict[str, list[float]] = {
        "hybrid": {"text": text, "image": image},
        "dense": {"text": text},
        "image": {"image": image},
        "sparse": {},
    }[kind]
    sparse = {"sparse": query.sparse} if kind in ("hybrid", "sparse") else {}
    return SearchRequest(
        dense=dense,
        sparse=sparse,
        limit=LIMIT,
        filter=search_filter,
        prefetch_limit=prefetch,
        with_vectors=("text", "image"),
    )


def _summary(seconds: list[float], hits: list[int]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 3),
        "p95_ms": round(1000 * ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)], 3),
        "mean_ms": round(1000 * statistics.fmean(ordered), 3),
        "hits_mean": round(statistics.fmean(hits), 1),
    }


class _ExactTopK:
    """Each query's exact top-k ids by text vector, among the points one filter lets through, kept as the
    corpus streams past (numpy): the truth the dense branch's recall is measured against."""

    def __init__(self, queries: Matrix, k: int) -> None:
        self._queries = queries
        self._k = k
        self._scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        self._ids: list[list[str]] = [[] for _ in range(len(queries))]

    def add(self, vectors: Matrix, ids: list[str], allowed: npt.NDArray[np.bool_]) -> None:
        if not allowed.any():
            return
        vectors, ids = vectors[allowed], [i for i, keep in zip(ids, allowed, strict=True) if keep]
        scores = np.concatenate([self._scores, self._queries @ vectors.T], axis=1)
        candidates = [[*row, *ids] for row in self._ids]
        keep = np.argsort(-scores, axis=1)[:, : self._k]
        self._scores = np.take_along_axis(scores, keep, axis=1)
        self._ids = [[candidates[q][int(i)] for i in keep[q]] for q in range(len(candidates))]

    def recall(self, found: list[list[str]]) -> float:
        hits = sum(len(set(truth) & set(got[: self._k])) for truth, got in zip(self._ids, found, strict=True))
        return round(hits / max(1, sum(len(truth) for truth in self._ids)), 4)


def _passes(media: MediaFile) -> dict[str, bool]:
    """Which of FILTERS a file's points pass (what the engine's filters select, computed here)."""
    low, high = DATE_RANGE
    return {
        "none": True,
        "media_type": media.media_type == "video",
        "path_prefix": media.path.startswith("/data/media/2019/"),
        "date_range": media.taken_at_ts is not None and low <= media.taken_at_ts <= high,
    }


async def measure_size(
    points: int,
    queries: int,
    work: Path,
    *,
    shape: CorpusShape,
    warmup: int,
    optimize: Optimize,
    index: EdgeIndexParams,
    prefetch_limit: int,
    progress: Progress,
) -> dict[str, Any]:
    """Build one collection of `points` chunks under `work`, then time every query kind on it."""
    library = Library(shape)
    files = library.files(points)
    chunks = [(media, i) for media in files for i in range(media.chunks)]
    held_out = library.queries(warmup + queries)
    timed = np.stack([q.text for q in held_out[warmup:]])
    exact = {name: _ExactTopK(timed, TOP_K) for name in FILTERS}
    spec = collection_spec(
        Capabilities.parse(
            {"models": {"text": {"vector_size": TEXT_DIM}, "image_text": {"vector_size": IMAGE_DIM}}}
        )
    )
    threshold = int(Settings.model_fields["ann_index_threshold"].default)
    _release_freed_memory()
    report: dict[str, Any] = {"points": points, "files": len(files), "rss_before_mb": round(rss_mb(), 1)}
    store = EdgeVectorStore(work, index)
    try:
        await store.ensure_collection(COLLECTION, spec)
        upsert_s = generate_s = 0.0
        records: list[PointRecord] = []
        step = max(1, points // 10)
        for batch, start in enumerate(range(0, len(chunks), DEFAULT_UPSERT_BATCH)):
            part = chunks[start : start + DEFAULT_UPSERT_BATCH]
            began = time.perf_counter()
            records, vectors = library.points(part, batch)
            passes = [_passes(media) for media, _ in part]
            for name, truth in exact.items():
                truth.add(vectors, [r.id for r in records], np.array([p[name] for p in passes]))
            generate_s += time.perf_counter() - began
            began = time.perf_counter()
            await store.upsert(COLLECTION, records)  # durable, as the upsert stage's batches are
            upsert_s += time.perf_counter() - began
            done = start + len(part)
            if done // step != start // step or done == len(chunks):
                progress(f"{size_label(points)}: {done}/{points} points upserted in {upsert_s:.1f} s")
        report["upsert_s"] = round(upsert_s, 2)
        report["upsert_points_per_s"] = round(points / upsert_s)
        report["generate_s"] = round(generate_s, 2)
        optimized = optimize == "always" or (optimize == "auto" and points >= threshold)
        report["optimized"] = optimized
        report["optimize_s"] = 0.0
        if optimized:
            progress(f"{size_label(points)}: optimize() (builds the HNSW indexes)")
            began = time.perf_counter()
            await store.optimize(COLLECTION)
            report["optimize_s"] = round(time.perf_counter() - began, 2)
        report["build_s"] = round(report["upsert_s"] + report["optimize_s"], 2)
        report["shard"] = await store.shard_info(COLLECTION)
        report["disk_mb"] = round(await asyncio.to_thread(disk_mb, work / COLLECTION), 1)
        del records
        _release_freed_memory()
        report["rss_built_mb"] = round(rss_mb(), 1)
        report["selectivity"] = _selectivity(chunks)
        progress(
            f"{size_label(points)}: built in {report['build_s']} s (upsert {report['upsert_s']} s, "
            f"optimize {report['optimize_s']} s), {report['disk_mb']} MB on disk; {warmup} warm-up + "
            f"{queries} queries x {len(CASES)} kinds"
        )
        timings, hits, found = await _run_queries(store, held_out, warmup, prefetch_limit)
        report["queries"] = {
            f"{kind}_{name}": _summary(timings[(kind, name)], hits[(kind, name)]) for kind, name in CASES
        }
        for name, truth in exact.items():  # the dense branch against exact search under the same filter
            report["queries"][f"dense_{name}"]["recall_at_10"] = truth.recall(found[name])
        report["dense_recall_at_10"] = report["queries"]["dense_none"]["recall_at_10"]
        report["rss_queried_mb"] = round(rss_mb(), 1)
    finally:
        await store.close()
    return report


async def _run_queries(
    store: EdgeVectorStore, held_out: list[Query], warmup: int, prefetch_limit: int
) -> tuple[dict[tuple[str, str], list[float]], dict[tuple[str, str], list[int]], dict[str, list[list[str]]]]:
    """Every query through every case, the cases in a rotating order (machine noise falls on all alike);
    the first `warmup` queries are not counted. Also the dense branch's hit ids per filter (for recall)."""
    timings: dict[tuple[str, str], list[float]] = {case: [] for case in CASES}
    hits: dict[tuple[str, str], list[int]] = {case: [] for case in CASES}
    dense_found: dict[str, list[list[str]]] = {name: [] for name in FILTERS}
    for n, query in enumerate(held_out):
        for shift in range(len(CASES)):
            kind, name = CASES[(n + shift) % len(CASES)]
            request = _request(kind, query, FILTERS[name], prefetch_limit)
            began = time.perf_counter()
            found = await store.search(COLLECTION, request)
            elapsed = time.perf_counter() - began
            if n < warmup:
                continue
            timings[(kind, name)].append(elapsed)
            hits[(kind, name)].append(len(found))
            if kind == "dense":
                dense_found[name].append([p.id for p in found])
    return timings, hits, dense_found


def _selectivity(chunks: list[tuple[MediaFile, int]]) -> dict[str, float]:
    """The share of points each filter lets through."""
    passes = [_passes(media) for media, _ in chunks]
    return {name: round(sum(p[name] for p in passes) / len(chunks), 4) for name in FILTERS if name != "none"}


async def measure(
    sizes: Sequence[int] = (10_000, 100_000),
    queries: int = 300,
    *,
    warmup: int = 30,
    optimize: Optimize = "auto",
    hnsw_ef: int | None = None,
    prefetch_limit: int = PREFETCH_LIMIT,
    shape: CorpusShape | None = None,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Search latency at each size, one collection at a time (each deleted before the next is built).

    Returns `p95_ms_<label>` (the hybrid query's p95 without filter, ms) per size and the full report per
    size under `sizes[<label>]`. `hnsw_ef`: None keeps the store's default (vector_params.HNSW_EF_SEARCH).
    """
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    index = EdgeIndexParams() if hnsw_ef is None else EdgeIndexParams(hnsw_ef=hnsw_ef)
    report: dict[str, Any] = {
        "queries": queries,
        "warmup": warmup,
        "limit": LIMIT,
        "prefetch_limit": prefetch_limit,
        "hnsw_ef": index.hnsw_ef,
        "cpus": os.cpu_count(),
        "sizes": {},
    }
    for points in sizes:
        with tempfile.TemporaryDirectory(prefix="bench_search_latency_", dir=work_dir) as tmp:
            result = await measure_size(
                points,
                queries,
                Path(tmp),
                shape=shape or CorpusShape(),
                warmup=warmup,
                optimize=optimize,
                index=index,
                prefetch_limit=prefetch_limit,
                progress=say,
            )
        label = size_label(points)
        report["sizes"][label] = result
        report[f"p95_ms_{label}"] = result["queries"]["hybrid_none"]["p95_ms"]
    return report


def _print_table(report: dict[str, Any]) -> None:
    for label, result in report["sizes"].items():
        print(
            f"{label}: build {result['build_s']} s (upsert {result['upsert_s']}, "
            f"optimize {result['optimize_s']}), "
            f"disk {result['disk_mb']} MB, RSS {result['rss_before_mb']} -> {result['rss_built_mb']} -> "
            f"{result['rss_queried_mb']} MB, dense recall@10 {result['dense_recall_at_10']}"
        )
        for case, figures in result["queries"].items():
            print(
                f"  {case:<20} p50 {figures['p50_ms']:>8.2f}  p95 {figures['p95_ms']:>8.2f}  "
                f"mean {figures['mean_ms']:>8.2f} ms  ({figures['hits_mean']} hits)"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10_000, 100_000],
        help="comma-separated collection sizes in points (default 10000,100000)",
    )
    parser.add_argument("--queries", type=int, default=300, help="timed queries per kind (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="queries per kind before timing (default 30)")
    parser.add_argument(
        "--optimize",
        choices=["auto", "always", "never"],
        default="auto",
        help="build the HNSW index: auto = as a job does, at ANN_INDEX_THRESHOLD points and more",
    )
    parser.add_argument("--hnsw-ef", type=int, default=None, help="search-time ef (default: the store's)")
    parser.add_argument("--prefetch-limit", type=int, default=PREFETCH_LIMIT, help="per-branch candidates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None, help="where the temporary stores go")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    report = asyncio.run(
        measure(
            args.sizes,
            args.queries,
            warmup=args.warmup,
            optimize=args.optimize,
            hnsw_ef=args.hnsw_ef,
            prefetch_limit=args.prefetch_limit,
            shape=CorpusShape(seed=args.seed),
            work_dir=args.work_dir,
        )
    )
    if not args.json:
        _print_table(report)
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    configure_logging("WARNING")  # the store's info lines would drown the progress lines
    main()
