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

REPEATS = 5  # medians of this many runs; the machine is shared, single runs wobble
TEXT_BATCHES = (1, 8, 32, 64, 128)


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


def _medians_s(*runs: Callable[[], object]) -> list[float]:
    """Median seconds of each run; the runs alternate, so load changes hit them alike."""
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(REPEATS):
        for run, spent in zip(runs, times, strict=True):
            started = time.perf_counter()
            run()
            spent.append(time.perf_counter() - started)
    return [statistics.median(spent) for spent in times]


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
            one_by_one, batched = _medians_s(partial(_each, model.predict, [[im] for im in images]),
                                             partial(_each, model.predict, [images]))
            print(f"{side:4d} px {task.value:8s} 1-by-1 {one_by_one / batch * 1000:7.1f} ms/img   "
                  f"batch of {batch} {batched / batch * 1000:7.1f} ms/img")


def bench_http(batch: int, env: dict[str, str]) -> None:
    texts = [f"sentence {i}: the quick brown fox jumps over the lazy dog near the river bank"
             for i in range(max(TEXT_BATCHES))]
    env = {**env, "ML_MAX_BATCH": f'{{"text": {max(TEXT_BATCHES)}}}'}
    with running_ml_service(env=env) as ml, httpx.Client(base_url=ml.url, timeout=300) as client:
        embed = partial(_post, client, "/v1/embed/text")
        runs = []
        for size in TEXT_BATCHES:
            embed({"texts": texts[:size]})
            runs.append(partial(_each, embed, [{"texts": texts[:size]}] * (len(texts) // size)))
        for size, seconds in zip(TEXT_BATCHES, _medians_s(*runs), strict=True):
            print(f"text over HTTP, batch {size:3d}: {len(texts) / seconds:7.1f} texts/s, "
                  f"{seconds / (len(texts) // size) * 1000:6.1f} ms per request")
        photos = _photos()
        for side in (512, 256):
            items = [{"id": str(i), "data": b64(_resized(photos[i % len(photos)], side), "JPEG")}
                     for i in range(batch)]
            client.post("/v1/analyze/images", json={"images": items[:1]}).raise_for_status()
            analyze = partial(_post, client, "/v1/analyze/images")
            singles, whole = _medians_s(partial(_each, analyze, [{"images": [x]} for x in items]),
                                        partial(_each, analyze, [{"images": items}]))
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
