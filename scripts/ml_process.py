"""Start the ML service as a real subprocess on a free loopback port and wait until it is ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(
    url: str, proc: subprocess.Popen[bytes] | None, timeout_s: float, path: str = "/ready"
) -> None:
    """Poll `path` until it answers 200; fail at once if the process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}{path}", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.25)  # not listening yet
            continue
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s")


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
        wait_ready(base, proc, timeout_s)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log is not None:
            log.close()
