"""The ML client against a small local stand-in speaking the same HTTP protocol, for the behaviours the
real service shows only under load or failure: 429 + Retry-After (seconds or an HTTP date), 503 while
loading, 4xx not retried, the retry deadline (which an interactive call's requests never outlive), and
the wait reason reported while retrying."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.clients.ml import MLClient, MLRequestError, MLUnavailableError
from tests.support.orchestrator_server import free_port
from tests.support.silent_server import silent_server


class StandIn:
    """Answers /v1/embed/text from a script of status codes, then 200 with one vector per text."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.calls: list[float] = []

    async def embed(self, request: Request) -> Response:
        self.calls.append(time.monotonic())
        body = orjson.loads(await request.body())
        if self.script:
            status, headers = self.script.pop(0)
            return Response(b'{"detail": "scripted"}', status, headers=headers)
        vectors = [[float(len(t)), 0.0] for t in body["texts"]]
        return Response(orjson.dumps({"vectors": vectors}), 200, media_type="application/json")


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, str]]:
    fake = StandIn()
    app = Starlette(routes=[Route("/v1/embed/text", fake.embed, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    yield fake, f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_429_retry_after_is_honoured(stand_in: tuple[StandIn, str]) -> None:
    fake, url = stand_in
    fake.script = [(429, {"retry-after": "1"}), (503, {"retry-after": "0"})]
    waits: list[str | None] = []
    client = MLClient([url], timeout_s=5, retry_deadline_s=10)
    try:
        assert await client.embed_text(["ab", "c"], on_wait=waits.append) == [[2.0, 0.0], [1.0, 0.0]]
    finally:
        await client.close()
    assert len(fake.calls) == 3
    assert fake.calls[1] - fake.calls[0] >= 0.95  # waited the Retry-After, not the short backoff
    assert waits[0] is not None and "429" in waits[0]
    assert waits[-1] is None  # cleared once answered


async def test_client_errors_are_not_retried(stand_in: tuple[StandIn, str]) -> None:
    fake, url = stand_in
    fake.script = [(422, {}), (404, {})]
    client = MLClient([url], timeout_s=5, retry_deadline_s=10)
    try:
        assert await client.embed_text(["x"]) == [None]  # the item it cannot take: that item's failure
        with pytest.raises(MLRequestError, match="404"):  # not an item's fault: the request's
            await client.embed_text(["x"])
    finally:
        await client.close()
    assert len(fake.calls) == 2


async def test_deadline_gives_a_clear_reason(stand_in: tuple[StandIn, str]) -> None:
    fake, url = stand_in
    fake.script = [(503, {})] * 100
    client = MLClient([url], timeout_s=5, retry_deadline_s=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(MLUnavailableError, match=r"unavailable after 1s.*HTTP 503"):
            await client.embed_text(["x"])
    finally:
        await client.close()
    assert 0.9 <= time.monotonic() - started < 3
    assert 3 <= len(fake.calls) <= 10  # backed off, did not spin


async def test_retry_after_as_an_http_date_is_honoured(stand_in: tuple[StandIn, str]) -> None:
    fake, url = stand_in
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    fake.script = [(429, {"retry-after": when})]
    client = MLClient([url], timeout_s=5, retry_deadline_s=10)
    try:
        assert await client.embed_text(["x"]) == [[1.0, 0.0]]
    finally:
        await client.close()
    # The date has whole seconds: 1 to 2 s from now, never the 0.2 s backoff.
    assert len(fake.calls) == 2 and 0.9 <= fake.calls[1] - fake.calls[0] < 3


async def test_a_search_request_never_outlives_its_deadline() -> None:
    """A call with its own deadline cuts each request to the time left: a replica that never answers
    holds it for the deadline, not the client's long request timeout."""
    async with silent_server() as silent:
        client = MLClient([silent.url], timeout_s=300, retry_deadline_s=600)
        started = time.monotonic()
        try:
            with pytest.raises(MLUnavailableError, match=r"unavailable after 2s.*no answer within"):
                await asyncio.wait_for(client.embed_text(["x"], deadline_s=2.0, timeout_s=0.5), 60)
        finally:
            await client.close()
    assert time.monotonic() - started < 3.5
    assert silent.connections >= 2  # slow, not dead: asked again after the pause
