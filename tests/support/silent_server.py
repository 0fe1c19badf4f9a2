"""A stand-in for a replica that is alive but never answers: it accepts connections, reads what is sent
and says nothing until the test ends (a hung worker, a stuck GPU). Connection refused is a different,
"dead" replica: a free port nobody listens on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass(slots=True)
class SilentServer:
    url: str
    connections: int = 0


@asynccontextmanager
async def silent_server() -> AsyncIterator[SilentServer]:
    holder: list[SilentServer] = []
    writers: set[asyncio.StreamWriter] = set()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        holder[0].connections += 1
        writers.add(writer)
        try:
            while await reader.read(65536):
                pass  # swallow the request; never write a byte back
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    holder.append(SilentServer(f"http://127.0.0.1:{port}"))
    try:
        yield holder[0]
    finally:
        for writer in writers:
            writer.close()  # the reads above end
        server.close()
        await server.wait_closed()
