"""Run the real ML service (``python -m ml_service``) as a subprocess for tests.

    with running_ml_service() as ml:          # ml.url == "http://127.0.0.1:<free port>"
        httpx.get(f"{ml.url}/capabilities")
        ml.process.kill()                     # a test may kill it; exit still cleans up

Startup is awaited by polling /ready (bounded); the service's JSON log goes to a temporary file
whose tail is put into the error when the service fails to start.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NamedTuple

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]

# Loading every default model takes ~7 s on 2 idle cores; a busy shared machine can take several
# times that. The bound only matters when something is wrong.
DEFAULT_READY_TIMEOUT_S = 180.0
_POLL_START_S = 0.02  # polls back off from here ...
_POLL_MAX_S = 0.5  # ... to here, so a fast start is seen at once and a slow one costs little
_STOP_TIMEOUT_S = 15.0
_LOG_TAIL_BYTES = 4000


class MLServiceFailed(RuntimeError):
    """The service exited, reported failed models, or was not ready in time."""


class MLService(NamedTuple):
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def __str__(self) -> str:
        return self.url


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(port: int, path: str) -> tuple[int, dict[str, object]] | None:
    """Status and JSON body, or None while nothing accepts connections."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    except (ConnectionError, TimeoutError, http.client.HTTPException, OSError):
        return None
    finally:
        conn.close()
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {"raw": body[:200].decode("latin-1")}
    return response.status, parsed if isinstance(parsed, dict) else {"raw": parsed}


def _tail(log_path: Path) -> str:
    with log_path.open("rb") as handle:
        handle.seek(max(0, log_path.stat().st_size - _LOG_TAIL_BYTES))
        return handle.read().decode("utf-8", errors="replace")


def wait_until_ready(port: int, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    """Poll /ready until 200; fail fast if the process exits or /health reports failed models."""
    deadline = time.monotonic() + timeout_s
    delay = _POLL_START_S
    while True:
        if process.poll() is not None:
            raise MLServiceFailed(
                f"ML service exited with code {process.returncode} before it was "
                f"ready; log tail:\n{_tail(log_path)}"
            )
        answer = _get(port, "/ready")
        if answer is not None:
            status, body = answer
            if status == 200:
                return
            if body.get("status") == "failed":
                raise MLServiceFailed(
                    f"ML service failed to load models: {body.get('error')}; log tail:\n{_tail(log_path)}"
                )
        if time.monotonic() >= deadline:
            raise MLServiceFailed(
                f"ML service on port {port} not ready after {timeout_s:.0f} s; log tail:\n{_tail(log_path)}"
            )
        # Waiting between polls of a condition, not a fixed sleep standing in for one.
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, _POLL_MAX_S)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()  # uvicorn shuts down gracefully on SIGTERM
    try:
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


# Every model off: a service for one backend's test turns on only what that test needs.
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
