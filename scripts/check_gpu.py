"""The ML service's GPU paths in one short run, for a machine with a GPU (none is here).

    python scripts/check_gpu.py          # ~1 min; last line JSON

On a machine without one it runs the same steps on the CPU (what CI can check) and says so. Checks:
device resolution, half precision, the text model loaded on the device with its batch limit sized from
measured memory, its vectors against the CPU's (cosine) and its speed, a real CUDA allocation failure
recognised as out-of-memory, memory given back on unload, and a tiny random CLIP on the device. Then run
``python scripts/bench_ml.py --json`` there too.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    import torch

    from ml_service.config import packaged_text_model
    from ml_service.device import cuda_free_bytes, is_out_of_memory, release_memory, resolve_device
    from ml_service.models.base import Image
    from ml_service.models.clip import ClipModel
    from ml_service.models.text import TextEmbedder
    from tests.ml_service.tiny_clip import save_tiny_clip

    report: dict[str, Any] = {"cuda_available": torch.cuda.is_available(), "device": resolve_device("auto")}
    if report["device"] == "cuda":
        report["gpu"] = torch.cuda.get_device_name(0)
        report["free_mb_before"] = round(cuda_free_bytes() / 2**20)
    texts = [f"sentence {i} about rivers, markets and a storm over the harbour" for i in range(256)]
    cpu = TextEmbedder(packaged_text_model(), device="cpu", threads=os.cpu_count() or 1)
    cpu.load()
    reference = np.stack([r.value for r in cpu.predict(texts[:32]) if r.value is not None])
    started = time.perf_counter()
    text = TextEmbedder(packaged_text_model(), device="auto")
    text.load()
    report["text"] = {
        "load_s": round(time.perf_counter() - started, 2),
        "device": text.device,
        "half": text.half,
        "version_differs_from_cpu": text.version != cpu.version,
        "per_item_mb": None if text.per_item_bytes is None else round(text.per_item_bytes / 2**20, 3),
        "max_batch": text.max_batch,
        "preferred_batch": text.preferred_batch,
    }
    vectors = np.stack([r.value for r in text.predict(texts[:32]) if r.value is not None])
    report["text"]["min_cosine_vs_cpu"] = round(float(np.min(np.sum(vectors * reference, axis=1))), 5)
    for size in (1, text.max_batch):
        batch = texts[:size] * max(1, size // len(texts[:size]))
        started = time.perf_counter()
        for _ in range(5):
            text.predict(batch)
        report["text"][f"per_s_batch_{size}"] = round(5 * len(batch) / (time.perf_counter() - started), 1)
    # A real CUDA allocation failure is recognised as out-of-memory (what makes the batcher split).
    if text.device == "cuda":
        try:
            torch.empty(cuda_free_bytes() * 2, dtype=torch.uint8, device="cuda")
            report["text"]["oom_recognised"] = "no error raised"
        except Exception as exc:
            report["text"]["oom_recognised"] = is_out_of_memory(exc)
            report["text"]["oom_type"] = type(exc).__name__
        release_memory("cuda")
    text.unload()
    if report["device"] == "cuda":
        report["free_mb_after_unload"] = round(cuda_free_bytes() / 2**20)
    with tempfile.TemporaryDirectory() as folder:
        clip = ClipModel(save_tiny_clip(Path(folder) / "tiny-clip"), device="auto")
        clip.load()
        pixels = np.random.default_rng(0).integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)
        images = [Image(rgb=p, bgr=p[..., ::-1].copy(), width=64, height=64) for p in pixels]
        out = clip.predict([*images, "a photo of a cat"])
        report["clip"] = {
            "device": clip.device,
            "half": clip.half,
            "max_batch": clip.max_batch,
            "all_ok": all(r.ok for r in out),
            "norms": sorted({round(float(np.linalg.norm(r.value)), 3) for r in out if r.value is not None}),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
