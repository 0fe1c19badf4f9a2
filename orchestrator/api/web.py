"""The web UI: `/` is the page, `/ui/…` its stylesheet and ES modules (orchestrator/web/, committed as they
run: no build step, nothing fetched from elsewhere). No API key here: these files hold no data, and every
call the page makes carries the key itself (X-API-Key).

Every answer carries a strict Content-Security-Policy (this origin only; no inline script or style, no
plugins, no framing), `nosniff`, and `no-referrer` (signed media URLs carry a signature). Cache: `no-cache`
with the ETag and Last-Modified Starlette sets, so a browser revalidates (an unchanged file costs a 304)
and a new release is seen at once: the file names carry no version to make a longer lifetime safe.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
ASSETS_PREFIX = "/ui"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",  # blob: thumbnails fetched with the key when a URL is not signed
        "media-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


async def index(request: Request) -> Response:
    """The page. A plain Starlette route, not an API route: the API's rule that an unknown query parameter
    is a 422 (api/strict.py) does not apply to a page, which a link may open with any query string."""
    del request
    return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


class _WebFiles(StaticFiles):
    """Starlette's StaticFiles with the headers above on every file (and on its 304s)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def add_web_ui(app: FastAPI) -> None:
    """Serve the page at `/` and its assets under ASSETS_PREFIX."""
    app.add_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount(ASSETS_PREFIX, _WebFiles(directory=WEB_DIR, follow_symlink=False), name="ui")
