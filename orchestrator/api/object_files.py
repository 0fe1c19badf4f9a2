"""Serving an object of an object store (an s3:// path of a search hit): the store's answer streamed
through, a block at a time, with its Range answer (206, Content-Range) when the request asked for one.
Starlette has no response for a body read by blocking calls, hence this small StreamingResponse: each block
is read in a thread, and the store's connection is closed when the response ends, however it ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from orchestrator.sources.s3 import ObjectStream


class ObjectResponse(StreamingResponse):
    def __init__(self, stream: ObjectStream, media_type: str) -> None:
        super().__init__(_blocks(stream), stream.status, stream.headers, media_type)
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):  # a client gone mid-transfer still frees the connection
                await anyio.to_thread.run_sync(self._stream.close)


async def _blocks(stream: ObjectStream) -> AsyncIterator[bytes]:
    while block := await asyncio.to_thread(stream.read):
        yield block
