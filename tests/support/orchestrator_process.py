"""A real orchestrator process (`python -m orchestrator`) for tests that kill it, restart it, or take away
its write access to the vector store.

Run by root, it serves as the unprivileged user "nobody" (tests/support/unprivileged_orchestrator.py), as in
its container: root passes every permission check, so a store directory made read-only would not fail a
single write. Whatever it is to read or write (the tree, DATA_DIR) must then be that user's: `give_away`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from scripts.ml_process import REPO, stop_process, wait_ready
from tests.support.restricted_orchestrator import unprivileged_ids

_READY_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 30.0


def give_away(*roots: Path) -> None:
    """Make the trees the orchestrator's user's (a no-op unless this process is root)."""
    ids = unprivileged_ids()
    if ids is None:
        return
    for root in roots:
        for path in [root, *root.rglob("*")]:
            os.chown(path, *ids, follow_symlinks=False)


def start_orchestrator(env: Mapping[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start the orchestrator with `env` added to this environment (DATA_DIR, PORT, ...) and wait until its
    /health answers (bounded; a process that exits first fails at once, with its log's tail)."""
    child_env = {
        **os.environ,
        "HOME": str(cwd),
        "PYTHONPATH": str(REPO),
        "HOST": "127.0.0.1",
        **env,
    }
    ids = unprivileged_ids()
    command = [sys.executable, "-m", "orchestrator"]
    if ids is not None:
        command = [sys.executable, "-m", "tests.support.unprivileged_orchestrator", str(ids[0]), str(ids[1])]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, env=child_env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_ready(f"http://127.0.0.1:{env['PORT']}", proc, _READY_TIMEOUT_S, path="/health", log_path=log)
    except BaseException:
        kill(proc)
        raise
    return proc


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL (no shutdown code runs), and reap it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=_STOP_TIMEOUT_S)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful shutdown: the store is closed), SIGKILL if it does not end in time."""
    stop_process(proc, _STOP_TIMEOUT_S)
