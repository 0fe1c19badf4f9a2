"""One SQLite database file owned by one thread: every statement runs there, never on the event loop."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from orchestrator.serial import SerialExecutor

P = ParamSpec("P")
T = TypeVar("T")


class SqliteDb:
    def __init__(self, path: Path, schema: str, name: str) -> None:
        self.path = path
        self._schema = schema
        self._executor = SerialExecutor(name)
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self._executor.run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed transaction survives a process crash (kill -9); only a power cut can
        # lose the last ones. Every write here is either repeatable or re-derived by the next scan.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(self._schema)
        self._conn = conn

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection, for functions passed to `run` (they execute on the database's thread)."""
        if self._conn is None:
            raise RuntimeError(f"{self.path.name} is not open")
        return self._conn

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._executor.run(fn, *args, **kwargs)

    async def close(self) -> None:
        if self._conn is not None:
            await self._executor.run(self._conn.close)
            self._conn = None
        self._executor.shutdown()
