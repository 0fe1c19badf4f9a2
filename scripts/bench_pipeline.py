"""Pipeline vs sequential baseline, side by side in one run, against the real ML service and Qdrant Edge.

    python scripts/bench_pipeline.py --files 500 --json

(a) sequential: file by file, read + hash + decode, one analyze call and one embed call for that file,
    one durable upsert: the same models, service, decoder and store, just no overlap and no batching;
(b) the pipeline (the real JobManager, as the API runs it);
(c) a re-ingest of the same folder (counts ML calls and upserts; both must be 0);
plus the ML service called directly with full batches of the same images (its ceiling).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import blake3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.clients.ml import ImageRequestItem, MLClient
from orchestrator.clients.vectors import PointRecord
from orchestrator.clients.vectors_edge import EdgeVectorStore
from orchestrator.config import Settings
from orchestrator.ids import point_id
from orchestrator.keywords import sparse_vector
from orchestrator.media.images import decode_image
from orchestrator.pipeline.negotiate import collection_spec
from orchestrator.pipeline.unify import compose_text, image_parts
from scripts.bench_cli import bench_main
from scripts.bench_jobs import completed_job, job_manager
from scripts.make_samples import scene_image
from scripts.ml_process import ml_service

WORDS = (
    "river harbour market station museum garden bridge tower school library stadium festival "
    "council budget election storm rescue train airport concert parade winter summer protest"
).split()


def make_images(dest: Path, n: int, seed: int = 7, size: tuple[int, int] = (320, 240)) -> list[Path]:
    """N distinct small photo-like images: shapes on a colour field plus a short printed caption."""
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = scene_image(rng, WORDS, i, size)
        sub = dest / f"d{i // 100:03d}"
        sub.mkdir(exist_ok=True)
        path = sub / f"img_{i:05d}.jpg"
        img.save(path, quality=88)
        paths.append(path)
    return paths


async def sequential(files: list[Path], ml: MLClient, store: EdgeVectorStore, settings: Settings) -> float:
    caps = await ml.capabilities()
    await store.ensure_collection("sequential", collection_spec(caps))
    start = time.perf_counter()
    for path in files:
        data = path.read_bytes()
        content_hash = blake3.blake3(data).hexdigest()
        decoded = decode_image(
            data,
            ml_max_side=settings.ml_image_max_side,
            thumb_side=settings.thumbnail_size,
            max_pixels=settings.max_image_pixels,
        )
        result = (await ml.analyze_images([ImageRequestItem("0", decoded.ml_jpeg)]))[0]
        text = compose_text(image_parts(result))
        vector = (await ml.embed_text([text]))[0]
        if vector is None:
            raise RuntimeError(f"the ML service could not embed {text!r}")
        point = PointRecord(
            id=point_id(content_hash, 0),
            dense={"text": vector},
            sparse={"sparse": sparse_vector(text)},
            payload={"path": str(path), "text": text},
        )
        await store.upsert("sequential", [point])
    return time.perf_counter() - start


async def ml_direct(files: list[Path], ml: MLClient, batch: int, settings: Settings) -> float:
    """The ML service alone with full batches (decoding done beforehand, not timed)."""
    jpegs = [
        decode_image(
            p.read_bytes(),
            ml_max_side=settings.ml_image_max_side,
            thumb_side=settings.thumbnail_size,
            max_pixels=settings.max_image_pixels,
        ).ml_jpeg
        for p in files
    ]
    start = time.perf_counter()
    for i in range(0, len(jpegs), batch):
        chunk = jpegs[i : i + batch]
        results = await ml.analyze_images([ImageRequestItem(str(j), b) for j, b in enumerate(chunk)])
        texts = [compose_text(image_parts(r)) for r in results]
        await ml.embed_text(texts)
    return time.perf_counter() - start


async def pipeline_job(settings: Settings, root: Path) -> tuple[float, dict[str, Any], int]:
    async with job_manager(settings) as (services, manager):
        wall, job = await completed_job(manager, root)
        return wall, job.status(), services.ml.requests


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="archivist-bench-"))
    try:
        media = work / "media"
        make_images(media, args.files)
        files = sorted(media.rglob("*.jpg"))
        with ml_service(args.ml_url) as ml_url:
            settings = Settings(data_dir=work / "data", ml_service_url=ml_url, allowed_roots=str(work))
            ml = MLClient([ml_url], timeout_s=600, retry_deadline_s=30)
            try:
                # Warm-up: first calls pay lazy initialisation in the models; neither side should.
                await ml_direct(files[:8], ml, 8, settings)
                seq_store = EdgeVectorStore(work / "seq-qdrant")
                seq_s = await sequential(files, ml, seq_store, settings)
                await seq_store.close()
                pipe_s, status, _ = await pipeline_job(settings, media)
                batch = int(status["batch_sizes"]["infer"])
                direct_s = await ml_direct(files, ml, batch, settings)
                re_s, re_status, _ = await pipeline_job(settings, media)
            finally:
                await ml.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stages = status["stages"]
    busiest = max(stages, key=lambda s: stages[s]["busy_s"])
    busiest_s = stages[busiest]["busy_s"]
    n = args.files
    return {
        "files": n,
        "sequential_s": round(seq_s, 2),
        "pipeline_s": round(pipe_s, 2),
        "speedup_vs_sequential": round(seq_s / pipe_s, 2),
        "busiest_stage": busiest,
        "busiest_stage_busy_s": round(busiest_s, 2),
        "overlap_ratio": round(pipe_s / busiest_s, 3),
        "stage_busy_s": {k: v["busy_s"] for k, v in stages.items()},
        "ml_direct_s": round(direct_s, 2),
        "ml_efficiency": round((n / pipe_s) / (n / direct_s), 3),
        "infer_batch": batch,
        "sequential_files_per_s": round(n / seq_s, 2),
        "pipeline_files_per_s": round(n / pipe_s, 2),
        "reingest_s": round(re_s, 3),
        "reingest_ml_calls": re_status["counters"]["ml_requests"],
        "reingest_upserts": re_status["counters"]["upsert_requests"],
        "failed": status["counters"]["failed"],
    }


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--files", type=int, default=500)


def main() -> None:
    bench_main(__doc__, options, run)


if __name__ == "__main__":
    main()
