"""Signed media URLs: a browser's <img> and <video> cannot send the API key, so when API_KEY is set the
thumbnail and stream URLs in search answers carry an expiry and an HMAC of the path, the collection and
the expiry, keyed by a key derived from API_KEY (`exp`, `sig`). The media routes accept such a URL
without the key until it expires; the signature names one media id, so it opens nothing else."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import HTTPConnection

_SIGNED_ROUTES = ("/thumbnail", "/stream")


def _secret(api_key: str) -> bytes:
    return hashlib.sha256(b"archivist media url\0" + api_key.encode()).digest()


def _mac(api_key: str, path: str, collection: str, exp: int) -> str:
    message = f"{path}\n{collection}\n{exp}".encode()
    return hmac.new(_secret(api_key), message, hashlib.sha256).hexdigest()


def sign_url(url: str, api_key: str | None, ttl_s: int, now: float | None = None) -> str:
    """`url` (a path with its `collection` query) with `exp` and `sig` added; as it is without a key."""
    if not api_key:
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    exp = int((time.time() if now is None else now) + ttl_s)
    sig = _mac(api_key, parts.path, query.get("collection", ""), exp)
    return f"{parts.path}?{urlencode({**query, 'exp': exp, 'sig': sig})}"


def signed(conn: HTTPConnection, api_key: str, now: float | None = None) -> bool:
    """True when the request is a GET of a thumbnail or stream with a valid, unexpired signature."""
    if conn.scope["type"] != "http" or conn.scope.get("method") not in ("GET", "HEAD"):
        return False
    path = conn.url.path
    if not (path.startswith("/media/") and path.endswith(_SIGNED_ROUTES)):
        return False
    sig, exp = conn.query_params.get("sig"), conn.query_params.get("exp")
    if not sig or not exp or not exp.isdigit() or int(exp) < (time.time() if now is None else now):
        return False
    expected = _mac(api_key, path, conn.query_params.get("collection", ""), int(exp))
    return hmac.compare_digest(sig.encode(), expected.encode())
