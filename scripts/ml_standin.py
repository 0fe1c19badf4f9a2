"""A stand-in ML service of fixed latency, for benchmarks of the orchestrator's own side
(scripts/bench_distributed.py).

Why it exists: a benchmark of how ingest scales with workers must not be limited by the ML service, and the
real one runs its models on the same 2 CPUs as everything else. This process answers after a fixed sleep
per request (`asyncio.sleep`: latency, not CPU) whatever the batch, so N requests in flight cost N times
nothing; several replicas are several processes (ML_SERVICE_URLS lists them).

It speaks the ML service's protocol (docs/ml-api.md) as far as the orchestrator uses it for text documents:
- GET /ready, /health: always ready; GET /capabilities: one text model ("text", `--dim`-d, the real shape of
  `ModelRegistry.capabilities`), and `/v1/analyze/images` advertised with `--image-batch` as its batch
  limits but no image model and no image task: the orchestrator sizes its inference rounds from the image
  endpoint (`pipeline/negotiate.py`: without one, a round is 1 file), and asks for no image task at all;
  a call there gets the real service's 404 for "no image model";
- POST /v1/embed/text: deterministic unit vectors (seeded by blake2b of each text), one `(n, dim)` array
  as the real service sends it; more than `--text-max-batch` texts is 413, another space or version 404.
Plus (not the real service's): GET /stats counts the requests and items served and which texts (blake2b
digests, so that several replicas' counts can be joined: a text served twice anywhere is a duplicate);
POST /stats/reset clears them.

    python -m scripts.ml_standin --port 8001 --latency-ms 500      (from the repository root)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scripts.ml_process import REPO, free_port, stop_process, wait_ready

MODEL_NAME = "standin-text"
MODEL_VERSION = "standin-1"  # what the collection manifest records: every replica must say the same
DEFAULT_DIM = 384
_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class StandinConfig:
    latency_s: float
    dim: int = DEFAULT_DIM
    text_max_batch: int = 128
    image_batch: int = 8  # 0: no image endpoint advertised


@dataclass(slots=True)
class Served:
    """What this replica answered since it started (or since /stats/reset)."""

    requests: int = 0
    items: int = 0
    texts: Counter[str] = field(default_factory=Counter)  # blake2b digest -> times embedded

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "items": self.items,
            "distinct": len(self.texts),
            "digests": sorted(self.texts),
        }


def text_digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def text_vector(digest: str, dim: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A deterministic unit vector for a text (by its digest)."""
    vector = np.random.default_rng(int(digest, 16)).standard_normal(dim)
    unit: np.ndarray[Any, np.dtype[np.float32]] = (vector / np.linalg.norm(vector)).astype(np.float32)
    return unit


def capabilities(config: StandinConfig) -> dict[str, Any]:
    """The shape of the real service's /capabilities (`ml_service/models/registry.py`), text model only."""
    text_limits = {
        "max_batch": config.text_max_batch,
        "preferred_batch": config.text_max_batch,
        "compute_batch": config.text_max_batch,
        "max_concurrency": 1,
    }
    endpoints: dict[str, Any] = {"/v1/embed/text": text_limits}
    if config.image_batch > 0:
        image_limits = {
            "max_batch": config.image_batch,
            "preferred_batch": config.image_batch,
            "max_concurrency": 1,
        }
        endpoints["/v1/analyze/images"] = image_limits
        endpoints["/api/v1/batch_embed_and_caption"] = image_limits
    return {
        "service": "archivist-ml-standin",
        "version": "0",
        "device": "cpu",
        "models": {
            "text": {
                "task": "text-embedding",
                "name": MODEL_NAME,
                "version": MODEL_VERSION,
                "vector_size": config.dim,
                "max_batch": config.text_max_batch,
                "preferred_batch": config.text_max_batch,
                "max_concurrency": 1,
                "device": "cpu",
                "loaded": True,
                "compute_batch": config.text_max_batch,
            }
        },
        "endpoints": endpoints,
        "image_tasks": [],
        "audio_tasks": [],
        "query_versions": {"text": [MODEL_VERSION]},
    }


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type="application/json",
    )


def _error(status_code: int, detail: str, code: str | None = None) -> Response:
    return _json({"detail": detail} if code is None else {"detail": detail, "code": code}, status_code)


def create_app(config: StandinConfig) -> Starlette:
    served = Served()
    caps = capabilities(config)

    async def ready(_: Request) -> Response:
        return _json({"status": "ready", "models": ["text"]})

    async def health(_: Request) -> Response:
        return _json({"status": "ok"})

    async def get_capabilities(_: Request) -> Response:
        return _json(caps)

    async def embed_text(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(422, "the body is not JSON")
        texts = body.get("texts") if isinstance(body, dict) else None
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not texts:
            return _error(422, "texts: a non-empty list of strings is required")
        if body.get("space", "text") != "text":
            return _error(404, "no image–text model is configured (ML_CLIP_MODEL_PATH)")
        if body.get("version") not in (None, MODEL_VERSION):
            return _error(404, f"version {body.get('version')} is not served", code="version_not_served")
        if len(texts) > config.text_max_batch:
            return _error(413, f"{len(texts)} texts exceed max_batch {config.text_max_batch}")
        await asyncio.sleep(config.latency_s)
        digests = [text_digest(t) for t in texts]
        served.requests += 1
        served.items += len(texts)
        served.texts.update(digests)
        vectors = np.stack([text_vector(d, config.dim) for d in digests])
        return _json({"model": MODEL_NAME, "version": MODEL_VERSION, "dim": config.dim, "vectors": vectors})

    async def no_image_model(_: Request) -> Response:
        return _error(404, "no image model is enabled (ML_IMAGE_TASKS, ML_CLIP_MODEL_PATH)")

    async def stats(_: Request) -> Response:
        return _json(served.snapshot())

    async def reset(_: Request) -> Response:
        served.requests = served.items = 0
        served.texts.clear()
        return _json(served.snapshot())

    return Starlette(
        routes=[
            Route("/ready", ready),
            Route("/health", health),
            Route("/capabilities", get_capabilities),
            Route("/v1/embed/text", embed_text, methods=["POST"]),
            Route("/v1/analyze/images", no_image_model, methods=["POST"]),
            Route("/api/v1/batch_embed_and_caption", no_image_model, methods=["POST"]),
            Route("/stats", stats),
            Route("/stats/reset", reset, methods=["POST"]),
        ]
    )


@dataclass(frozen=True, slots=True)
class MLStandIn:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def running_ml_standins(
    replicas: int, latency_ms: float, image_batch: int = 8, dim: int = DEFAULT_DIM
) -> Iterator[list[MLStandIn]]:
    """`replicas` stand-in processes on free loopback ports, yielded once ready; stopped on exit."""
    with ExitStack() as stack:
        yield [stack.enter_context(_one_standin(latency_ms, image_batch, dim)) for _ in range(replicas)]


@contextmanager
def _one_standin(latency_ms: float, image_batch: int, dim: int) -> Iterator[MLStandIn]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "scripts.ml_standin", "--host", "127.0.0.1", "--port", str(port),
        "--latency-ms", str(latency_ms), "--image-batch", str(image_batch), "--dim", str(dim),
    ]  # fmt: skip
    log_file: IO[bytes] = tempfile.NamedTemporaryFile(  # closed in the finally below
        prefix="ml-standin-", suffix=".log", delete=False
    )
    log_path = Path(log_file.name)
    process = subprocess.Popen(
        command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
    )
    try:
        wait_ready(url, process, _READY_TIMEOUT_S, log_path=log_path)
        yield MLStandIn(url, process)
    finally:
        stop_process(process, _STOP_TIMEOUT_S)
        log_file.close()
        log_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A stand-in ML service of fixed latency (text model only).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency-ms", type=float, default=200.0, help="each embed request's answer time")
    parser.add_argument("--dim", type=int, default=DEFAULT_DIM)
    parser.add_argument("--text-max-batch", type=int, default=128)
    parser.add_argument(
        "--image-batch",
        type=int,
        default=8,
        help="batch limits advertised for /v1/analyze/images (the orchestrator's inference round); 0: none",
    )
    args = parser.parse_args(argv)
    config = StandinConfig(
        latency_s=args.latency_ms / 1000.0,
        dim=args.dim,
        text_max_batch=args.text_max_batch,
        image_batch=args.image_batch,
    )
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
