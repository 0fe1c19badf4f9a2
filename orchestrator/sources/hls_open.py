"""Every URL an HLS stream's demuxer opens, checked like a URL job's download (in the recorder process).

FFmpeg's HLS demuxer opens the playlist, its variants, each media segment and any key by itself, wherever
a playlist points. PyAV hands each of those opens to `io_open` (also the first one): here each URL must
pass `fetch.check_url` (http or https, no credentials) and its host's addresses `fetch.resolve_checked`
(public ones, plus URL_ALLOWED_NETWORKS); the request goes to the address that was judged (Host and the
TLS server name stay the URL's host), redirects are followed here and judged alike. A body is read whole
(a playlist, or one media segment of a few seconds) within `max_bytes`. FFmpeg's own HTTP keep-alive
reuse must be off (`http_persistent=0`): it asserts on a custom I/O context.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx

from orchestrator.sources.addresses import IPAddress, IPNetwork
from orchestrator.sources.fetch import MAX_REDIRECTS, FetchError, check_url, resolve_checked

_AVIO_FLAG_WRITE = 2  # <libavformat/avio.h>
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 1 << 16


class CheckedOpener:
    """PyAV's `io_open` for an HLS input. `refusal` keeps the last reason an open was refused (FFmpeg
    turns it into a bare I/O error; the recorder reports this instead)."""

    def __init__(self, allowed: tuple[IPNetwork, ...], max_bytes: int, timeout_s: float) -> None:
        self.allowed = allowed
        self.max_bytes = max_bytes
        self.refusal: str | None = None
        self._client = httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout_s)

    def __call__(self, url: str, flags: int, options: dict[str, Any]) -> io.BytesIO:
        if flags & _AVIO_FLAG_WRITE:
            raise PermissionError("an HLS input is only read")
        try:
            return io.BytesIO(self.fetch(url))
        except FetchError as exc:
            self.refusal = str(exc)
            raise

    def fetch(self, url: str) -> bytes:
        """The body of `url` (FetchError says why not)."""
        current = check_url(url)
        for _ in range(MAX_REDIRECTS + 1):
            address = asyncio.run(resolve_checked(current, self.allowed))
            try:
                with self._client.stream(
                    "GET", _direct(current, address), headers=_headers(current), extensions=_tls(current)
                ) as response:
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECTS and location:
                        current = check_url(current.join(location))
                        continue
                    if response.status_code != 200:
                        raise FetchError(f"{_show(current)} answered HTTP {response.status_code}")
                    return self._body(response, current)
            except httpx.HTTPError as exc:
                raise FetchError(f"unreachable: {_show(current)} ({type(exc).__name__}: {exc})") from exc
        raise FetchError(f"more than {MAX_REDIRECTS} redirects from {_show(check_url(url))}")

    def _body(self, response: httpx.Response, url: httpx.URL) -> bytes:
        body = bytearray()
        for chunk in response.iter_bytes(_CHUNK):
            body += chunk
            if len(body) > self.max_bytes:
                raise FetchError(f"{_show(url)} is larger than {self.max_bytes} bytes")
        return bytes(body)

    def close(self) -> None:
        self._client.close()


def _direct(url: httpx.URL, address: IPAddress) -> httpx.URL:
    return url.copy_with(host=str(address))


def _headers(url: httpx.URL) -> dict[str, str]:
    return {"Host": url.netloc.decode("ascii"), "Accept-Encoding": "identity", "User-Agent": "Archivist"}


def _tls(url: httpx.URL) -> dict[str, Any]:
    return {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}


def _show(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.raw_path.decode('ascii')}"[:300]
