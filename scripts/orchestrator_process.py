"""An orchestrator process for benchmarks and the demo's kind of scripts: `python -m orchestrator` on a free
loopback port with its own DATA_DIR, waited for (/health), stopped at the end."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from scripts.ml_process import REPO, free_port, stop_process, wait_ready


@contextmanager
def orchestrator_process(
    data_dir: Path,
    ml_url: str,
    roots: list[Path] | None = None,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    timeout_s: float = 120.0,
) -> Iterator[str]:
    """Yield the base URL of a ready orchestrator; `env` adds or overrides settings."""
    port = free_port()
    proc_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_DIR": str(data_dir),
        "ALLOWED_ROOTS": ",".join(str(r) for r in roots or []),
        "ML_SERVICE_URL": ml_url,
        "LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    log_path = log_path or data_dir.parent / "orchestrator.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator"],
            cwd=REPO,
            env=proc_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, timeout_s, path="/health", log_path=log_path)
        yield base
    finally:
        stop_process(proc)
