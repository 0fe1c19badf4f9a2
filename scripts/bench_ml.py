"""Throughput of the ML service as a server: batching, concurrency and overload, over real HTTP.

    python scripts/bench_ml.py --json [--url http://127.0.0.1:8001] [--quick]

Starts the service with the default models (scripts/ml_process.py; or uses ``--url``) and measures,
for text embeddings and image analysis (all image tasks, 320x240 JPEG scenes like
scripts/bench_pipeline.py's):
- items/s with one item per request, sequentially (``*_single_per_s``);
- items/s with full batches (the endpoint's max_batch) from one client (``*_batched_per_s``);
- items/s with 16 concurrent clients sending one item per request (``*_concurrent16_per_s``);
then an overload run: many more concurrent text requests than the queue holds (a bounded number),
counting 429s (with Retry-After) and 5xx, while the service's resident memory is sampled.

Clients are threads with one keep-alive ``http.client`` connection each and bodies serialised once
(an httpx request costs ~2.45 ms of client CPU; client and service share the same cores here). The
last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.make_samples import scene_image
from scripts.ml_process import ml_service
from scripts.peer_load import Connection
from scripts.peer_servers import listening_pid

CONCURRENCY = 16
WORDS = (
    "river harbour market station museum garden bridge tower school library stadium festival council "
    "budget election storm rescue train airport concert parade winter summer protest flood mayor "
    "police crowd rain night morning bus ferry street square church fire water"
).split()


def sentences(count: int, seed: int) -> list[str]:
    """Distinct news-like sentences of 8-16 words."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))) + f" {i}" for i in range(count)]


def scenes(count: int, seed: int = 7, size: tuple[int, int] = (320, 240)) -> list[str]:
    """Base64 JPEGs of small photo-like scenes: shapes on a colour field and a printed caption."""
    rng = random.Random(seed)
    encoded = []
    for i in range(count):
        image = scene_image(rng, WORDS, i, size)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=88)
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return encoded


def connect(url: str) -> Connection:
    """One keep-alive connection (scripts/peer_load.py), patient with a loaded service."""
    return Connection(url, timeout_s=300.0)


def checked(status: int, body: bytes) -> None:
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")


def sequential(url: str, path: str, bodies: list[bytes], items_per_body: int) -> float:
    """Items/s for ``bodies`` sent one after another on one connection."""
    client = connect(url)
    client.post(path, bodies[0])  # warm the connection and the path
    started = time.perf_counter()
    for body in bodies:
        checked(*client.post(path, body))
    elapsed = time.perf_counter() - started
    client.close()
    return len(bodies) * items_per_body / elapsed


def concurrent(url: str, path: str, bodies: list[bytes], clients: int) -> float:
    """Items/s for one-item ``bodies`` sent by ``clients`` threads, each in a closed loop."""
    shares = [bodies[i::clients] for i in range(clients)]
    connections = [connect(url) for _ in range(clients)]
    for connection in connections:
        connection.post(path, bodies[0])
    start = threading.Barrier(clients + 1)

    def run(connection: Connection, share: list[bytes]) -> None:
        start.wait()
        for body in share:
            checked(*connection.post(path, body))

    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(run, c, s) for c, s in zip(connections, shares, strict=True)]
        start.wait()
        started = time.perf_counter()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return len(bodies) / elapsed


def rss_mb(pid: int) -> float:
    try:
        import psutil  # type: ignore[import-untyped]

        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no resident size for pid {pid}")


@contextmanager
def sampling_rss(pid: int | None, every_s: float = 0.05) -> Iterator[list[float]]:
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            if pid is not None:
                samples.append(rss_mb(pid))
            stop.wait(every_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
        if pid is not None:
            samples.append(rss_mb(pid))


def overload(url: str, pid: int | None, clients: int, requests_each: int, texts: int) -> dict[str, Any]:
    """``clients`` threads each send ``requests_each`` requests of ``texts`` texts back to back, not
    waiting on Retry-After: far more than the queue holds. Counts answers by status."""
    counts: dict[str, int] = {}
    retry_after: list[float] = []
    lock = threading.Lock()
    bodies = [orjson.dumps({"texts": sentences(texts, seed=1000 + i)}) for i in range(clients)]
    connections = [connect(url) for _ in range(clients)]

    def run(connection: Connection, body: bytes) -> None:
        for _ in range(requests_each):
            try:
                connection._conn.request(
                    "POST", "/v1/embed/text", body=body, headers={"content-type": "application/json"}
                )
                response = connection._conn.getresponse()
                response.read()
                key = str(response.status)
                if response.status == 429:
                    with lock:
                        retry_after.append(float(response.getheader("retry-after") or "nan"))
            except (OSError, http.client.HTTPException) as exc:
                key = type(exc).__name__
                connection.close()
                connection = connect(url)
            with lock:
                counts[key] = counts.get(key, 0) + 1

    baseline = rss_mb(pid) if pid is not None else 0.0
    with sampling_rss(pid) as samples, ThreadPoolExecutor(max_workers=clients) as pool:
        started = time.perf_counter()
        for future in [pool.submit(run, c, b) for c, b in zip(connections, bodies, strict=True)]:
            future.result()
        elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    errors_5xx = sum(n for status, n in counts.items() if status.isdigit() and status.startswith("5"))
    return {
        "overload_requests": clients * requests_each,
        "overload_items_per_request": texts,
        "overload_statuses": dict(sorted(counts.items())),
        "overload_429s": counts.get("429", 0),
        "overload_errors_5xx": errors_5xx,
        "overload_transport_errors": sum(n for s, n in counts.items() if not s.isdigit()),
        "overload_retry_after_s_median": statistics.median(retry_after) if retry_after else None,
        "overload_seconds": round(elapsed, 2),
        "overload_rss_mb_before": round(baseline, 1),
        "overload_rss_mb_peak": round(max(samples), 1) if samples else None,
        "overload_rss_growth_mb": round(max(samples) - baseline, 1) if samples else None,
    }


def service_pid(port: int) -> int | None:
    """The pid listening on ``port`` (Linux /proc), for a service this script did not start."""
    try:
        return listening_pid(port)
    except LookupError:
        return None


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def bench(url: str, quick: bool) -> dict[str, Any]:
    caps = connect(url).get("/capabilities")
    text_max = int(caps["endpoints"]["/v1/embed/text"]["max_batch"])
    image_max = int(caps["endpoints"]["/v1/analyze/images"]["max_batch"])
    pid = service_pid(urlsplit(url).port or 80)
    scale = 2 if quick else 1
    repeats = 1 if quick else 3
    texts = sentences(2048, seed=1)
    one_text = [orjson.dumps({"texts": [t]}) for t in texts[: 240 // scale]]
    full_text = [
        orjson.dumps({"texts": texts[i : i + text_max]}) for i in range(0, (8 // scale) * text_max, text_max)
    ]
    concurrent_text = [orjson.dumps({"texts": [t]}) for t in texts[: 960 // scale]]
    images = scenes(64)
    one_image = [orjson.dumps({"images": [{"id": "i", "data": d}]}) for d in images[: 16 // scale]]
    full_image = [
        orjson.dumps({"images": [{"id": str(j), "data": d} for j, d in enumerate(images[i : i + image_max])]})
        for i in range(0, (48 // scale // image_max or 1) * image_max, image_max)
    ]
    concurrent_image = one_image * 2
    result: dict[str, Any] = {
        "device": caps.get("device"),
        "text_max_batch": text_max,
        "image_max_batch": image_max,
        "cpu_count": os.cpu_count(),
    }
    # Text: variants interleaved per repeat, medians (the machine is shared and noisy).
    single, batched, conc = [], [], []
    for _ in range(repeats):
        single.append(sequential(url, "/v1/embed/text", one_text, 1))
        batched.append(sequential(url, "/v1/embed/text", full_text, text_max))
        conc.append(concurrent(url, "/v1/embed/text", concurrent_text, CONCURRENCY))
    result["text_single_per_s"] = round(statistics.median(single), 1)
    result["text_batched_per_s"] = round(statistics.median(batched), 1)
    result["text_concurrent16_per_s"] = round(statistics.median(conc), 1)
    result["text_batched_vs_single"] = round(result["text_batched_per_s"] / result["text_single_per_s"], 2)
    result["text_concurrent_vs_batched"] = round(
        result["text_concurrent16_per_s"] / result["text_batched_per_s"], 2
    )
    # Images: one round (each is seconds of model work).
    result["image_single_per_s"] = round(sequential(url, "/v1/analyze/images", one_image, 1), 2)
    result["image_batched_per_s"] = round(sequential(url, "/v1/analyze/images", full_image, image_max), 2)
    result["image_concurrent16_per_s"] = round(
        concurrent(url, "/v1/analyze/images", concurrent_image, CONCURRENCY), 2
    )
    result["image_batched_vs_single"] = round(result["image_batched_per_s"] / result["image_single_per_s"], 2)
    result["image_concurrent_vs_batched"] = round(
        result["image_concurrent16_per_s"] / result["image_batched_per_s"], 2
    )
    result.update(overload(url, pid, clients=64, requests_each=4 if quick else 8, texts=text_max // 2))
    after = connect(url)
    status, _ = after.post("/v1/embed/text", orjson.dumps({"texts": ["still serving"]}))
    result["after_overload_status"] = status
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running ML service (default: start one with the default models)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    args = parser.parse_args()
    started = time.perf_counter()
    env = {"ML_LOG_LEVEL": "WARNING"}
    with ml_service(args.url, env=env) as url:
        ready_s = time.perf_counter() - started
        result = bench(url, args.quick)
    result["service_ready_s"] = round(ready_s, 1)
    result["total_s"] = round(time.perf_counter() - started, 1)
    if not args.json:
        for key, value in result.items():
            print(f"{key:32} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
