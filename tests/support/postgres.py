"""A real PostgreSQL server (Debian's packages) as a local process, for the distributed mode's tests.

    with running_postgres(tmp_dir) as pg:     # pg.url == "postgresql://archivist@127.0.0.1:<port>/archivist"
        pg.stop(); pg.start()                 # a clean restart: same data directory, same port
        pg.kill(); pg.start()                 # a crash (SIGKILL, every server process), then crash recovery

initdb makes a throw-away cluster (trust authentication, reachable on 127.0.0.1 only: a loopback TCP port
and a unix socket in the cluster's own directory, never /var/run/postgresql). fsync is off: a killed server
loses nothing that way (the kernel still holds what it wrote), only an operating-system crash could, and the
cluster is thrown away after the tests anyway.

The postmaster is this process's own child, not started through ``pg_ctl start``: pg_ctl detaches it, so
after ``kill()`` nobody here could reap it, and where PID 1 does not reap orphans (containers) its zombie
keeps the pid in ``postmaster.pid`` "alive" and the next start refuses the data directory. Readiness is
waited for as ``pg_ctl -w`` waits: the "ready" status line of ``postmaster.pid`` (bounded).

PostgreSQL refuses to run as root: under root every server command runs as the ``postgres`` system user
(created by Debian's package; ``nobody`` otherwise) through ``setpriv``, which execs, so the child's pid is
the postmaster's. Every method blocks: call it with ``asyncio.to_thread`` from a coroutine.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import psycopg
from psycopg import sql

from scripts.ml_process import free_port, log_tail

APT_PACKAGE = "postgresql"
USER = "archivist"
DATABASE = "archivist"
INITDB_S = 60.0
START_S = 30.0
STOP_S = 30.0
_POLL_START_S = 0.01
_POLL_MAX_S = 0.1
# The OS user that runs the server when this process is root, in order of preference.
_SERVER_USERS = ("postgres", "nobody")
# sockaddr_un.sun_path holds 108 bytes with its NUL; the socket's name is "<dir>/.s.PGSQL.<port>".
_SOCKET_PATH_MAX = 107


class PostgresFailed(RuntimeError):
    """initdb or the server failed, or was not ready (or stopped) in time; the message ends with its log."""


def server_binaries() -> Path:
    """The newest Debian server build (/usr/lib/postgresql/<major>/bin), else the one on PATH."""
    found = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "postgres").is_file()]
    if found:
        return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    raise PostgresFailed(
        "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin or on PATH "
        f"(scripts/test.sh installs the apt package {APT_PACKAGE})"
    )


def _server_account() -> pwd.struct_passwd | None:
    """The unprivileged account that runs the server under root; None when this process is not root."""
    if os.geteuid() != 0:
        return None
    for name in _SERVER_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresFailed(f"running as root and none of the users {_SERVER_USERS} exists to run PostgreSQL")


def _is_gone(pid: int) -> bool:
    """The process has exited (a zombie counts: it holds no shared memory any more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rpartition(")")[2].split()[0] in {"Z", "X"}


def _children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (the postmaster's backends and auxiliary processes)."""
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            children.append(int(entry.name))
    return children


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class PostgresServer:
    """One throw-away cluster under `base_dir`, served on one loopback port for its whole life."""

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir / "socket"
        self.log_path = base_dir / "postgres.log"
        self.port = port or free_port()
        self.url = f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"
        self.binaries = server_binaries()
        self._account = _server_account()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        if len(f"{self.socket_dir}/.s.PGSQL.{self.port}") > _SOCKET_PATH_MAX:
            raise PostgresFailed(f"{self.socket_dir} is too long a path for a unix socket")

    def url_of(self, database: str) -> str:
        """The libpq URL of another database of this server."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    def _command(self, *args: str) -> list[str]:
        """`args` as the server's OS user: setpriv execs (the child's pid is the program's own)."""
        if self._account is None:
            return list(args)
        return [
            "setpriv",
            f"--reuid={self._account.pw_uid}",
            f"--regid={self._account.pw_gid}",
            "--clear-groups",
            "--",
            *args,
        ]

    def _env(self) -> dict[str, str]:
        # None of the caller's PG* variables (PGDATA, PGPORT, ...), and a fixed zone: initdb then skips its
        # search of the zoneinfo files, and the log's timestamps are UTC.
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TZ": "UTC", "LC_ALL": "C"}

    def _initdb(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self._account is not None:
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, self._account.pw_uid, self._account.pw_gid)
        initdb_log = self.base_dir / "initdb.log"
        command = self._command(
            str(self.binaries / "initdb"),
            f"--pgdata={self.data_dir}",
            f"--username={USER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",  # see fsync in the module's docstring
            "--no-instructions",
        )
        with initdb_log.open("wb") as log:
            try:
                done = subprocess.run(
                    command,
                    cwd=self.base_dir,
                    env=self._env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=INITDB_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise self._failed(f"initdb did not finish in {INITDB_S:.0f} s", initdb_log) from None
        if done.returncode != 0:
            raise self._failed(f"initdb exited with code {done.returncode}", initdb_log)
        # Trust on the unix socket and 127.0.0.1 only; the server listens nowhere else either.
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        if self._account is not None:
            os.chown(hba, self._account.pw_uid, self._account.pw_gid)

    def start(self) -> None:
        """Start the server (initdb first on a fresh directory) and wait until it accepts connections."""
        if self.running:
            raise PostgresFailed("the server is already running")
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        command = self._command(
            str(self.binaries / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.socket_dir}",
            "-c", "fsync=off",
            "-c", "shared_buffers=32MB",
            # Each connection's arrival is logged: a stop that hangs on a client that never finished its
            # handshake shows that client's port at the end of the log (the failure's message).
            "-c", "log_connections=on",
        )  # fmt: skip
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            command,
            cwd=self.base_dir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready(self._process)
        except BaseException:
            self._halt(signal.SIGKILL)
            raise

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        """Poll postmaster.pid as `pg_ctl -w` does: our pid on line 1 and "ready" on line 8 (pidfile.h)."""
        deadline = time.monotonic() + START_S
        delay = _POLL_START_S
        while True:
            if process.poll() is not None:
                raise self._failed(f"the server exited with code {process.returncode} while starting")
            try:
                lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            except FileNotFoundError:
                lines = []
            if len(lines) >= 8 and lines[0].strip() == str(process.pid) and lines[7].strip() == "ready":
                return
            if time.monotonic() >= deadline:
                raise self._failed(f"the server was not ready after {START_S:.0f} s")
            # Waiting between polls of a condition, not a fixed sleep standing in for one.
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, _POLL_MAX_S)

    def stop(self) -> None:
        """A clean stop (SIGINT, PostgreSQL's "fast" shutdown: sessions ended, a checkpoint written);
        SIGKILL when it has not ended within STOP_S."""
        self._halt(signal.SIGINT)

    def kill(self) -> None:
        """A crash: SIGKILL the postmaster and every process it started; the next start recovers from WAL."""
        self._halt(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _halt(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        try:
            if process is not None and process.poll() is None:
                children = _children(process.pid) if sig == signal.SIGKILL else []
                process.send_signal(sig)
                _kill_all(children)
                try:
                    process.wait(timeout=STOP_S)
                except subprocess.TimeoutExpired:
                    children = _children(process.pid)
                    process.kill()
                    _kill_all(children)
                    process.wait(timeout=STOP_S)
                    if sig != signal.SIGKILL:
                        raise self._failed(f"the server did not stop within {STOP_S:.0f} s: killed") from None
                # A new postmaster refuses the data directory while an old process still holds its shared
                # memory: wait for the killed ones (children of init now, reaped or not).
                self._wait_gone(children)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _wait_gone(self, pids: list[int]) -> None:
        deadline = time.monotonic() + STOP_S
        delay = _POLL_START_S
        while not all(_is_gone(pid) for pid in pids):
            if time.monotonic() >= deadline:
                raise self._failed(f"server processes {pids} still ran {STOP_S:.0f} s after SIGKILL")
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_S)

    def create_database(self, name: str) -> str:
        """Create database `name` (owned by the cluster's user) and return its URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"not a plain database name: {name!r}")
        with psycopg.connect(self.url_of("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_of(name)

    def _failed(self, reason: str, log_path: Path | None = None) -> PostgresFailed:
        log_path = log_path or self.log_path
        tail = log_tail(log_path)
        return PostgresFailed(
            f"PostgreSQL: {reason}" + (f"\nlast lines of {log_path}:\n{tail}" if tail else "")
        )


def _reachable(path: Path, account: pwd.struct_passwd | None) -> bool:
    """Whether the server's user can reach a directory inside `path` (pytest's temporary directories under
    root sit below /tmp/pytest-of-root, mode 0700: the postgres user cannot)."""
    if account is None:
        return True
    check = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
    return subprocess.run([*check, "--", "test", "-x", str(path)], timeout=10, check=False).returncode == 0


@contextmanager
def running_postgres(tmp_dir: Path) -> Iterator[PostgresServer]:
    """A started server with database `archivist` (its `url`), stopped on exit.

    The cluster lives in `tmp_dir`/postgres, or, under root when the server's user cannot reach `tmp_dir`,
    in a fresh directory of the system's temporary directory that is removed on exit."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    own_dir: Path | None = None
    if _reachable(tmp_dir, _server_account()):
        base = tmp_dir / "postgres"
    else:
        own_dir = Path(tempfile.mkdtemp(prefix="archivist-pg-"))
        os.chmod(own_dir, 0o711)  # traversable by the server's user, not listable
        base = own_dir / "postgres"
    try:
        server = PostgresServer(base)
        server.start()
        try:
            server.create_database(DATABASE)
            yield server
        finally:
            server.stop()
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
