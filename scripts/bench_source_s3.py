"""Ingest speed of an object-store prefix against the same files in a local folder.

    python scripts/bench_source_s3.py --files 200 --runs 3 --json

`measure_s3(workdir)` (also called by scripts/bench_sources.py) writes `files` small distinct images (JPEG,
160x120, ~5 KB) to a local folder and puts the same bytes into a bucket of a real S3-compatible server
(moto_server on loopback, credentials checked: `scripts/moto_process.py`), then runs a real orchestrator
process (`python -m orchestrator`) against a real ML service. The ML work is taken out of the comparison:
the images are first ingested once into a throwaway collection (`warm`), so the result cache holds every
answer; each measured run ingests into a FRESH collection (nothing indexed: every file is read, hashed,
looked up in the cache and written as a point), alternating local and s3 runs, `runs` of each. A run's time
is the job's own `elapsed_s` (start to end of its pipeline, as GET /jobs reports it); the medians are
reported. What differs between the two is the source: scandir + stat + open against ListObjectsV2 + one GET
per object streamed into the spool (S3_DOWNLOAD_WORKERS, default 4) + the copy's deletion. moto is a Python
server (one process, not a real S3): `s3_vs_local` is a floor of what a real store over a network gives,
not a forecast.

Without `ml_url`, a light ML service is started (image task `tags` only, the small English text model):
the warm-up then costs seconds, and the measured runs ask it nothing either way.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.bench_pipeline import make_images
from scripts.ml_process import ml_service
from scripts.moto_process import running_moto
from scripts.orchestrator_process import orchestrator_process

BUCKET = "bench"
PREFIX = "images"
# A light ML service for the warm-up (the measured runs are answered by the cache).
LIGHT_ML = {
    "ML_IMAGE_TASKS": "tags",
    "ML_ASR_ENABLED": "false",
    "ML_VOICES_ENABLED": "false",
    "ML_TEXT_BACKEND": "sentence-transformers",
    "ML_DEVICE": "cpu",
}
JOB_TIMEOUT_S = 600.0


def _ingest(client: httpx.Client, path: str, collection: str) -> dict[str, Any]:
    resp = client.post("/jobs", json={"path": path, "collection": collection})
    if resp.status_code != 202:
        raise RuntimeError(f"POST /jobs answered {resp.status_code}: {resp.text[:500]}")
    job_id = resp.json()["job_id"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        status: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if status["state"] not in ("queued", "running", "paused"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} not done in {JOB_TIMEOUT_S} s: {status['counters']}")
        time.sleep(0.02)
    if status["state"] != "completed" or status["counters"]["failed"]:
        raise RuntimeError(f"{path}: {status['state']} {status.get('error')} {status['errors'][:3]}")
    return status


def _put_objects(client: Any, files: list[Path], root: Path) -> None:
    client.create_bucket(Bucket=BUCKET)

    def put(path: Path) -> None:
        client.put_object(
            Bucket=BUCKET, Key=f"{PREFIX}/{path.relative_to(root).as_posix()}", Body=path.read_bytes()
        )

    with ThreadPoolExecutor(8) as pool:  # (boto3 clients are thread-safe)
        list(pool.map(put, files))


def _busy(status: dict[str, Any]) -> dict[str, float]:
    return {stage: timer["busy_s"] for stage, timer in status["stages"].items() if timer["busy_s"]}


def measure_s3(workdir: Path, ml_url: str | None = None, files: int = 200, runs: int = 3) -> dict[str, Any]:
    """See the module. Returns s3_files_per_s, local_files_per_s, s3_vs_local (medians) and the runs."""
    workdir.mkdir(parents=True, exist_ok=True)
    local = workdir / "local"
    images = make_images(local, files, size=(160, 120))
    with (
        running_moto(workdir / "moto", [BUCKET]) as moto,
        ml_service(ml_url, env=LIGHT_ML, log_path=workdir / "ml.log") as ml,
    ):
        _put_objects(moto.client(), images, local)
        env = {
            "S3_ENDPOINT_URL": moto.url,
            "S3_ACCESS_KEY_ID": moto.access_key_id,
            "S3_SECRET_ACCESS_KEY": moto.secret_access_key,
            "S3_ALLOWED_BUCKETS": BUCKET,
        }
        with (
            orchestrator_process(workdir / "data", ml, [local], env=env) as base,
            httpx.Client(base_url=base, timeout=60.0) as client,
        ):
            warm = _ingest(client, str(local), "warm")  # every answer into the cache (not measured)
            times: dict[str, list[float]] = {"local": [], "s3": []}
            busy: dict[str, list[dict[str, float]]] = {"local": [], "s3": []}
            downloads = []
            for run in range(runs):
                status = _ingest(client, str(local), f"local{run}")
                times["local"].append(status["elapsed_s"])
                busy["local"].append(_busy(status))
                status = _ingest(client, f"s3://{BUCKET}/{PREFIX}", f"s3run{run}")
                times["s3"].append(status["elapsed_s"])
                busy["s3"].append(_busy(status))
                downloads.append(status["source"]["downloads"])
                if status["counters"]["inferred"] or status["counters"]["upserted"] != files:
                    raise RuntimeError(f"s3 run {run} was not answered by the cache: {status['counters']}")
    local_rate = files / statistics.median(times["local"])
    s3_rate = files / statistics.median(times["s3"])
    return {
        "files": files,
        "runs": runs,
        "warm_up": f"{files} images ingested into a throwaway collection first: every ML answer cached "
        f"({warm['counters']['inferred']} chunks inferred then; 0 in the measured runs)",
        "local_files_per_s": round(local_rate, 1),
        "s3_files_per_s": round(s3_rate, 1),
        "s3_vs_local": round(s3_rate / local_rate, 3),
        "local_elapsed_s": times["local"],
        "s3_elapsed_s": times["s3"],
        "s3_downloads": downloads,
        # Per-stage busy seconds of the last run of each (the s3 scan stage includes its downloads).
        "local_stage_busy_s": busy["local"][-1],
        "s3_stage_busy_s": busy["s3"][-1],
        "store": "moto_server 5 on loopback (one Python process), boto3, 4 download workers",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary directory")
    parser.add_argument("--ml-url", default=None, help="use this ML service (else a light one is started)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-s3-"))
    try:
        result = measure_s3(workdir, args.ml_url, args.files, args.runs)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if not args.json:
        for key, value in result.items():
            print(f"{key:>18}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
