"""The servers scripts/bench_peer.py compares, each on its own loopback port, one at a time: the Archivist ML
service, Infinity, and optionally LitServe, all serving the same local MiniLM directory on the CPU, offline.

Each peer lives in a virtual environment of its own beside the project's (``.venv-peers/<name>``, gitignored),
made here with pip from the package registry at the versions pinned below (resolved on this machine kind,
Linux x86_64, Python 3.11) and with the project's own CPU torch (the ``torch`` line of requirements/lock.txt):
a peer never shares the project's lock, and a second run reuses its environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scripts.ml_process import free_port, ml_service, stop_process, wait_ready

REPO = Path(__file__).resolve().parents[1]
PEERS_DIR = REPO / ".venv-peers"
SERVED_NAME = "minilm"  # the model name the peers serve the directory under

INFINITY_VERSION = "0.0.78"
LITSERVE_VERSION = "0.2.19"
# What `pip install torch==<lock> "infinity-emb[server,torch]==0.0.78"` resolved on 2026-12-07 (pip freeze),
# pinned so that a later run measures the same server.
INFINITY_PINS: tuple[str, ...] = (
    f"infinity-emb[server,torch]=={INFINITY_VERSION}",
    "sentence-transformers==3.4.1",
    "transformers==4.57.6",
    "tokenizers==0.22.2",
    "huggingface-hub==0.36.2",
    "safetensors==0.8.0",
    "numpy==1.26.4",
    "fastapi==0.165.0",
    "starlette==1.10.0",
    "uvicorn==0.32.1",
    "uvloop==0.23.0",
    "httptools==0.9.0",
    "orjson==3.13.0",
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "typer==0.12.5",
    "rich==13.9.4",
    "prometheus-fastapi-instrumentator==8.1.0",
    "posthog==7.91.1",
    "scikit-learn==1.9.1",
    "scipy==1.17.1",
)
# LitServe around the project's own sentence-transformers (the lock's versions): the serving glue is what
# differs (scripts/peer_litserve.py).
LITSERVE_PINS: tuple[str, ...] = (f"litserve=={LITSERVE_VERSION}",)
_LOCK_PACKAGES = (
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "huggingface-hub",
    "safetensors",
    "numpy",
)


@dataclass(frozen=True, slots=True)
class Server:
    """A running server: where to send texts and how to wrap them."""

    name: str
    url: str
    path: str  # the embedding route
    kind: str  # "archivist" (``{"texts": [...]}``), "openai" (``{"model", "input"}``) or "litserve"
    pid: int  # the server's main process (its CPU time is counted with its descendants')


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process ``root`` and every live descendant (Linux /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(pid, 0.0) for pid in tree)


def listening_pid(port: int) -> int:
    """The pid listening on ``port`` on loopback (Linux /proc): the service ml_process.py started."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    raise LookupError(f"nothing listens on port {port}")


def lock_pin(package: str) -> str:
    """``package==version`` as requirements/lock.txt pins it (torch: the CPU build, ``2.13.0+cpu``)."""
    for line in (REPO / "requirements" / "lock.txt").read_text().splitlines():
        name, _, rest = line.partition("==")
        if name.strip().lower() == package:
            return f"{package}=={rest.split()[0]}"
    raise LookupError(f"{package} is not in requirements/lock.txt")


def torch_sources() -> list[str]:
    """Where pip finds the CPU torch: the wheel on this machine kind's disk, else PyTorch's CPU index (as
    scripts/pkg_sources.sh; TORCH_CPU_INDEX may name a mirror)."""
    if Path("/opt/wheels").is_dir():
        return ["--find-links", "/opt/wheels"]
    return ["--extra-index-url", os.environ.get("TORCH_CPU_INDEX", "https://download.pytorch.org/whl/cpu")]


def prepare_env(name: str, pins: tuple[str, ...], check: str) -> Path:
    """``.venv-peers/<name>`` with ``pins`` and the lock's torch; ``check`` (Python) must run in it. Kept when
    it already passes the check; the install is pip's, so a half-made environment is completed."""
    env_dir = PEERS_DIR / name
    python = env_dir / "bin" / "python"
    if python.exists() and _runs(python, check):
        return env_dir
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    command = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *torch_sources()]
    subprocess.run([*command, lock_pin("torch"), *pins], check=True)
    if not _runs(python, check):
        raise RuntimeError(f"{env_dir}: installed, but `{check}` fails")
    return env_dir


def prepare_infinity() -> Path:
    return prepare_env("infinity", INFINITY_PINS, "import infinity_emb, torch")


def prepare_litserve() -> Path:
    pins = (*LITSERVE_PINS, *(lock_pin(p) for p in _LOCK_PACKAGES))
    return prepare_env("litserve", pins, "import litserve, sentence_transformers")


def env_versions(env_dir: Path, packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``packages`` in the environment (importlib.metadata, run there)."""
    code = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    )
    out = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", code, *packages], check=True, capture_output=True, text=True
    )
    versions: dict[str, str] = json.loads(out.stdout)
    return versions


def _runs(python: Path, code: str) -> bool:
    return subprocess.run([str(python), "-c", code], capture_output=True).returncode == 0


def offline_env(threads: int) -> dict[str, str]:
    """Every server: no hub, no telemetry, ``threads`` intra-op threads."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }


@contextmanager
def archivist(model_dir: Path, threads: int, log: Path) -> Iterator[Server]:
    """The ML service with the sentence-transformers backend on ``model_dir`` and nothing else."""
    env = {
        "ML_TEXT_BACKEND": "sentence-transformers",
        "ML_TEXT_MODEL_PATH": str(model_dir),
        "ML_IMAGE_TASKS": "",
        "ML_ASR_ENABLED": "false",
        "ML_VOICES_ENABLED": "false",
        "ML_DEVICE": "cpu",
        "ML_CPU_THREADS": str(threads),
        "ML_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    with ml_service(env=env, log_path=log, timeout_s=300.0) as url:
        port = int(url.rsplit(":", 1)[1])
        yield Server("archivist", url, "/v1/embed/text", "archivist", listening_pid(port))


@contextmanager
def infinity(env_dir: Path, model_dir: Path, threads: int, log: Path) -> Iterator[Server]:
    """Infinity's v2 server (torch engine, its default batch of 32, no vector cache) on ``model_dir``."""
    port = free_port()
    command = [
        str(env_dir / "bin" / "infinity_emb"),
        "v2",
        "--model-id",
        str(model_dir),
        "--served-model-name",
        SERVED_NAME,
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--no-vector-disk-cache",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with _process(command, offline_env(threads), log, f"http://127.0.0.1:{port}", "/health") as (url, pid):
        yield Server("infinity", url, "/embeddings", "openai", pid)


@contextmanager
def litserve(env_dir: Path, model_dir: Path, threads: int, log: Path) -> Iterator[Server]:
    """scripts/peer_litserve.py under LitServe in its environment."""
    port = free_port()
    app = REPO / "scripts" / "peer_litserve.py"
    command = [str(env_dir / "bin" / "python"), str(app), str(model_dir), str(port), str(threads)]
    with _process(command, offline_env(threads), log, f"http://127.0.0.1:{port}", "/health") as (url, pid):
        yield Server("litserve", url, "/predict", "litserve", pid)


@contextmanager
def _process(
    command: list[str], env: dict[str, str], log: Path, url: str, ready: str
) -> Iterator[tuple[str, int]]:
    """A peer in a process group of its own (LitServe spawns worker processes), stopped as a group."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
        try:
            wait_ready(url, proc, 300.0, path=ready, log_path=log)
            yield url, proc.pid
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM to the peer's process group, SIGKILL to what is left after ``timeout_s``; reaped."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=timeout_s)
            os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived their parent
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            pass
        break
    stop_process(proc)
