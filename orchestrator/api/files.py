"""Serving a file that `security.open_within` opened and checked: Starlette's FileResponse (Range, HEAD,
ETag) reads it through the checked descriptor (/proc/self/fd/N reopens that inode, never the name), and the
descriptor is closed when the response ends, however it ends."""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping

import anyio
import anyio.to_thread
from fastapi.responses import FileResponse
from starlette.types import Receive, Scope, Send

from orchestrator.security import OpenedFile

_PATHSEND = "http.response.pathsend"


class OpenedFileResponse(FileResponse):
    """A FileResponse over an already opened, already checked file; it owns (and closes) the descriptor."""

    def __init__(self, opened: OpenedFile, media_type: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(opened.fd_path, media_type=media_type, headers=headers, stat_result=opened.stat)
        # Runs once: at the end of __call__, or when a response that was never sent is collected.
        self._close = weakref.finalize(self, os.close, opened.fd)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = scope.get("extensions") or {}
        if _PATHSEND in extensions:  # a server would open the path after we closed the descriptor
            scope = {**scope, "extensions": {k: v for k, v in extensions.items() if k != _PATHSEND}}
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled transfer still closes its descriptor
                await anyio.to_thread.run_sync(self._close)
