"""Video ingest speed on the default CPU models: media seconds per wall second, and every phrase found.

    python scripts/bench_video.py --minutes 3 --json

Builds an M-minute news programme (scripts/talk_video.py: two presenters, two voices, known sentences,
on-screen captions), ingests it with the real JobManager, the real ML service (started here unless --ml-url)
and Qdrant Edge, then searches every sentence. Reports the wall time, the real-time factor (media seconds
÷ wall seconds), where the time went (per-model busy seconds from the ML service's /metrics, decoding from
the job's stage timers) and how many sentences were found at their time (top hit, start within 2 s).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.config import Settings
from orchestrator.search import SearchQuery, search
from scripts.bench_cli import bench_main
from scripts.bench_jobs import completed_job, job_manager
from scripts.ml_process import ml_service
from scripts.speech import word_error_rate
from scripts.talk_video import TalkManifest, make_talk_video

PHRASE_TOLERANCE_S = 2.0
_SUM = re.compile(r'^archivist_ml_model_batch_seconds_sum\{model="([^"]+)"\} ([0-9.e+-]+)$', re.MULTILINE)


def model_seconds(ml_url: str) -> dict[str, float]:
    """Seconds each model spent computing, from the ML service's Prometheus metrics."""
    text = httpx.get(f"{ml_url}/metrics", timeout=10).text
    return {model: float(value) for model, value in _SUM.findall(text)}


async def ingest_and_search(settings: Settings, root: Path, manifest: TalkManifest) -> dict[str, Any]:
    async with job_manager(settings) as (services, manager):
        wall, job = await completed_job(manager, root)
        status = job.status()
        hits = 0
        misses = []
        for phrase in manifest.phrases:
            found = (
                await search(
                    services.store, services.ml, services.index, SearchQuery(phrase.text, "bench", limit=3)
                )
            ).hits
            top = found[0] if found else None
            if (
                top is not None
                and top.start_s is not None
                and abs(top.start_s - phrase.start_s) <= PHRASE_TOLERANCE_S
            ):
                hits += 1
            else:
                misses.append(
                    {"phrase": phrase.text, "at": phrase.start_s, "top": top.start_s if top else None}
                )
        points, _ = await services.store.scroll("bench", None, 10_000, None)
        said = " ".join(p.payload["transcript"] for p in sorted(points, key=lambda p: p.payload["start_s"]))
        wer = word_error_rate(" ".join(p.text for p in manifest.phrases), said)
        return {"wall_s": wall, "status": status, "hits": hits, "misses": misses, "wer": wer}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="archivist-bench-video-"))
    try:
        media = work / "media"
        built = time.perf_counter()
        manifest = make_talk_video(media / "programme.mp4", args.minutes)
        build_s = time.perf_counter() - built
        with ml_service(args.ml_url) as ml_url:
            settings = Settings(data_dir=work / "data", ml_service_url=ml_url, allowed_roots=str(work))
            before = model_seconds(ml_url)
            result = await ingest_and_search(settings, media, manifest)
            after = model_seconds(ml_url)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    busy = {m: round(after.get(m, 0.0) - before.get(m, 0.0), 2) for m in after}
    status = result["status"]
    stages = status["stages"]
    wall = result["wall_s"]
    return {
        "minutes": args.minutes,
        "media_seconds": manifest.duration_s,
        "wall_s": round(wall, 2),
        "realtime_factor": round(manifest.duration_s / wall, 2),
        "asr_s": busy.get("asr", 0.0),
        "speakers_s": busy.get("speakers", 0.0),
        "faces_s": busy.get("faces", 0.0),
        "ocr_s": busy.get("ocr", 0.0),
        "tags_s": round(busy.get("tags", 0.0) + busy.get("objects", 0.0), 2),
        "embed_s": busy.get("text", 0.0),
        "decode_s": stages.get("decode", {}).get("busy_s", 0.0),
        "stage_busy_s": {k: v["busy_s"] for k, v in stages.items()},
        "chunks": status["counters"]["chunks"],
        "ml_requests": status["counters"]["ml_requests"],
        "phrase_hits": result["hits"],
        "phrase_total": len(manifest.phrases),
        "phrase_misses": result["misses"],
        "transcript_wer": round(result["wer"], 3),
        "build_video_s": round(build_s, 2),
    }


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=3.0)


def main() -> None:
    bench_main(__doc__, options, run)


if __name__ == "__main__":
    main()
