"""A real orchestrator process that runs as an unprivileged user (root passes every permission check, which
would hide what a mode-000 file or directory does to a job), over a tree outside pytest's tmp (whose
parents are 0700 root).

Run by root, the process drops to "nobody" (tests/support/unprivileged_orchestrator.py) and the tree is
handed to that user; run by anyone else, it runs as that user."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from scripts.ml_process import REPO, free_port, log_tail, stop_process, wait_ready


def unprivileged_ids() -> tuple[int, int] | None:
    """(uid, gid) to switch to when running as root; None when this process already is unprivileged."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


@contextmanager
def restricted_base(prefix: str) -> Iterator[Path]:
    """A fresh world-traversable directory; removed at the end (modes restored first)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        base.chmod(0o755)
        yield base
    finally:
        for path in [base, *base.rglob("*")]:  # a mode-000 directory or file left by a test
            if not path.is_symlink():
                path.chmod(0o700)
        shutil.rmtree(base, ignore_errors=True)


def hand_over(base: Path) -> None:
    """Give the whole tree to the unprivileged user (links themselves, not what they point to)."""
    ids = unprivileged_ids()
    if ids is not None:
        for path in [base, *base.rglob("*")]:
            os.chown(path, *ids, follow_symlinks=False)


@contextmanager
def restricted_orchestrator(
    base: Path, ml_url: str, env: Mapping[str, str] | None = None
) -> Iterator[httpx.Client]:
    """`python -m orchestrator` as the unprivileged user: DATA_DIR `base/data`, ALLOWED_ROOTS `base/media`,
    the settings in `env` on top; a client for its API once it is healthy. Stopped at the end."""
    port = free_port()
    log_path = base / "orchestrator.log"
    child_env = {
        **os.environ,
        "HOME": str(base),
        "PYTHONPATH": str(REPO),
        "DATA_DIR": str(base / "data"),
        "ALLOWED_ROOTS": str(base / "media"),
        "ML_SERVICE_URL": ml_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        **(env or {}),
    }
    ids = unprivileged_ids()
    command = [sys.executable, "-m", "orchestrator"]
    if ids is not None:  # root: the process imports what it needs, then setuid/setgid (see that module)
        command = [sys.executable, "-m", "tests.support.unprivileged_orchestrator", str(ids[0]), str(ids[1])]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command, cwd=base, env=child_env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc, 120.0, path="/health", log_path=log_path)
        uid_line = next(
            line
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )
        if ids is not None and uid_line.split()[1] == "0":
            raise RuntimeError(f"the orchestrator still runs as root: {uid_line}")
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client
    finally:
        stop_process(proc)


def wait_job(
    client: httpx.Client, job_id: str, *, timeout_s: float = 240.0, log: Path | None = None
) -> dict[str, Any]:
    """Poll the job until it leaves the active states (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if status["state"] not in ("queued", "running", "paused"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"{status}\n{log_tail(log) if log else ''}")
        time.sleep(0.1)  # polling a condition, bounded by the deadline
