"""Measure the ML service's models and HTTP path; the numbers behind the batch-size defaults.

    .venv/bin/python -m tests.ml_service.bench            # models in-process, then over HTTP

Not a test (pytest does not collect it): it prints timings on this machine. Run it on new hardware
before changing ``default_max_batch`` / ``default_preferred_batch`` in ml_service/models/.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import cv2
import httpx
import numpy as np
from skimage import data

from ml_service.config import MLSettings
from ml_service.models.base import Image
from ml_service.models.registry import ModelRegistry
from tests.ml_service.media import b64, rendered_text
from tests.support.ml_server import running_ml_service

REPEATS = 3  # medians of this many runs; the machine is shared, single runs wobble


def _photos() -> list[np.ndarray[Any, Any]]:
    loaders: list[Callable[[], Any]] = [data.astronaut, data.chelsea, data.coffee, data.rocket]
    banner = np.asarray(rendered_text("BREAKING NEWS: FLOOD IN VALENCIA"))
    return [*(np.asarray(load()) for load in loaders), banner]


def _resized(rgb: np.ndarray[Any, Any], side: int) -> np.ndarray[Any, Any]:
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    return np.ascontiguousarray(cv2.resize(rgb, (round(w * scale), round(h * scale)),
                                           interpolation=cv2.INTER_AREA))


def _image(rgb: np.ndarray[Any, Any]) -> Image:
    return Image(rgb=rgb, bgr=np.ascontiguousarray(rgb[:, :, ::-1]), width=rgb.shape[1],
                 height=rgb.shape[0])


def _each(call: Callable[[Any], object], arguments: list[Any]) -> None:
    for argument in arguments:
        call(argument)


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> None:
    client.post(path, json=body).raise_for_status()


def _median_s(run: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_models(batch: int) -> None:
    started = time.perf_counter()
    registry = ModelRegistry.from_settings(MLSettings())
    registry.load_all()
    print(f"load (imports included): {time.perf_counter() - started:.1f} s; "
          f"per model {registry.load_seconds}")
    photos = _photos()
    for side in (512, 256):
        images = [_image(_resized(photos[i % len(photos)], side)) for i in range(batch)]
        for task, model in registry.image.items():
            model.predict(images[:2])  # warm caches and lazily built graphs
            one_by_one = _median_s(partial(_each, model.predict, [[im] for im in images])) / batch
            batched = _median_s(partial(_each, model.predict, [images])) / batch
            print(f"{side:4d} px {task.value:8s} 1-by-1 {one_by_one * 1000:7.1f} ms/img   "
                  f"batch of {batch} {batched * 1000:7.1f} ms/img")


def bench_http(batch: int, env: dict[str, str]) -> None:
    texts = [f"sentence {i}: the quick brown fox jumps over the lazy dog near the river bank"
             for i in range(64)]
    with running_ml_service(env=env) as ml, httpx.Client(base_url=ml.url, timeout=300) as client:
        for size in (1, 8, 32, 64):
            client.post("/v1/embed/text", json={"texts": texts[:size]})
            rounds = max(1, 64 // size)
            seconds = _median_s(partial(_each, partial(_post, client, "/v1/embed/text"),
                                        [{"texts": texts[:size]}] * rounds))
            print(f"text over HTTP, batch {size:2d}: {size * rounds / seconds:7.1f} texts/s")
        photos = _photos()
        for side in (512, 256):
            items = [{"id": str(i), "data": b64(_resized(photos[i % len(photos)], side), "JPEG")}
                     for i in range(batch)]
            client.post("/v1/analyze/images", json={"images": items[:1]}).raise_for_status()
            analyze = partial(_post, client, "/v1/analyze/images")
            singles = _median_s(partial(_each, analyze, [{"images": [x]} for x in items]))
            whole = _median_s(partial(_each, analyze, [{"images": items}]))
            print(f"analyze all tasks over HTTP, {side} px: 1 per request "
                  f"{singles / batch * 1000:6.1f} ms/img, {batch} per request "
                  f"{whole / batch * 1000:6.1f} ms/img")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8, help="images per batch")
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--threads", type=int, help="ML_CPU_THREADS (default: the service's)")
    args = parser.parse_args()
    env = {"ML_CPU_THREADS": str(args.threads)} if args.threads else {}
    os.environ.update(env)
    print(f"load average before: {os.getloadavg()}, threads: {MLSettings().cpu_threads}")
    if not args.skip_models:
        bench_models(args.batch)
    if not args.skip_http:
        bench_http(args.batch, env)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
