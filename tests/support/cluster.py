"""Worker processes of the distributed mode (`archivist worker`) for tests and benchmarks.

Each worker is a real process (`python -m orchestrator.cli worker`) with its own DATA_DIR (its node-local
result cache, decode pool and scratch index), talking to the shared PostgreSQL, Qdrant server and ML service.
Its JSON log goes to a file whose lines a test can read (`events`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import blake3
from qdrant_client import AsyncQdrantClient

from orchestrator.clients.vectors_qdrant import QdrantServerVectorStore
from orchestrator.ids import point_id

REPO = Path(__file__).resolve().parents[2]
WORDS = ("harbour", "lantern", "orchard", "glacier", "meadow", "quarry", "violin", "compass", "ember", "tide")
_STOP_S = 20.0


@dataclass(slots=True)
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The worker's JSON log lines so far (those named `event`, if given)."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (event is None or record.get("event") == event):
                found.append(record)
        return found

    def kill(self) -> None:
        """kill -9: no goodbye to PostgreSQL, its tasks stay `doing` until its heartbeat is stale."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(_STOP_S)

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen one must run to hear SIGTERM
            self.process.terminate()
            try:
                self.process.wait(_STOP_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(_STOP_S)
        self._log.close()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def make_documents(root: Path, directories: int, per_directory: int, tag: str) -> dict[str, str]:
    """Distinct one-passage text files; path -> expected point id."""
    expected = {}
    for d in range(directories):
        folder = root / f"d{d:03d}"
        folder.mkdir(parents=True)
        for i in range(per_directory):
            n = d * per_directory + i
            words = " ".join(WORDS[(n // 10**k) % 10] for k in range(4))
            text = f"Note {tag} {n}: the {words} were counted on day {n % 365} of the survey.\n"
            path = folder / f"note{i:04d}.txt"
            path.write_text(text)
            expected[str(path)] = point_id(blake3.blake3(text.encode()).hexdigest(), 0)
    return expected


async def point_ids(qdrant_url: str, collection: str) -> set[str]:
    """Every point id in a collection of the shared Qdrant server."""
    store = QdrantServerVectorStore(AsyncQdrantClient(url=qdrant_url))
    try:
        ids: set[str] = set()
        offset: str | None = None
        while True:
            page, offset = await store.scroll(collection, None, 1000, offset)
            ids.update(p.id for p in page)
            if offset is None:
                return ids
    finally:
        await store.close()


def start_worker(name: str, data_dir: Path, env: Mapping[str, str]) -> WorkerProcess:
    """Start `archivist worker` with `env` over this process's environment and DATA_DIR=`data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "worker.log"
    log = log_path.open("ab")
    full = {**os.environ, "LOG_JSON": "true", **env, "DATA_DIR": str(data_dir)}
    process = subprocess.Popen(
        [sys.executable, *_profiler(data_dir), "-m", "orchestrator.cli", "worker"],
        cwd=REPO,
        env=full,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return WorkerProcess(name, process, log_path, log)


def _profiler(data_dir: Path) -> list[str]:
    """ARCHIVIST_PROFILE_WORKERS=1: each worker runs under cProfile (`worker.prof` in its DATA_DIR, written
    when it stops cleanly): where a worker's CPU goes (scripts/bench_distributed.py --profile)."""
    if os.environ.get("ARCHIVIST_PROFILE_WORKERS") != "1":
        return []
    return ["-m", "cProfile", "-o", str(data_dir / "worker.prof")]
