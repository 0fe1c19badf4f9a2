"""Model upgrades on a real collection: what a new OCR model and a new text model cost, and search during the
switch to a new collection version.

    python scripts/bench_reanalyze.py                                   # 300 images + a 2-minute video
    python scripts/bench_reanalyze.py --images 20 --video-minutes 0.3   # a quick check

One folder (N images from scripts/bench_pipeline.make_images plus the talk video of scripts/talk_video.py),
real services on loopback ports (the ML service and the orchestrator as subprocesses, embedded Qdrant Edge),
every step through the orchestrator's HTTP API:

1. first ingest (POST /jobs) with the ML service's defaults (ML_CPU_THREADS and the other ML_* settings from
   this environment). OCR's share of it is measured: the same first ingest without OCR (a fresh DATA_DIR,
   nothing cached) takes first_without_ocr_s, and ocr_share_s = first_s - first_without_ocr_s. (Also printed:
   the share apportioned by the ML service's per-model seconds, archivist_ml_model_batch_seconds_sum; on 2
   cores the models overlap, so that apportionment credits OCR with less than its own compute time.)
2. a new OCR version (the same model, another ML_OCR_MIN_SCORE: part of its version), then
   POST /collections/{c}/reanalyze: OCR is run again in place, every other task is a cache hit, text vectors
   follow. Target: ocr_change_s <= 1.2 x ocr_share_s.
3. a new text model (the packaged MiniLM with noisy word embeddings, scripts/model_variants.py; the old one
   kept for queries through ML_TEXT_QUERY_MODEL_PATHS), then POST /collections/{c}/reanalyze: a new version
   is built beside the old and switched to. Meanwhile a loop searches (GET /search, one at a time, at most
   --search-rate a second) until a few searches after the job's end. Targets: no answer but 200, and no
   mixed answer (a version other than the old or the new, or a query embedded with another text model than
   the version it names was built with).

Job times are the orchestrator's own (finished_at - created_at of GET /jobs/{id}), so polling adds nothing.
Services start and stop outside the timings. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml_service.config import MLSettings, packaged_text_model
from scripts.bench_pipeline import WORDS, make_images
from scripts.bench_video import model_seconds
from scripts.ml_process import REPO, free_port, stop_process, wait_ready
from scripts.ml_process import ml_service as ml_process
from scripts.model_variants import text_model_variant
from scripts.talk_video import make_talk_video

COLLECTION = "bench"
OCR_RATIO_TARGET = 1.2
SEARCHES_AFTER_SWITCH = 5  # searches made after the job's end (the switch comes before it)
JOB_TIMEOUT_S = 6 * 3600.0  # a bound only: the default size takes minutes
POLL_S = 0.2  # job status polls (the timings are the job's own, not the polls')
SERVICE_START_S = 300.0
REQUEST_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Stack:
    """One running pair: the ML service (its URL, for /metrics) and a client of the orchestrator over it."""

    ml_url: str
    client: httpx.AsyncClient


@dataclass(frozen=True, slots=True)
class JobRun:
    seconds: float  # the orchestrator's own: finished_at - created_at
    status: dict[str, Any]  # GET /jobs/{id} at its end
    model_seconds: dict[str, float]  # what each ML model computed during the job (/metrics difference)


@dataclass(frozen=True, slots=True)
class Answer:
    """One search during the switch."""

    status: int  # 0: no HTTP answer (connection error, timeout)
    version: int | None
    text_model: str | None  # query_models.text
    seconds: float
    after_job: bool


@contextmanager
def orchestrator_process(data_dir: Path, root: Path, ml_url: str, log_path: Path) -> Iterator[str]:
    """`python -m orchestrator` on a free loopback port (settings from this environment, then these); its
    URL once /ready answers. Stopped (SIGTERM, then SIGKILL) on exit."""
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_DIR": str(data_dir),
        "ALLOWED_ROOTS": str(root),
        "ML_SERVICE_URL": ml_url,
        "ML_SERVICE_URLS": "",
        "LOG_LEVEL": "WARNING",
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, proc, SERVICE_START_S, path="/ready", log_path=log_path)
            yield base
        finally:
            stop_process(proc)


@asynccontextmanager
async def services(work: Path, name: str, ml_env: dict[str, str], data: str = "data") -> AsyncIterator[Stack]:
    """The ML service with `ml_env` and an orchestrator over it (data kept in `work/<data>` between calls);
    processes start and stop in a worker thread, off the event loop."""
    stack = ExitStack()
    try:
        log = work / "logs" / f"ml-{name}.log"
        ml_url = await asyncio.to_thread(stack.enter_context, ml_process(env=ml_env, log_path=log))
        orch_log = work / "logs" / f"orchestrator-{name}.log"
        cm = orchestrator_process(work / data, work / "media", ml_url, orch_log)
        url = await asyncio.to_thread(stack.enter_context, cm)
        key = os.environ.get("API_KEY")
        headers = {"X-API-Key": key} if key else {}
        async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, headers=headers) as client:
            yield Stack(ml_url, client)
    finally:
        await asyncio.to_thread(stack.close)


async def capabilities(ml_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as client:
        resp = await client.get(f"{ml_url}/capabilities")
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body


async def collection(client: httpx.AsyncClient) -> dict[str, Any]:
    resp = await client.get(f"/collections/{COLLECTION}")
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    return body


async def run_job(stack: Stack, submit: Callable[[], Awaitable[httpx.Response]]) -> JobRun:
    """Submit a job (`submit`: the POST) and wait for its end (bounded), with the ML service's model seconds
    around it; raises unless it completed."""
    before = await asyncio.to_thread(model_seconds, stack.ml_url)
    resp = await submit()
    if resp.status_code != 202:
        raise RuntimeError(f"{resp.request.url}: {resp.status_code} {resp.text}")
    job_id = resp.json()["job_id"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        status: dict[str, Any] = (await stack.client.get(f"/jobs/{job_id}")).raise_for_status().json()
        if status["state"] not in ("queued", "running", "paused"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status['state']} after {JOB_TIMEOUT_S:.0f} s")
        await asyncio.sleep(POLL_S)  # polling a condition: the job's state
    if status["state"] != "completed":
        raise RuntimeError(f"job {job_id} ended {status['state']}: {status.get('error')}")
    after = await asyncio.to_thread(model_seconds, stack.ml_url)
    busy = {m: round(after[m] - before.get(m, 0.0), 3) for m in after if after[m] > before.get(m, 0.0)}
    return JobRun(status["finished_at"] - status["created_at"], status, busy)


async def search_loop(
    client: httpx.AsyncClient, job_done: asyncio.Event, queries: list[str], rate: float
) -> list[Answer]:
    """Search one query at a time (at most `rate` a second; 0: no pause) until SEARCHES_AFTER_SWITCH
    searches after `job_done` is set."""
    answers: list[Answer] = []
    after = 0
    while after < SEARCHES_AFTER_SWITCH:
        after_job = job_done.is_set()
        query = queries[len(answers) % len(queries)]
        started = time.perf_counter()
        try:
            resp = await client.get("/search", params={"q": query, "collection": COLLECTION, "limit": 5})
            body: dict[str, Any] = resp.json() if resp.status_code == 200 else {}
            models = body.get("query_models") or {}
            status, version, text_model = resp.status_code, body.get("version"), models.get("text")
        except httpx.HTTPError:
            status, version, text_model = 0, None, None
        took = time.perf_counter() - started
        answers.append(Answer(status, version, text_model, took, after_job))
        after += after_job
        if rate > 0:
            await asyncio.sleep(max(0.0, 1.0 / rate - took))  # pacing, not synchronisation
    return answers


def text_versions(shown: dict[str, Any]) -> dict[int, str]:
    """Each collection version's text model version (the part after the last "@" of models.text)."""
    out: dict[int, str] = {}
    for v in shown["versions"]:
        text = (v.get("models") or {}).get("text")
        if text and "@" in text:
            out[int(v["version"])] = text.rsplit("@", 1)[1]
    return out


def mixed(answers: list[Answer], old: int, new: int, texts: dict[int, str]) -> list[Answer]:
    """Answers that name neither version, or whose query model is not the one their version was built with."""
    return [
        a
        for a in answers
        if a.status == 200
        and (a.version not in (old, new) or a.version not in texts or a.text_model != texts[a.version])
    ]


def ocr_setting() -> tuple[str, str]:
    """The OCR score threshold the first service runs with, and another one (a new OCR version)."""
    now = float(os.environ.get("ML_OCR_MIN_SCORE") or MLSettings.model_fields["ocr_min_score"].default)
    other = 0.6 if abs(now - 0.6) > 1e-9 else 0.7
    return str(now), str(other)


async def build_media(work: Path, images: int, minutes: float) -> tuple[float, list[str]]:
    """The folder to ingest; returns the video's seconds (0 without one) and queries that find something."""
    media = work / "media"
    await asyncio.to_thread(make_images, media / "images", images)
    if minutes <= 0:
        return 0.0, list(WORDS)
    talk = await asyncio.to_thread(make_talk_video, media / "video" / "programme.mp4", minutes)
    return talk.duration_s, [*WORDS, *(p.text for p in talk.phrases)]


def version_of(caps: dict[str, Any], task: str) -> str | None:
    model = caps["models"].get(task)
    return None if model is None else f"{model.get('name')}@{model.get('version')}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(args.work) if args.work else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="archivist-reanalyze-", dir=base))
    (work / "logs").mkdir()
    try:
        return await steps(args, work)
    finally:
        if args.keep:
            print(f"kept {work} (media, data, logs, the text model variant)", file=sys.stderr)
        else:
            await asyncio.to_thread(shutil.rmtree, work, True)


async def steps(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    built = time.perf_counter()
    video_s, queries = await build_media(work, args.images, args.video_minutes)
    variant = await asyncio.to_thread(text_model_variant, work / "models" / "minilm-variant")
    build_s = time.perf_counter() - built
    base_env = {"ML_IMAGE_TASKS": args.image_tasks} if args.image_tasks is not None else {}
    old_score, new_score = ocr_setting()
    ocr_env = {**base_env, "ML_OCR_MIN_SCORE": new_score}
    text_env = {
        **ocr_env,
        "ML_TEXT_MODEL_PATH": str(variant),
        "ML_TEXT_QUERY_MODEL_PATHS": str(packaged_text_model()),
    }
    media = str(work / "media")
    reanalyze = f"/collections/{COLLECTION}/reanalyze"

    # 1. The first ingest, and OCR's share of it.
    async with services(work, "first", {**base_env, "ML_OCR_MIN_SCORE": old_score}) as stack:
        caps_first = await capabilities(stack.ml_url)
        if "ocr" not in caps_first["models"]:
            raise SystemExit("the ML service runs no OCR model: --image-tasks must include ocr")
        body = {"path": media, "collection": COLLECTION}
        first = await run_job(stack, lambda: stack.client.post("/jobs", json=body))
    all_models_s = sum(first.model_seconds.values())
    ocr_model_s = first.model_seconds.get("ocr", 0.0)
    apportioned_s = first.seconds * ocr_model_s / all_models_s if all_models_s > 0 else 0.0

    # 1b. OCR's share, measured: the same first ingest without OCR (its own DATA_DIR: nothing cached).
    without = ",".join(t for t in caps_first["image_tasks"] if t not in ("ocr", "image_text", "caption"))
    async with services(work, "no-ocr", {**base_env, "ML_IMAGE_TASKS": without}, data="data-no-ocr") as stack:
        body = {"path": media, "collection": COLLECTION}
        no_ocr = await run_job(stack, lambda: stack.client.post("/jobs", json=body))
    ocr_share_s = first.seconds - no_ocr.seconds

    # 2. A new OCR version: re-analysed in place.
    async with services(work, "ocr", ocr_env) as stack:
        caps_ocr = await capabilities(stack.ml_url)
        if version_of(caps_ocr, "ocr") == version_of(caps_first, "ocr"):
            raise RuntimeError(f"ML_OCR_MIN_SCORE={new_score} did not change the OCR version")
        ocr_stale = (await collection(stack.client))["stale"]
        ocr = await run_job(stack, lambda: stack.client.post(reanalyze))

    # 3. A new text model: a new version built beside the old one, searched during the switch.
    async with services(work, "text", text_env) as stack:
        caps_text = await capabilities(stack.ml_url)
        before = await collection(stack.client)
        old_version = int(before["version"])
        job_done = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            searcher = group.create_task(search_loop(stack.client, job_done, queries, args.search_rate))
            try:
                text = await run_job(stack, lambda: stack.client.post(reanalyze))
            finally:
                job_done.set()
        answers = searcher.result()
        after = await collection(stack.client)
    new_version = int(after["version"])
    texts = text_versions(after)
    wrong = mixed(answers, old_version, new_version, texts)
    errors = [a for a in answers if a.status != 200]
    latencies = [a.seconds for a in answers if a.status == 200]

    ocr_ratio = ocr.seconds / ocr_share_s if ocr_share_s > 0 else None
    result: dict[str, Any] = {
        "images": args.images,
        "video_s": video_s,
        "image_tasks": args.image_tasks or "(ML service default)",
        "build_media_s": round(build_s, 1),
        "first_s": round(first.seconds, 2),
        "first_ml_requests": first.status["counters"]["ml_requests"],
        "first_failed": first.status["counters"]["failed"],
        "first_model_seconds": first.model_seconds,
        "ocr_model_s": round(ocr_model_s, 2),
        "all_models_s": round(all_models_s, 2),
        "first_without_ocr_s": round(no_ocr.seconds, 2),
        "ocr_share_s": round(ocr_share_s, 2),  # first_s - first_without_ocr_s
        "ocr_share_apportioned_s": round(apportioned_s, 2),  # first_s x OCR's fraction of model seconds
        "ocr_versions": [version_of(caps_first, "ocr"), version_of(caps_ocr, "ocr")],
        "ocr_change_stale": ocr_stale,
        "ocr_change_s": round(ocr.seconds, 2),
        "ocr_change_ratio": None if ocr_ratio is None else round(ocr_ratio, 3),
        "ocr_change_ml_calls_by_task": ocr.status["ml_calls_by_task"],
        "ocr_change_model_seconds": ocr.model_seconds,
        "ocr_change_failed": ocr.status["counters"]["failed"],
        "ocr_change_reanalysis": ocr.status["reanalysis"],
        "text_versions": [version_of(caps_first, "text"), version_of(caps_text, "text")],
        "text_change_s": round(text.seconds, 2),
        "text_change_ml_calls_by_task": text.status["ml_calls_by_task"],
        "text_change_model_seconds": text.model_seconds,
        "text_change_failed": text.status["counters"]["failed"],
        "text_change_reanalysis": text.status["reanalysis"],
        "collection_versions": [old_version, new_version],
        "searches_during_switch": len(answers),
        "searches_after_switch": sum(a.after_job for a in answers),
        "search_versions": {str(v): sum(a.version == v for a in answers) for v in sorted(texts)},
        "search_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "search_max_s": round(max(latencies), 3) if latencies else None,
        "search_errors_during_switch": len(errors),
        "search_error_statuses": sorted({a.status for a in errors}),
        "mixed_results": len(wrong),
        "ocr_change_ratio_met": ocr_ratio is not None and ocr_ratio <= OCR_RATIO_TARGET,
        "ocr_change_only_ocr_and_text": set(ocr.status["ml_calls_by_task"]) <= {"ocr", "text"},
        "text_change_only_text": set(text.status["ml_calls_by_task"]) <= {"text"},
        "switched": new_version != old_version and text.status["reanalysis"].get("phase") == "switched",
        "no_search_errors": not errors,
        "no_mixed_results": not wrong,
    }
    return result


def summary(r: dict[str, Any]) -> list[str]:
    video = f" + a {r['video_s']:.0f} s video" if r["video_s"] else ""
    models = ", ".join(f"{m} {s:.1f}" for m, s in sorted(r["first_model_seconds"].items()))
    return [
        f"media: {r['images']} images{video}; image tasks: {r['image_tasks']}",
        f"1. first ingest: {r['first_s']} s"
        f" ({r['first_ml_requests']} ML requests, {r['first_failed']} failed)",
        f"   model seconds: {models}",
        f"   ocr_share_s = first_s - the same first ingest without OCR = {r['first_s']} -"
        f" {r['first_without_ocr_s']} = {r['ocr_share_s']} s (apportioned by model seconds:"
        f" {r['first_s']} x {r['ocr_model_s']} / {r['all_models_s']} = {r['ocr_share_apportioned_s']} s)",
        f"2. new OCR version {r['ocr_versions'][0]} -> {r['ocr_versions'][1]}: {r['ocr_change_s']} s,"
        f" ML requests by task {r['ocr_change_ml_calls_by_task']}",
        f"   ocr_change_ratio = {r['ocr_change_s']} / {r['ocr_share_s']} = {r['ocr_change_ratio']}"
        f" (target <= {OCR_RATIO_TARGET}: {'met' if r['ocr_change_ratio_met'] else 'MISSED'})",
        f"3. new text model {r['text_versions'][0]} -> {r['text_versions'][1]}: {r['text_change_s']} s,"
        f" ML requests by task {r['text_change_ml_calls_by_task']},"
        f" collection version {r['collection_versions'][0]} -> {r['collection_versions'][1]}",
        f"   {r['searches_during_switch']} searches ({r['searches_after_switch']} after the switch;"
        f" by version {r['search_versions']}; p50 {r['search_p50_s']} s):"
        f" {r['search_errors_during_switch']} errors, {r['mixed_results']} mixed",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--video-minutes", type=float, default=2.0, help="0: no video")
    parser.add_argument("--work", default=None, help="folder for a work directory (default: the temp dir)")
    parser.add_argument(
        "--image-tasks", default=None, help="ML_IMAGE_TASKS for every ML service (default: its own default)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--search-rate", type=float, default=5.0, help="searches a second at most (0: no pause)"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if not args.json:
        print("\n".join(summary(result)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
