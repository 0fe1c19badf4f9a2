"""URL jobs' downloads, guarded against server-side request forgery.

http and https only, no credentials in the URL. The host is resolved here and every address judged
(`addresses.address_refusal`: public ones, plus URL_ALLOWED_NETWORKS); the request then goes to the address
that was judged (the URL's host replaced by it: no second DNS lookup can swap it), with the Host header and
the TLS server name (SNI, and certificate verification) still the URL's host. Redirects are followed here,
at most MAX_REDIRECTS, each one judged like the first URL. The body streams into a hidden `.part` file
within URL_MAX_BYTES and URL_TIMEOUT_S (the whole download), is sniffed like an upload, and is renamed to
its name only when complete. Environment proxies are ignored (a proxy would connect where we did not look).
"""

from __future__ import annotations

import asyncio
import ipaddress
import mimetypes
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import httpx
from python_multipart.multipart import parse_options_header

from orchestrator.config import Settings
from orchestrator.media.sniff import DOCUMENT_EXTENSIONS, MEDIA_EXTENSIONS, Sniffed
from orchestrator.sources.addresses import IPAddress, IPNetwork, address_refusal
from orchestrator.sources.names import safe_name, with_extension
from orchestrator.sources.sink import FileSink, NotAcceptedError, TooLargeError

MAX_REDIRECTS = 5
PART_NAME = ".download.part"  # hidden: an ingest never sees a download in progress
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_IO_TIMEOUT_S = 60.0  # connect, and each read or write: a stalled server is dropped before URL_TIMEOUT_S
_CHUNK = 1 << 16


class FetchError(Exception):
    """Why a URL could not be downloaded: the job's error, said plainly."""


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    allowed_networks: tuple[IPNetwork, ...]
    max_bytes: int
    timeout_s: float
    max_redirects: int = MAX_REDIRECTS

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(settings.url_allowed_network_list, settings.url_max_bytes, settings.url_timeout_s)


@dataclass(frozen=True, slots=True)
class Downloaded:
    path: Path
    size: int
    url: str  # after redirects
    kind: Sniffed


Progress = Callable[[int, int | None], None]  # bytes so far, bytes announced (Content-Length) if any


def check_url(url: str | httpx.URL) -> httpx.URL:
    """The URL parsed, when it is one a job may fetch; FetchError otherwise."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError(f"not a URL: {url!s:.200}") from exc
    if parsed.scheme not in ("http", "https"):
        raise FetchError(f"only http and https URLs are fetched, not {parsed.scheme or 'a relative URL'}")
    if not parsed.raw_host:
        raise FetchError(f"no host in {url!s:.200}")
    if parsed.userinfo:
        raise FetchError("credentials in a URL are not accepted")
    return parsed


async def resolve_checked(url: httpx.URL, allowed: tuple[IPNetwork, ...]) -> IPAddress:
    """The address to connect to: the first of the host's addresses that the policy allows. FetchError
    names the first refused address when none is allowed, or says the host does not resolve."""
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except OSError as exc:
        raise FetchError(f"unreachable: cannot resolve {host} ({exc.strerror or exc})") from exc
    refusals: list[str] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        refusal = address_refusal(address, allowed)
        if refusal is None:
            return address
        refusals.append(refusal)
    raise FetchError(refusals[0] if refusals else f"unreachable: {host} has no address")


def _pinned(client: httpx.AsyncClient, url: httpx.URL, address: IPAddress) -> httpx.Request:
    """A GET of `url` sent to `address`: Host and TLS server name stay the URL's host."""
    host = url.raw_host.decode("ascii")
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return client.build_request(
        "GET",
        url.copy_with(host=str(address)),
        headers={
            "Host": url.netloc.decode("ascii"),
            "Accept-Encoding": "identity",
            "User-Agent": "Archivist",
        },
        extensions=extensions,
    )


async def download(url: str, directory: Path, policy: FetchPolicy, progress: Progress) -> Downloaded:
    """Download `url` into `directory` (see the module). FetchError says why not; nothing is left behind
    but the directory itself."""
    current = check_url(url)
    try:
        async with asyncio.timeout(policy.timeout_s):
            async with httpx.AsyncClient(
                trust_env=False, follow_redirects=False, timeout=min(_IO_TIMEOUT_S, policy.timeout_s)
            ) as client:
                for _ in range(policy.max_redirects + 1):
                    address = await resolve_checked(current, policy.allowed_networks)
                    try:
                        response = await client.send(_pinned(client, current, address), stream=True)
                    except httpx.TimeoutException as exc:
                        raise FetchError(f"unreachable: {_where(current, address)} did not answer") from exc
                    except httpx.TransportError as exc:
                        raise FetchError(f"unreachable: {_where(current, address)} ({exc})") from exc
                    try:
                        location = response.headers.get("location")
                        if response.status_code in _REDIRECTS and location:
                            current = check_url(current.join(location))
                            continue
                        if response.status_code != 200:
                            raise FetchError(f"{_show(current)} answered HTTP {response.status_code}")
                        return await _save(response, current, directory, policy, progress)
                    finally:
                        await response.aclose()
                raise FetchError(f"more than {policy.max_redirects} redirects from {_show(check_url(url))}")
    except TimeoutError as exc:
        raise FetchError(f"not downloaded within URL_TIMEOUT_S ({policy.timeout_s:g} s)") from exc
    except httpx.TimeoutException as exc:
        raise FetchError(f"{_show(current)} stopped sending for {_IO_TIMEOUT_S:g} s") from exc
    except httpx.TransportError as exc:
        raise FetchError(f"the download from {_show(current)} broke off ({exc})") from exc


async def _save(
    response: httpx.Response, url: httpx.URL, directory: Path, policy: FetchPolicy, progress: Progress
) -> Downloaded:
    announced = _content_length(response)
    if announced is not None and announced > policy.max_bytes:
        raise FetchError(f"larger than URL_MAX_BYTES ({policy.max_bytes} bytes): {announced} announced")
    name = file_name(url, response.headers.get("content-disposition"), response.headers.get("content-type"))
    await asyncio.to_thread((directory / PART_NAME).unlink, missing_ok=True)  # an earlier run's
    sink = FileSink(directory / PART_NAME, name, policy.max_bytes, "URL_MAX_BYTES")
    try:
        await sink.open()
        async for chunk in response.aiter_bytes(_CHUNK):
            await sink.write(chunk)
            progress(sink.received, announced)
        received = await sink.finish()
    except (TooLargeError, NotAcceptedError) as exc:
        await sink.abort()
        raise FetchError(str(exc)) from exc
    except BaseException:
        await sink.abort()
        raise
    target = directory / name
    await asyncio.to_thread(os.replace, received.path, target)
    return Downloaded(path=target, size=received.size, url=str(url), kind=received.kind)


def file_name(url: httpx.URL, disposition: str | None, content_type: str | None) -> str:
    """The downloaded file's safe name: Content-Disposition's filename, else the URL path's last segment,
    else "download"; with the extension of its Content-Type when its own says neither media nor document."""
    raw = ""
    if disposition:
        raw = parse_options_header(disposition)[1].get(b"filename", b"").decode("utf-8", errors="replace")
    if not raw:
        raw = unquote(url.path.rstrip("/").rpartition("/")[2])
    name = safe_name(raw, fallback="download")
    extension = os.path.splitext(name)[1].lower()
    if extension not in MEDIA_EXTENSIONS and extension not in DOCUMENT_EXTENSIONS and content_type:
        mime = parse_options_header(content_type)[0].decode("latin-1").lower()
        guessed = {"text/plain": ".txt", "text/markdown": ".md", "image/jpeg": ".jpg"}.get(mime)
        guessed = guessed or mimetypes.guess_extension(mime, strict=False)
        if guessed:
            name = with_extension(name, guessed)
    return name


def _content_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _show(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.raw_path.decode('ascii')}"[:300]


def _where(url: httpx.URL, address: IPAddress) -> str:
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{host}:{port}" if host == str(address) else f"{host}:{port} ({address})"
