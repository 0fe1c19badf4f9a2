"""`python -m tests.support.unprivileged_orchestrator UID GID`: the orchestrator (settings from the
environment, like `python -m orchestrator`) serving as user UID:GID, started by root.

The interpreter may live where that user cannot read (pyenv under /root, mode 0700), so everything the
service runs is imported while still root; then the process drops its groups, gid and uid (for good: the
real, effective and saved ids all change) and serves."""

from __future__ import annotations

import importlib
import os
import sys

# Imported inside functions at run time (not at import of orchestrator.app): load them while we can.
_LAZY = (
    "orchestrator.clients.vectors_edge",
    "uvicorn.lifespan.on",
    "uvicorn.loops.asyncio",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_impl",
    "uvicorn.protocols.websockets.wsproto_impl",
    "multiprocessing.connection",
    "encodings.idna",
    "json",
)


def main() -> None:
    uid, gid = int(sys.argv[1]), int(sys.argv[2])
    import uvicorn

    from orchestrator.app import create_app
    from orchestrator.config import Settings
    from orchestrator.logs import configure_logging

    for name in _LAZY:
        try:
            importlib.import_module(name)
        except ImportError:
            continue  # an optional uvicorn backend that is not installed
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    config = uvicorn.Config(
        create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False
    )
    config.load()
    server = uvicorn.Server(config)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getgroups():
        raise SystemExit("could not drop privileges")
    server.run()


if __name__ == "__main__":
    main()
