"""``python -m ml_service``: serve the ML API with settings from the environment (ML_*)."""

from __future__ import annotations

import uvicorn

from ml_service.app import create_app
from ml_service.config import MLSettings
from ml_service.logs import configure_logging


def main() -> None:
    settings = MLSettings()
    configure_logging(settings.log_level)
    try:
        app = create_app(settings)
    except ValueError as exc:  # e.g. beyond loopback without ML_API_KEY: say why, without a traceback
        raise SystemExit(f"ml_service: {exc}") from None
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        log_level=settings.log_level.lower(),
        # Request bodies carry megabytes of base64: allow a slow client time to send them.
        timeout_keep_alive=30,
    )


if __name__ == "__main__":
    main()
