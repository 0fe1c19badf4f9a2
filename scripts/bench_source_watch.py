"""Watched folders: from a file's write until search finds it, and what a pass over a burst costs.

    python scripts/bench_source_watch.py --json

`measure_watch(workdir, ml_url)` (also called by scripts/bench_sources.py) starts a real orchestrator process
(`python -m orchestrator`, default settings: WATCH_SETTLE_S 1 s) on a loopback port against the given ML
service, with a folder that already holds `BACKGROUND` small unchanged files (in 20 directories; not media,
so the first pass indexes them without ML), and a watching job on it. Then `n` pictures, each a different
scene, are written one at a time into a new directory; for each, the time from the end of its write (the
file closed) until a keyword search over HTTP for its file name finds it (polled every 20 ms) is one sample:
`watch_latency_p50_s` / `_p95_s` (target: ≤ chunk length + 5 s). `scoped_pass_p50_s` is the pass each burst
took (the job's `watch.last_pass_s`: one directory listed, one picture through the ML service), and
`scoped_pass_no_ml_p50_s` the same for bursts that need no ML (one background file deleted each: listing,
prune); `whole_pass_s` is one pass of an ordinary job over the same folder afterwards (every file unchanged:
the stat fast path), what a burst would cost if each pass walked the whole root.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.make_samples import scene_image
from scripts.ml_process import free_port, ml_service, stop_process, wait_ready

BACKGROUND = 20_000  # unchanged files beside the pictures
_WORDS = ["watched"]
_POLL_S = 0.02


def _picture(i: int) -> bytes:
    out = io.BytesIO()
    scene_image(random.Random(1000 + i), _WORDS, i, (320, 240)).save(out, format="JPEG", quality=88)
    return out.getvalue()


def _background(root: Path, n: int) -> None:
    """`n` small files that are neither media nor documents (random bytes), in 20 directories."""
    for i in range(n):
        directory = root / "archive" / f"part{i % 20:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"blob{i:06d}.bin").write_bytes(os.urandom(32))


def _wait(what: str, check: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s} s")
        time.sleep(_POLL_S)
    return found


def _quantile(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1], 3)


def measure_watch(workdir: Path, ml_url: str, n: int = 20) -> dict[str, Any]:
    """See the module: watch_latency_p50_s / _p95_s / _max_s, n, scoped_pass_p50_s, whole_pass_s."""
    media = workdir / "media"
    media.mkdir(parents=True, exist_ok=True)
    _background(media, BACKGROUND)
    pictures = [_picture(i) for i in range(n)]
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_DIR": str(workdir / "data"),
        "ALLOWED_ROOTS": str(workdir),
        "ML_SERVICE_URL": ml_url,
        "LOG_LEVEL": "WARNING",
    }
    log_path = workdir / "orchestrator.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator"],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    passes: list[float] = []
    bare: list[float] = []
    try:
        wait_ready(base, proc, 120.0, path="/health", log_path=log_path)
        with httpx.Client(base_url=base, timeout=60.0) as client:
            body = {"path": str(media), "collection": "watch", "options": {"watch": True}}
            job_id = client.post("/jobs", json=body).json()["job_id"]

            def status() -> dict[str, Any]:
                answer: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
                if answer["state"] not in ("queued", "running"):
                    raise RuntimeError(f"the watching job ended: {answer}")
                return answer

            first = _wait("the first pass", lambda: (s := status())["watch"]["passes"] >= 1 and s, 600)
            first_pass_s = first["watch"]["last_pass_s"]
            incoming = media / "incoming"
            incoming.mkdir()
            for i, data in enumerate(pictures):
                name = f"benchpicture{i:03d}"
                (incoming / f"{name}.jpg").write_bytes(data)
                written = time.monotonic()
                params = {"q": name, "collection": "watch", "mode": "keyword", "limit": 1}

                def found(name: str = name, params: dict[str, Any] = params) -> bool:
                    hits = client.get("/search", params=params).json()["hits"]
                    return any(name in p for h in hits for p in h["paths"])

                _wait(f"picture {i}", found, 60)
                latencies.append(time.monotonic() - written)
                passes.append(float(status()["watch"]["last_pass_s"]))
            for i in range(5):  # bursts without ML: one file deleted each
                done = status()["watch"]["passes"]
                (media / "archive" / f"part{i:02d}" / f"blob{i:06d}.bin").unlink()
                _wait(f"deletion {i}", lambda done=done: status()["watch"]["passes"] > done, 60)
                bare.append(float(status()["watch"]["last_pass_s"]))
            client.post(f"/jobs/{job_id}/cancel")
            job_id = client.post("/jobs", json={"path": str(media), "collection": "watch"}).json()["job_id"]
            whole = _wait(
                "the whole pass",
                lambda: (s := client.get(f"/jobs/{job_id}").json())["state"] == "completed" and s,
                600,
            )
    finally:
        stop_process(proc)
    return {
        "n": n,
        "watch_latency_p50_s": round(statistics.median(latencies), 3),
        "watch_latency_p95_s": _quantile(latencies, 0.95),
        "watch_latency_max_s": round(max(latencies), 3),
        "scoped_pass_p50_s": round(statistics.median(passes), 3),
        "scoped_pass_no_ml_p50_s": round(statistics.median(bare), 3),
        "whole_pass_s": whole["elapsed_s"],
        "whole_pass_files": whole["counters"]["discovered"],
        "first_pass_s": first_pass_s,
        "settle_s": 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=20, help="pictures written, one at a time")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary directory")
    parser.add_argument("--ml-url", default=None, help="an ML service already running (else one is started)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    import shutil
    import tempfile

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-watch-"))
    try:
        with ml_service(args.ml_url) as ml_url:
            result = measure_watch(workdir, ml_url, args.n)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if not args.json:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:>{width}}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
