"""URL downloads (`orchestrator/sources/fetch.py`) against a real HTTP origin on loopback: the address is
judged before any connection, the request goes to the address judged with the URL's Host, redirects are
judged one by one, and size, time and type limits end a download with a clear reason and nothing left."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from orchestrator.sources.addresses import parse_networks
from orchestrator.sources.fetch import PART_NAME, FetchError, FetchPolicy, download
from tests.support.orchestrator_server import free_port
from tests.support.web_origin import Answer, web_origin

JPEG = b"\xff\xd8\xff\xe0" + os.urandom(3000)
LOOPBACK = parse_networks("127.0.0.0/8")


def policy(allowed: str = "127.0.0.0/8", max_bytes: int = 1 << 20, timeout_s: float = 20.0) -> FetchPolicy:
    return FetchPolicy(parse_networks(allowed), max_bytes, timeout_s)


def nothing_left(directory: Path) -> bool:
    return not any(directory.iterdir())


def _progress(received: int, total: int | None) -> None:
    return None


async def test_a_download_goes_to_the_judged_address_with_the_urls_host(tmp_path: Path) -> None:
    """`localhost` resolves (to ::1 and 127.0.0.1 here); the request is sent to the loopback address the
    policy allows, and the origin sees the URL's own host, not the address."""
    with web_origin({"/a/photo.jpg": Answer(body=JPEG, headers={"Content-Type": "image/jpeg"})}) as origin:
        seen: list[tuple[int, int | None]] = []
        got = await download(
            f"http://localhost:{origin.port}/a/photo.jpg",
            tmp_path,
            policy(),
            lambda n, total: seen.append((n, total)),
        )
    assert got.path == tmp_path / "photo.jpg" and got.path.read_bytes() == JPEG
    assert got.kind.mime == "image/jpeg" and got.size == len(JPEG)
    assert origin.hosts == [f"localhost:{origin.port}"]
    assert seen[-1] == (len(JPEG), len(JPEG))
    assert not (tmp_path / PART_NAME).exists()


async def test_loopback_is_refused_unless_allowed(tmp_path: Path) -> None:
    with web_origin({"/x.jpg": Answer(body=JPEG)}) as origin:
        with pytest.raises(FetchError) as refused:
            await download(f"{origin.url}/x.jpg", tmp_path, policy(allowed=""), _progress)
        for numeric in ("2130706433", "0x7f.1", "[::ffff:127.0.0.1]"):  # other spellings of 127.0.0.1
            with pytest.raises(FetchError, match="is loopback"):
                await download(
                    f"http://{numeric}:{origin.port}/x.jpg", tmp_path, policy(allowed=""), _progress
                )
    assert str(refused.value) == "address 127.0.0.1 is loopback (URL_ALLOWED_NETWORKS allows none)"
    assert origin.hosts == []  # never connected
    assert nothing_left(tmp_path)


async def test_redirects_are_judged_one_by_one(tmp_path: Path) -> None:
    answers = {
        "/hop1": Answer(302, headers={"Location": "/hop2"}),
        "/hop2": Answer(301, headers={"Location": "/photo.jpg"}),
        "/photo.jpg": Answer(body=JPEG),
        "/to-metadata": Answer(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}),
        "/to-private": Answer(307, headers={"Location": "http://[::ffff:10.0.0.5]/x.jpg"}),
        "/to-file": Answer(302, headers={"Location": "file:///etc/passwd"}),
        "/loop": Answer(302, headers={"Location": "/loop"}),
    }
    with web_origin(answers) as origin:
        got = await download(f"{origin.url}/hop1", tmp_path, policy(), _progress)
        assert got.url.endswith("/photo.jpg") and got.path.read_bytes() == JPEG
        got.path.unlink()
        cases = {
            "/to-metadata": "address 169.254.169.254 is link-local (URL_ALLOWED_NETWORKS allows 127.0.0.0/8)",
            "/to-private": "address 10.0.0.5 is private (URL_ALLOWED_NETWORKS allows 127.0.0.0/8)",
            "/to-file": "only http and https URLs are fetched, not file",
            "/loop": "more than 5 redirects",
        }
        for path, reason in cases.items():
            with pytest.raises(FetchError) as refused:
                await download(f"{origin.url}{path}", tmp_path, policy(), _progress)
            assert reason in str(refused.value), path
    assert nothing_left(tmp_path)


async def test_size_time_type_and_reachability(tmp_path: Path) -> None:
    big = b"\xff\xd8\xff\xe0" + os.urandom(300_000)
    answers = {
        "/announced": Answer(body=big),
        "/streamed": Answer(body=big, chunked=True),
        "/stalls": Answer(body=JPEG, stall=True),
        "/random": Answer(body=os.urandom(5000)),
        "/gone": Answer(404),
    }
    small = policy(max_bytes=100_000)
    with web_origin(answers) as origin:
        with pytest.raises(FetchError, match=r"larger than URL_MAX_BYTES \(100000 bytes\): 300004 announced"):
            await download(f"{origin.url}/announced", tmp_path, small, _progress)
        with pytest.raises(FetchError, match=r"^larger than URL_MAX_BYTES \(100000 bytes\)$"):
            await download(f"{origin.url}/streamed", tmp_path, small, _progress)
        with pytest.raises(FetchError, match=r"not downloaded within URL_TIMEOUT_S \(1 s\)"):
            await download(f"{origin.url}/stalls", tmp_path, policy(timeout_s=1.0), _progress)
        with pytest.raises(FetchError, match=r"not media or a document \(unrecognised binary data\)"):
            await download(f"{origin.url}/random", tmp_path, policy(), _progress)
        with pytest.raises(FetchError, match="answered HTTP 404"):
            await download(f"{origin.url}/gone", tmp_path, policy(), _progress)
    closed = free_port()
    with pytest.raises(FetchError, match=rf"^unreachable: 127\.0\.0\.1:{closed} \("):
        await download(f"http://127.0.0.1:{closed}/x.jpg", tmp_path, policy(), _progress)
    with pytest.raises(FetchError, match="unreachable: cannot resolve"):
        await download("http://name-that-does-not-exist.invalid/x.jpg", tmp_path, policy(), _progress)
    assert nothing_left(tmp_path)
    assert ipaddress.ip_address("127.0.0.1") in LOOPBACK[0]


async def test_the_host_is_looked_up_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a name that answers an allowed address first and another one after. The download
    connects to the address that was judged; a second lookup of the name would fail this test."""
    import asyncio
    import socket

    lookups: list[str] = []
    real = asyncio.base_events.BaseEventLoop.getaddrinfo

    async def rebinding(self: asyncio.AbstractEventLoop, host: object, port: object, **kw: object) -> object:
        if host in ("rebind.test", b"rebind.test"):
            lookups.append(str(host))
            if len(lookups) > 1:
                raise socket.gaierror(socket.EAI_NONAME, "rebound: this answer must never be used")
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))]
        return await real(self, host, port, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", rebinding)
    with web_origin({"/x.jpg": Answer(body=JPEG)}) as origin:
        got = await download(f"http://rebind.test:{origin.port}/x.jpg", tmp_path, policy(), _progress)
    assert got.path.read_bytes() == JPEG
    assert lookups == ["rebind.test"]
    assert origin.hosts == [f"rebind.test:{origin.port}"]


async def test_a_url_jobs_fetch_phase_after_a_restart(tmp_path: Path) -> None:
    """A restored URL job: a complete download is kept (no request); a `.part` a cut-off download left is
    replaced by a new download; a refused URL removes the job's directory."""
    from orchestrator.sources.url_job import fetch_phase

    reports: list[dict[str, object]] = []
    with web_origin({"/x.jpg": Answer(body=JPEG)}) as origin:
        done = tmp_path / "done"
        done.mkdir()
        (done / "x.jpg").write_bytes(JPEG)
        await fetch_phase(done, f"{origin.url}/x.jpg", policy(), reports.append)
        assert origin.hosts == [] and reports[-1]["state"] == "downloaded"

        cut = tmp_path / "cut"
        cut.mkdir()
        (cut / PART_NAME).write_bytes(JPEG[:100])
        await fetch_phase(cut, f"{origin.url}/x.jpg", policy(), reports.append)
        assert sorted(p.name for p in cut.iterdir()) == ["x.jpg"]
        assert (cut / "x.jpg").read_bytes() == JPEG
        assert reports[-1] == {
            "state": "downloaded",
            "file": "x.jpg",
            "bytes": len(JPEG),
            "final_url": f"{origin.url}/x.jpg",
        }

        refused = tmp_path / "refused"
        refused.mkdir()
        with pytest.raises(FetchError, match="is private"):
            await fetch_phase(refused, "http://10.0.0.5/x.jpg", policy(), reports.append)
        assert not refused.exists()
