"""Measure the compute batch of a padded text model on this machine: texts/s of one merged batch run as
length-sorted sub-batches of each size, against the whole batch in one padded pass.

    python scripts/measure_compute_batch.py [--model text|image_text] [--path DIR] [--device cpu|cuda]
        [--texts 128] [--sizes 4,8,16,32,64] [--rounds 5] [--json]

``text``: a sentence-transformers directory (default: the packaged MiniLM); ``image_text``: a CLIP directory
(``--path`` needed). Sizes run interleaved, round after round, and the medians are compared (the machine is
shared). The defaults in the models (``default_compute_batch``) come from this script; ML_COMPUTE_BATCH
overrides them. The last line printed is one JSON object; ``best`` is the fastest size, ``chosen`` the
smallest size within ``--tolerance`` of it (smaller passes keep a lone request's latency and memory low).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml_service.config import packaged_text_model
from ml_service.models.clip import ClipModel
from ml_service.models.text import TextEmbedder
from scripts.news_sentences import sentences

Padded = TextEmbedder | ClipModel


def build(kind: str, path: Path | None, device: Literal["cpu", "cuda"], threads: int) -> Padded:
    """The model, loaded, with room for a batch of every measured size (max_batch is the request limit)."""
    model: Padded
    if kind == "image_text":
        if path is None:
            raise SystemExit("--model image_text needs --path (a CLIP directory)")
        model = ClipModel(path, device=device, max_batch=1024, threads=threads)
    else:
        model = TextEmbedder(path or packaged_text_model(), device=device, max_batch=1024, threads=threads)
    model.load()
    return model


def measure(
    model: Padded, texts: list[str], sizes: list[int], rounds: int, clock: str, stock: bool
) -> dict[str, float]:
    """Median texts/s of ``model.predict(texts)`` per compute batch size (``len(texts)``: one pass), keyed
    ``"<size>"``; with ``stock``, also the text model's sentence-transformers path without packing
    (``"stock:<size>"``). ``clock``: ``wall``, or ``cpu`` (process CPU time: steadier on a busy machine)."""
    tick = time.process_time if clock == "cpu" else time.perf_counter
    packed = getattr(model, "_packed", None)
    variants = [(str(size), size, packed) for size in sizes]
    if stock and packed is not None:
        variants += [(f"stock:{size}", size, None) for size in sizes]
    runs: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for round_no in range(rounds + 1):  # round 0 warms up: first passes of each shape allocate
        for name, size, runtime in variants:
            model.configured_compute_batch = size
            if packed is not None:
                model._packed = runtime  # type: ignore[union-attr]
            started = tick()
            results = model.predict(texts)
            if round_no:
                runs[name].append(len(texts) / (tick() - started))
            if not all(r.ok for r in results):
                raise RuntimeError(f"{name}: {[r.error for r in results if not r.ok][:3]}")
    if packed is not None:
        model._packed = packed  # type: ignore[union-attr]
    return {name: statistics.median(values) for name, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("text", "image_text"), default="text")
    parser.add_argument("--path", type=Path, help="the model directory (text: default the packaged MiniLM)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--texts", type=int, default=128, help="texts in the merged batch")
    parser.add_argument("--sizes", default="4,8,16,32,64", help="compute batch sizes to compare")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--tolerance", type=float, default=0.03, help="share of the best a smaller size may lose"
    )
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: on a busy machine")
    parser.add_argument("--stock", action="store_true", help="also sentence-transformers' path, unpacked")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the service sets it (registry.load_all)
    model = build(args.model, args.path, args.device, args.threads)
    texts = sentences(args.texts, seed=11)
    sizes = sorted({*(int(s) for s in args.sizes.split(",")), len(texts)})
    rates = measure(model, texts, sizes, args.rounds, args.clock, args.stock)
    best = max(sizes, key=lambda s: rates[str(s)])
    chosen = min(s for s in sizes if rates[str(s)] >= (1 - args.tolerance) * rates[str(best)])
    one_pass = rates[str(len(texts))]
    result: dict[str, Any] = {
        "model": args.model,
        "name": model.name,
        "device": model.device,
        "threads": args.threads,
        "texts": len(texts),
        "packed": getattr(model, "_packed", None) is not None,
        "clock": args.clock,
        "texts_per_s": {name: round(rate, 1) for name, rate in rates.items()},
        "one_pass_per_s": round(one_pass, 1),
        "best": best,
        "chosen": chosen,
        "chosen_vs_one_pass": round(rates[str(chosen)] / one_pass, 2),
        "load_average": round(os.getloadavg()[0], 2),
    }
    if not args.json:
        for name, rate in rates.items():
            print(f"compute batch {name:>10}: {rate:7.1f} texts/s ({args.clock} clock)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
