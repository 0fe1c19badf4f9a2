"""The pieces of `orchestrator/sources/` that need no server: client names made safe, URL and address
checks (SSRF), tus metadata, the streaming file sink (bounded memory, limit, sniffing)."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import tracemalloc
from pathlib import Path

import blake3
import httpx
import pytest

from orchestrator.config import Settings
from orchestrator.sources.addresses import address_refusal, parse_networks
from orchestrator.sources.fetch import FetchError, check_url, file_name
from orchestrator.sources.managed import ManagedArea
from orchestrator.sources.names import MAX_NAME_BYTES, safe_name, with_extension
from orchestrator.sources.sink import FileSink, NotAcceptedError, TooLargeError
from orchestrator.sources.text import text_file_name
from orchestrator.sources.tus import MetadataError, parse_metadata

NONE: tuple[ipaddress.IPv4Network, ...] = ()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("..", "upload"),
        ("", "upload"),
        ("/", "upload"),
        ("a/b/../..", "b"),  # the last real component, never a path
        ("C:\\Users\\me\\holiday.png", "holiday.png"),
        ("x\x00y.jpg", "xy.jpg"),
        ("tab\there\nnew.jpg", "tab_here_new.jpg"),
        (".hidden.jpg", "hidden.jpg"),  # a hidden name would never be ingested
        ("...", "upload"),
        ('a<b>c:d"e|f?g*h.jpg', "a_b_c_d_e_f_g_h.jpg"),
        ("café_東京 ñ.jpg", "café_東京 ñ.jpg"),
        ("cafe\u0301.jpg", "café.jpg"),  # NFC
        ("  spaced  out .jpg  ", "spaced out .jpg"),
        ("rtl\u202egpj.exe", "rtl_gpj.exe"),  # a format character (bidi override) is not kept
    ],
)
def test_safe_name(raw: str, expected: str) -> None:
    assert safe_name(raw) == expected


def test_safe_name_is_one_component_within_the_byte_limit() -> None:
    for raw in ("東" * 500 + ".jpeg", "a" * 1000, "x" * 300 + "." + "y" * 40, "ñ" * 199 + ".jpg"):
        name = safe_name(raw)
        assert len(name.encode()) <= MAX_NAME_BYTES and "/" not in name and name not in (".", "..")
        name.encode().decode("utf-8")  # cut on a character boundary
    assert safe_name("東" * 500 + ".jpeg").endswith(".jpeg")  # the extension is kept
    assert with_extension("a" * 400, ".txt").endswith(".txt")
    assert len(with_extension("a" * 400, ".txt").encode()) <= MAX_NAME_BYTES


def test_text_file_names() -> None:
    assert text_file_name("Harbour notes") == "Harbour notes.txt"
    assert text_file_name("../../x") == "x.txt"
    assert text_file_name(None) == "text.txt"
    assert text_file_name("readme.txt") == "readme.txt"


def test_managed_area_paths(tmp_path: Path) -> None:
    area = ManagedArea(tmp_path)
    item = area.new_directory("photos")
    assert item.parent == tmp_path / "photos" and item.is_dir()
    assert area.catalog_root(item) == tmp_path / "photos"
    assert area.catalog_root(tmp_path / "elsewhere" / "x") == tmp_path / "elsewhere" / "x"
    for bad in ("../x", ".partial", "a/b", ""):
        with pytest.raises(ValueError):
            area.collection_dir(bad)
    with pytest.raises(ValueError):
        area.directory("photos", "../../etc")
    staged = tmp_path / "staged"
    staged.write_bytes(b"x")
    with pytest.raises(ValueError):
        area.place(staged, "photos", "a" * 32, "../escape")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not public"),  # carrier-grade NAT
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.5", "private"),  # IPv4-mapped: judged as the IPv4 address
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a00:5", "reserved"),  # NAT64 (of 10.0.0.5): within ::/8
        ("255.255.255.255", "reserved"),
        ("2001:db8::1", "private"),  # documentation
        ("2002:a00:5::1", "private"),  # 6to4 of 10.0.0.5
    ],
)
def test_addresses_that_are_not_public_are_refused(address: str, kind: str) -> None:
    reason = address_refusal(_ip(address), NONE)
    assert reason is not None and f" is {kind} (URL_ALLOWED_NETWORKS allows none)" in reason


def test_the_refusal_names_the_address() -> None:
    assert address_refusal(_ip("10.0.0.5"), NONE) == (
        "address 10.0.0.5 is private (URL_ALLOWED_NETWORKS allows none)"
    )
    assert address_refusal(_ip("::ffff:10.0.0.5"), NONE) == (
        "address 10.0.0.5 is private (URL_ALLOWED_NETWORKS allows none)"
    )


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(_ip(address), NONE) is None


def test_allowed_networks() -> None:
    allowed = parse_networks("10.0.0.0/8, 127.0.0.1,fd00::/8")
    assert address_refusal(_ip("10.1.2.3"), allowed) is None
    assert address_refusal(_ip("::ffff:10.1.2.3"), allowed) is None  # mapped: the IPv4 network allows it
    assert address_refusal(_ip("127.0.0.1"), allowed) is None
    assert address_refusal(_ip("fd12::1"), allowed) is None
    refused = address_refusal(_ip("127.0.0.2"), allowed)
    assert refused == (
        "address 127.0.0.2 is loopback (URL_ALLOWED_NETWORKS allows 10.0.0.0/8, 127.0.0.1/32, fd00::/8)"
    )
    assert parse_networks("") == ()
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/33")
    with pytest.raises(ValueError):
        Settings(_env_file=None, url_allowed_networks="not-a-network")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/a.jpg", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("/relative/path", "only http and https"),
        ("http:///nohost", "no host"),
        ("https://user:secret@example.com/a.jpg", "credentials"),
    ],
)
def test_urls_a_job_may_not_fetch(url: str, why: str) -> None:
    with pytest.raises(FetchError, match=why):
        check_url(url)


def test_download_names() -> None:
    url = httpx.URL("https://example.com/photos/harbour%20view.jpg?size=large")
    assert file_name(url, None, "image/jpeg") == "harbour view.jpg"
    assert file_name(url, 'attachment; filename="../../x.png"', None) == "x.png"
    assert file_name(httpx.URL("https://example.com/"), None, "text/html; charset=utf-8") == "download.html"
    assert file_name(httpx.URL("https://example.com/notes"), None, "text/plain") == "notes.txt"
    assert file_name(httpx.URL("https://example.com/a.php"), None, "text/html") == "a.php.html"
    assert file_name(httpx.URL("https://example.com/a.pdf"), None, "application/octet-stream") == "a.pdf"


def test_tus_metadata() -> None:
    header = "filename aGFyYm91ci5qcGc=,collection cGhvdG9z,is_confidential"
    assert parse_metadata(header) == {
        "filename": "harbour.jpg",
        "collection": "photos",
        "is_confidential": "",
    }
    assert parse_metadata("") == {}
    for bad in ("filename not*base64", "filename a b", "k dg==,k dg=="):
        with pytest.raises(MetadataError):
            parse_metadata(bad)


async def _feed(sink: FileSink, data: bytes, piece: int = 1 << 16) -> None:
    await sink.open()
    for i in range(0, len(data), piece):
        await sink.write(data[i : i + piece])


async def test_sink_streams_with_bounded_memory_and_checksums(tmp_path: Path) -> None:
    """64 MiB through the sink in 64 KiB pieces: the bytes and both checksums are right, and the memory
    it allocated meanwhile stays a small multiple of its block size (never the whole file)."""
    block = os.urandom(1 << 20)
    wav_head = b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(240)
    sink = FileSink(tmp_path / "big.wav", "big.wav", 1 << 30, "LIMIT")
    expected_b3, expected_sha = blake3.blake3(wav_head), hashlib.sha256(wav_head)
    tracemalloc.start()
    try:
        await sink.open()
        await sink.write(wav_head)
        for _ in range(64):
            for i in range(0, len(block), 1 << 16):
                await sink.write(block[i : i + (1 << 16)])
            expected_b3.update(block)
            expected_sha.update(block)
        received = await sink.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20, f"peak {peak / 2**20:.1f} MiB for a 64 MiB file"
    assert received.size == (tmp_path / "big.wav").stat().st_size == 64 * len(block) + len(wav_head)
    assert received.kind.media_type == "audio"
    assert received.checksums is not None
    assert received.checksums.blake3 == expected_b3.hexdigest()
    assert received.checksums.sha256 == expected_sha.hexdigest()


async def test_sink_refuses_over_its_limit_and_what_is_not_media(tmp_path: Path) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + os.urandom(5000)
    sink = FileSink(tmp_path / "a.jpg", "a.jpg", 4096, "MAX_UPLOAD_BYTES")
    with pytest.raises(TooLargeError, match=r"larger than MAX_UPLOAD_BYTES \(4096 bytes\)"):
        await _feed(sink, jpeg, 1000)
    await sink.abort()
    assert not (tmp_path / "a.jpg").exists()

    for name, data in (("a.bin", os.urandom(3000)), ("b.jpg", b"\x7fELF\x02\x01\x01" + bytes(300))):
        sink = FileSink(tmp_path / name, name, 1 << 20, "MAX_UPLOAD_BYTES")
        with pytest.raises(NotAcceptedError, match="not media or a document"):
            await _feed(sink, data)
        await sink.abort()
        assert not (tmp_path / name).exists()

    tiny = FileSink(tmp_path / "tiny.txt", "tiny.txt", 1 << 20, "MAX_UPLOAD_BYTES")
    await _feed(tiny, b"a short note")  # shorter than the sniffed head: judged at the end
    assert (await tiny.finish()).kind.media_type == "document"


async def test_sink_appends_after_the_recorded_offset(tmp_path: Path) -> None:
    """A resumed upload: bytes past the recorded offset (never acknowledged) are dropped, then appended."""
    path = tmp_path / "u.bin"
    path.write_bytes(b"0123456789-not-acknowledged")
    sink = FileSink(path, "u.jpg", 10, "Upload-Length", append_at=10)
    await _feed(sink, b"abcdefghij", 3)
    assert await sink.save_partial() == 20
    assert path.read_bytes() == b"0123456789abcdefghij"


async def test_a_piece_over_the_limit_is_not_counted(tmp_path: Path) -> None:
    """A PATCH longer than its upload: what fitted is kept and counted, the piece that did not fit is not."""
    path = tmp_path / "u.bin"
    path.write_bytes(b"0123456789")
    sink = FileSink(path, "u.jpg", 5, "Upload-Length", append_at=10)
    await sink.open()
    await sink.write(b"abc")
    with pytest.raises(TooLargeError):
        await sink.write(b"defgh")
    assert await sink.save_partial() == 13
    assert path.read_bytes() == b"0123456789abc"
    failed = FileSink(tmp_path / "missing" / "x.bin", "x.jpg", 5, "Upload-Length", append_at=3)
    with pytest.raises(FileNotFoundError):
        await failed.open()
    await failed.abort()  # appending: nothing to remove, and its threads are released
