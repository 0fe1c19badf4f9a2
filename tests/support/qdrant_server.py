"""Run the stand-in Qdrant server (scripts/qdrant_standin.py) as a subprocess, for tests and benchmarks.

    with running_qdrant_standin() as qdrant:      # qdrant.url == "http://127.0.0.1:<free port>"
        store = open_vector_store(data_dir, qdrant.url, None)    # or QDRANT_URL=qdrant.url for a process
        qdrant.received()                         # the requests it served: method, path, query

One process on a free loopback port, waited for (bounded) until /readyz answers 200; its log goes to a
temporary file whose tail is in the error when it fails to start. Several orchestrator processes pointed at
its URL share one store, as they would share a Qdrant server. Stopped (SIGTERM, then SIGKILL) on exit, also
when the caller already stopped it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from scripts.ml_process import REPO, free_port, stop_process, wait_ready

# It imports FastAPI, uvicorn and qdrant-client (~1-2 s on 2 idle cores); the bound matters only when
# something is wrong, and a busy shared machine can take several times as long.
READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class QdrantStandIn:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def __str__(self) -> str:
        return self.url

    def received(self) -> list[dict[str, Any]]:
        """The requests served so far, oldest first: {"method", "path", "query"} (GET /admin/requests)."""
        answer = httpx.get(f"{self.url}/admin/requests", timeout=10.0)
        answer.raise_for_status()
        requests: list[dict[str, Any]] = answer.json()
        return requests

    def stop(self) -> None:
        """Stop the server now (a test of an unreachable store); idempotent."""
        stop_process(self.process, _STOP_TIMEOUT_S)


@contextmanager
def running_qdrant_standin(
    path: Path | None = None, *, ready_timeout_s: float = READY_TIMEOUT_S
) -> Iterator[QdrantStandIn]:
    """Start the stand-in (points in memory, or under `path`), yield it once ready, stop it at the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "scripts.qdrant_standin", "--host", "127.0.0.1", "--port", str(port)]
    if path is not None:
        command += ["--path", str(path)]
    log_file: IO[bytes] = tempfile.NamedTemporaryFile(  # closed in the finally below
        prefix="qdrant-standin-", suffix=".log", delete=False
    )
    log_path = Path(log_file.name)
    process = subprocess.Popen(
        command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
    )
    try:
        wait_ready(url, process, ready_timeout_s, path="/readyz", log_path=log_path)
        yield QdrantStandIn(url, process, log_path)
    finally:
        stop_process(process, _STOP_TIMEOUT_S)
        log_file.close()
        log_path.unlink(missing_ok=True)
