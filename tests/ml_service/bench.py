"""Measure the ML service's models and HTTP path; the numbers behind its batch and instance defaults.

    .venv/bin/python -m tests.ml_service.bench            # models in-process, then over HTTP
    .venv/bin/python -m tests.ml_service.bench --text     # also text embedding over HTTP

Not a test (pytest does not collect it): it prints timings on this machine. Run it on new hardware
before changing ``default_max_batch`` / ``default_preferred_batch`` / ``single_item_on_all_threads``
in ml_service/models/.

Image models are compared side by side in one process, runs alternating (the machine is shared):
"before" is one instance on every thread (``ML_IMAGE_INSTANCES=1``, the service before instance
groups), "1 thread" one instance on one thread, "after" the current settings. Over HTTP a "before"
and an "after" service run at once and take turns; their resident memory is read at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
from skimage import data

from ml_service.config import MLSettings
from ml_service.models.base import Image
from ml_service.models.registry import ModelRegistry
from tests.ml_service.media import b64, captioned_scene, rendered_text
from tests.support.ml_server import running_ml_service

REPEATS = 5  # default medians of this many runs; the machine is shared, single runs wobble
TEXT_BATCHES = (1, 8, 32, 64, 128)
BEFORE_ENV = {"ML_IMAGE_INSTANCES": "1"}
_repeats = REPEATS


def _photos() -> list[np.ndarray[Any, Any]]:
    loaders: list[Callable[[], Any]] = [data.astronaut, data.chelsea, data.coffee, data.rocket]
    banner = np.asarray(rendered_text("BREAKING NEWS: FLOOD IN VALENCIA"))
    return [*(np.asarray(load()) for load in loaders), banner]


def _resized(rgb: np.ndarray[Any, Any], side: int) -> np.ndarray[Any, Any]:
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    size = (round(w * scale), round(h * scale))
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


def image_sets(batch: int) -> Iterator[tuple[str, list[np.ndarray[Any, Any]]]]:
    """(name, RGB images): small captioned scenes like the pipeline benchmark's, and 512 px photos."""
    yield "320x240 scenes", [captioned_scene(i) for i in range(batch)]
    photos = _photos()
    yield "512 px photos", [_resized(photos[i % len(photos)], 512) for i in range(batch)]


def _image(rgb: np.ndarray[Any, Any]) -> Image:
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    return Image(rgb=rgb, bgr=bgr, width=rgb.shape[1], height=rgb.shape[0])


def _steps(call: Callable[[Any], object], arguments: list[Any]) -> list[Callable[[], object]]:
    return [partial(call, argument) for argument in arguments]


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> None:
    client.post(path, json=body).raise_for_status()


def _medians_s(*runs: Sequence[Callable[[], object]]) -> list[float]:
    """Median seconds of each run (a list of steps), over repeats.

    The runs are interleaved step by step (step 1 of every run, then step 2, ...), in an order
    reversed every other repeat, so a change of load on the shared machine hits them alike.
    """
    times: list[list[float]] = [[] for _ in runs]
    for repeat in range(_repeats):
        spent = [0.0] * len(runs)
        order = list(range(len(runs)))[:: -1 if repeat % 2 else 1]
        for step in range(max(len(run) for run in runs)):
            for index in order:
                if step < len(runs[index]):
                    started = time.perf_counter()
                    runs[index][step]()
                    spent[index] += time.perf_counter() - started
        for index, seconds in enumerate(spent):
            times[index].append(seconds)
    return [statistics.median(spent) for spent in times]


def _registry(**overrides: Any) -> ModelRegistry:
    registry = ModelRegistry.from_settings(MLSettings(text_enabled=False, **overrides))
    registry.load_all()
    return registry


def bench_models(batch: int) -> None:
    started = time.perf_counter()
    variants = {
        "before": _registry(image_instances=1),
        "1 thread": _registry(image_instances=1, image_instance_threads=1),
        "after": _registry(),
    }
    print(f"3 x load: {time.perf_counter() - started:.1f} s; after: {variants['after'].load_seconds}")
    for task, group in variants["after"].image.items():
        print(
            f"  {task.value}: {group.instances} instances x {group.threads} threads, "
            f"a lone image on {group.single_threads}"
        )
    names = list(variants)
    print(
        "ms per image      "
        + "".join(f"{'1-by-1 ' + n:>16}" for n in names)
        + "".join(f"{f'batch {batch} ' + n:>16}" for n in ("before", "after"))
    )
    for set_name, pixels in image_sets(batch):
        images = [_image(rgb) for rgb in pixels]
        for task in variants["after"].image:
            groups = [variants[name].image[task] for name in names]
            for group in groups:
                group.predict(images[:3])  # warm caches and lazily built graphs
            singles = [_steps(group.predict, [[im] for im in images]) for group in groups]
            batches = [[partial(group.predict, images)] for group in (groups[0], groups[-1])]
            ms = [s / batch * 1000 for s in _medians_s(*singles, *batches)]
            print(f"{set_name[:6]} {task.value:8s}  " + "".join(f"{v:16.1f}" for v in ms))
    for registry in variants.values():
        registry.close()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def bench_http_images(batch: int, env: dict[str, str]) -> None:
    """/v1/analyze/images, every task, 1 vs ``batch`` images a request, before vs after."""
    with ExitStack() as stack:
        services = {
            name: stack.enter_context(running_ml_service(env=extra))
            for name, extra in (("before", {**env, **BEFORE_ENV}), ("after", env))
        }
        clients = {
            name: stack.enter_context(httpx.Client(base_url=ml.url, timeout=300))
            for name, ml in services.items()
        }
        for set_name, pixels in image_sets(batch):
            items = [{"id": str(i), "data": b64(rgb, "JPEG")} for i, rgb in enumerate(pixels)]
            analyze = {name: partial(_post, client, "/v1/analyze/images") for name, client in clients.items()}
            for call in analyze.values():
                call({"images": items[:3]})  # warm up
            singles = [_steps(call, [{"images": [x]} for x in items]) for call in analyze.values()]
            whole = [[partial(call, {"images": items})] for call in analyze.values()]
            ms = [s / batch * 1000 for s in _medians_s(*singles, *whole)]
            print(
                f"analyze all tasks over HTTP, {set_name}, ms/img: "
                f"before 1/request {ms[0]:6.1f}, {batch}/request {ms[2]:6.1f}; "
                f"after 1/request {ms[1]:6.1f}, {batch}/request {ms[3]:6.1f}"
            )
        rss = {name: _rss_mb(ml.process.pid) for name, ml in services.items()}
        print(
            f"resident memory after the runs: before {rss['before']:.0f} MB, after "
            f"{rss['after']:.0f} MB (+{rss['after'] - rss['before']:.0f} MB)"
        )


def bench_http_text(env: dict[str, str]) -> None:
    texts = [
        f"sentence {i}: the quick brown fox jumps over the lazy dog near the river bank"
        for i in range(max(TEXT_BATCHES))
    ]
    env = {**env, "ML_IMAGE_TASKS": "", "ML_MAX_BATCH": f'{{"text": {max(TEXT_BATCHES)}}}'}
    with running_ml_service(env=env) as ml, httpx.Client(base_url=ml.url, timeout=300) as client:
        embed = partial(_post, client, "/v1/embed/text")
        runs = []
        for size in TEXT_BATCHES:
            embed({"texts": texts[:size]})
            runs.append(_steps(embed, [{"texts": texts[:size]}] * (len(texts) // size)))
        for size, seconds in zip(TEXT_BATCHES, _medians_s(*runs), strict=True):
            print(
                f"text over HTTP, batch {size:3d}: {len(texts) / seconds:7.1f} texts/s, "
                f"{seconds / (len(texts) // size) * 1000:6.1f} ms per request"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8, help="images per batch")
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--text", action="store_true", help="also text embedding over HTTP")
    parser.add_argument("--threads", type=int, help="ML_CPU_THREADS (default: the service's)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs per median")
    args = parser.parse_args()
    global _repeats
    _repeats = args.repeats
    env = {"ML_CPU_THREADS": str(args.threads)} if args.threads else {}
    # Image and text numbers only: the audio models (tests/ml_service/bench_audio.py) stay unloaded.
    env |= {"ML_ASR_ENABLED": "false", "ML_VOICES_ENABLED": "false"}
    os.environ.update(env)
    print(f"load average before: {os.getloadavg()}, threads: {MLSettings().cpu_threads}")
    if not args.skip_models:
        bench_models(args.batch)
    if not args.skip_http:
        bench_http_images(args.batch, {**env, "ML_TEXT_ENABLED": "false"})
        if args.text:
            bench_http_text(env)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
