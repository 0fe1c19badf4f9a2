"""A live stream's URL: which are accepted, how one is shown, and where the recorder connects.

`rtsp://` (a camera's credentials may ride in it: they are never shown, and kept out of the job's row) or
an HLS playlist `http(s)://….m3u8` (no credentials, as for URL jobs). The host is judged like a URL job's
(`fetch.resolve_checked`: public addresses, plus URL_ALLOWED_NETWORKS) when the stream is created and
again at every connection. An RTSP connection goes to the address judged (the URL's host replaced by it,
so no second DNS lookup can swap it); an HLS input's every request is judged as it is made
(`hls_open.CheckedOpener`). FFmpeg follows an RTSP server's redirect (3xx) by itself: the one request
that does not pass these checks.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from orchestrator.sources.addresses import IPNetwork, address_refusal
from orchestrator.sources.fetch import FetchError, check_url, resolve_checked


class StreamKind(enum.StrEnum):
    RTSP = "rtsp"
    HLS = "hls"


class StreamURLError(ValueError):
    """Not a URL a stream may be recorded from; the message says why."""


@dataclass(frozen=True, slots=True)
class StreamURL:
    url: httpx.URL  # as given, credentials included
    kind: StreamKind

    @property
    def public(self) -> str:
        """The URL as it may be shown and stored: without credentials."""
        return str(self.url.copy_with(userinfo=b"")) if self.url.userinfo else str(self.url)

    @property
    def has_credentials(self) -> bool:
        return bool(self.url.userinfo)


def parse_stream_url(text: str) -> StreamURL:
    """The stream URL `text` names, or StreamURLError."""
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError) as exc:
        raise StreamURLError(f"not a URL: {text!s:.200}") from exc
    scheme = url.scheme.lower()
    if scheme == "rtsp":
        if not url.raw_host:
            raise StreamURLError(f"no host in {text!s:.200}")
        return StreamURL(url, StreamKind.RTSP)
    if scheme in ("http", "https"):
        if not url.path.lower().endswith(".m3u8"):
            raise StreamURLError("an http(s) stream is an HLS playlist: its path ends in .m3u8")
        try:
            return StreamURL(check_url(url), StreamKind.HLS)
        except FetchError as exc:
            raise StreamURLError(str(exc)) from exc
    raise StreamURLError("a stream URL is rtsp:// or an http(s):// HLS playlist (.m3u8)")


async def connect_url(stream: StreamURL, allowed: tuple[IPNetwork, ...]) -> str:
    """What the demuxer opens: an RTSP URL with its host replaced by the address judged; an HLS URL as it
    is (its opener judges every request). FetchError when the host's addresses are refused or it does
    not resolve."""
    address = await resolve_checked(stream.url, allowed)
    if stream.kind is StreamKind.HLS:
        return str(stream.url)
    return str(stream.url.copy_with(host=str(address)))


async def host_refusal(stream: StreamURL, allowed: tuple[IPNetwork, ...]) -> str | None:
    """Why a stream may not be created: every address its host resolves to now is refused (the sentence
    of the first). None when one is allowed, and when the host does not resolve now: the recorder keeps
    trying, its error in the stream's health."""
    host = stream.url.raw_host.decode("ascii")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return None
    refusals = [
        address_refusal(ipaddress.ip_address(str(info[4][0]).split("%")[0]), allowed) for info in infos
    ]
    if refusals and all(r is not None for r in refusals):
        return refusals[0]
    return None
