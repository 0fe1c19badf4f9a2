"""Start the ML service (or the orchestrator) as a real subprocess on a loopback port and wait until it is
ready: the one waiting loop of the demo, the bench scripts and the tests (`tests/support/ml_server.py`).

The wait stops as soon as the answer is final: the process exited, or `/ready` (or `/health`) reports the
`failed` state. The error then carries the service's own reason and the last lines of its log, so a broken
model install is named in seconds instead of after the whole timeout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]

_POLL_START_S = 0.02  # polls back off from here ...
_POLL_MAX_S = 0.5  # ... to here, so a fast start is seen at once and a slow one costs little
_LOG_TAIL_LINES = 30


class ServiceFailed(RuntimeError):
    """The service exited, reported a failed state, or was not ready in time; the message says which."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def log_tail(log_path: Path | None, lines: int = _LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file ("" when there is none)."""
    if log_path is None or not log_path.exists():
        return ""
    with log_path.open("rb") as handle:
        handle.seek(max(0, log_path.stat().st_size - 64_000))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _answer(url: str) -> tuple[int, dict[str, Any]] | None:
    """Status and JSON body (or {} when the body is not a JSON object); None while nothing listens."""
    try:
        resp = httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return None
    try:
        body = resp.json()
    except ValueError:
        body = {}
    return resp.status_code, body if isinstance(body, dict) else {}


def wait_ready(
    url: str,
    proc: subprocess.Popen[bytes] | None,
    timeout_s: float,
    path: str = "/ready",
    log_path: Path | None = None,
) -> None:
    """Poll `url + path` until it answers 200. Raise ServiceFailed at once when the process exits or the
    answer says `"status": "failed"`, and when `timeout_s` passes; the message ends with the log's tail."""
    deadline = time.monotonic() + timeout_s
    delay = _POLL_START_S

    def failed(reason: str) -> ServiceFailed:
        tail = log_tail(log_path)
        return ServiceFailed(f"{url}: {reason}" + (f"\nlast lines of {log_path}:\n{tail}" if tail else ""))

    while True:
        if proc is not None and proc.poll() is not None:
            raise failed(f"the process exited with code {proc.returncode} before it was ready")
        answer = _answer(f"{url}{path}")
        if answer is not None:
            status, body = answer
            if status == 200:
                return
            if body.get("status") == "failed":
                raise failed(f"failed to start: {body.get('error') or body}")
        if time.monotonic() >= deadline:
            raise failed(f"not ready after {timeout_s:.0f} s")
        # Waiting between polls of a condition, not a fixed sleep standing in for one.
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, _POLL_MAX_S)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM (a graceful shutdown), SIGKILL if it has not ended within `timeout_s`; reaped either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def ml_service(
    url: str | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 300.0,
    port: int | None = None,
    log_path: Path | None = None,
) -> Iterator[str]:
    """Yield the URL of a ready ML service: `url` if given (must already run), else a new subprocess."""
    if url:
        wait_ready(url, None, timeout_s)
        yield url
        return
    port = port or free_port()
    proc_env = {**os.environ, "ML_HOST": "127.0.0.1", "ML_PORT": str(port), **(env or {})}
    log = open(log_path, "ab") if log_path else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "ml_service"], cwd=REPO, env=proc_env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, timeout_s, log_path=log_path)
        yield base
    finally:
        stop_process(proc)
        if log is not None:
            log.close()
