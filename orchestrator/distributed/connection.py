"""The PostgreSQL connection class of every pool here (ours and procrastinate's): psycopg's own, except that a
connection attempt that ends without a connection (cancelled, timed out, refused) closes its socket at once.

psycopg 3.3 re-raises whatever ends `AsyncConnection.connect` from `connect`'s own frame, and that frame still
holds the libpq connection being made: its socket stays open, halfway through the startup handshake, for as
long as the exception lives, and that can be long (tests/distributed/test_connection.py: still open after the
caller returned and after `gc.collect()`). Attempts do get cancelled: procrastinate cancels its side tasks,
its LISTEN connection's among them, when PostgreSQL goes away. The server meanwhile keeps a process waiting
for that client's startup packet, up to its `authentication_timeout` (60 s by default), and a fast shutdown
(`pg_ctl stop`, a restart, a failover) waits for that process: our workers, reconnecting while PostgreSQL
stopped, held its shutdown past 30 s. Clearing the frames of the traceback drops the half-made connection
(CPython frees it at once, and libpq's PQfinish closes the socket); the traceback's lines are kept.
"""

from __future__ import annotations

import traceback
from typing import Any, Self

from psycopg import AsyncConnection
from psycopg.rows import Row


class ClosingConnection(AsyncConnection[Row]):
    """`psycopg.AsyncConnection` whose failed or cancelled `connect` leaves no socket open behind it."""

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        try:
            return await super().connect(conninfo, **kwargs)
        except BaseException as exc:
            # (the frame running now is skipped: a running frame cannot be cleared)
            traceback.clear_frames(exc.__traceback__)
            raise
