"""ClosingConnection: a connection attempt that ends without a connection leaves no socket open.

The server here is a loopback listener that accepts and never answers: the client sends its first packet
(libpq's SSLRequest) and waits, which is where a client stands when PostgreSQL is stopping or unreachable.
The test then reads the client's side of the story from the server's socket: end of stream (closed) or not.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from orchestrator.distributed.connection import ClosingConnection
from orchestrator.distributed.store import ClusterStore
from orchestrator.distributed.tasks import queue_app
from tests.support.postgres import PostgresServer

SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"  # length 8, code 80877103 (the protocol's SSLRequest)
CLOSE_S = 10.0  # a closed socket's end of stream reaches the peer at once on loopback; generous for CI


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


def _url(server: socket.socket, **params: str) -> str:
    port = server.getsockname()[1]
    query = "".join(f"&{k}={v}" for k, v in params.items())
    return f"postgresql://archivist@127.0.0.1:{port}/archivist?sslmode=prefer{query}"


async def _first_packet(server: socket.socket) -> socket.socket:
    """Accept the client's connection and read its SSLRequest: the client now waits for our answer."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(30):
        peer, _ = await loop.sock_accept(server)
        peer.setblocking(False)
        received = b""
        while len(received) < len(SSL_REQUEST):
            chunk = await loop.sock_recv(peer, len(SSL_REQUEST) - len(received))
            assert chunk, "the client closed before its first packet"
            received += chunk
    assert received == SSL_REQUEST
    return peer


async def _closed_within(peer: socket.socket, seconds: float) -> bool:
    """The client closed its side (end of stream) within `seconds`; False when it still holds it open."""
    try:
        async with asyncio.timeout(seconds):
            return await asyncio.get_running_loop().sock_recv(peer, 1) == b""
    except TimeoutError:
        return False


async def _cancelled_attempt(kind: Any, server: socket.socket) -> tuple[BaseException, socket.socket]:
    attempt = asyncio.create_task(kind.connect(_url(server)))
    peer = await _first_packet(server)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError) as raised:
        await attempt
    return raised.value, peer


async def test_a_cancelled_attempt_closes_its_socket(silent_server: socket.socket) -> None:
    # The cancellation is kept referenced, as procrastinate keeps the side tasks it cancels.
    error, peer = await _cancelled_attempt(ClosingConnection, silent_server)
    with peer:
        assert await _closed_within(peer, CLOSE_S), "the cancelled attempt's socket is still open"
    assert error.__traceback__ is not None  # the traceback's lines are kept, only its frames' locals go


async def test_a_timed_out_attempt_closes_its_socket(silent_server: socket.socket) -> None:
    attempt = asyncio.create_task(ClosingConnection.connect(_url(silent_server, connect_timeout="2")))
    peer = await _first_packet(silent_server)
    with peer:
        async with asyncio.timeout(30):
            with pytest.raises(psycopg.errors.ConnectionTimeout) as raised:
                await attempt
        assert await _closed_within(peer, CLOSE_S), "the timed-out attempt's socket is still open"
    assert "timeout" in str(raised.value)


async def test_plain_psycopg_still_leaves_the_socket_open(silent_server: socket.socket) -> None:
    """Why ClosingConnection exists: when this fails, psycopg closes an abandoned attempt itself and the
    class can go (psycopg's `connect` re-raises from a frame that holds the half-made connection)."""
    peer = (await _cancelled_attempt(psycopg.AsyncConnection, silent_server))[1]  # the error dropped
    gc.collect()  # the cancellation is not even ours to drop: the socket outlives the collection too
    with peer:
        assert not await _closed_within(peer, 1.0)


async def test_every_pool_makes_its_connections_with_it(postgres: PostgresServer) -> None:
    async with await ClosingConnection.connect(postgres.url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT 1 + 1")
        assert await cursor.fetchone() == (2,)
    store = await ClusterStore.open(postgres.url)
    try:
        async with store._pool.connection() as conn:
            assert type(conn) is ClosingConnection
    finally:
        await store.close()
    app = queue_app(postgres.url)
    async with app.open_async():
        pool = app.connector.pool  # type: ignore[attr-defined]  # (PsycopgConnector's, untyped on BaseConnector)
        assert pool.connection_class is ClosingConnection  # procrastinate's LISTEN connection uses it too
        async with pool.connection() as conn:
            assert type(conn) is ClosingConnection
