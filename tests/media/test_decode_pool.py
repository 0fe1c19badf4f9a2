"""DecodePool: real worker processes. The hook below is what the workers run in most tests (the pool's
``target``): it hangs, crashes, sleeps or decodes, depending on the path it is given."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.media.av_decode import AVOptions, DecodedAV, decode_av
from orchestrator.media.decode_pool import DecodePool, DecodePoolClosedError
from orchestrator.media.images import MediaDecodeError
from scripts.av_write import textured, tone, write_video

HOOK = f"{__name__}:hook"


def hook(path: str, options: AVOptions) -> object:
    """Runs in a worker: "hang", "exit:N", "sigkill", "sleep:S" (returns the pid), "pid"; else decode."""
    if path == "hang":
        time.sleep(3600)
    if path.startswith("exit:"):
        os._exit(int(path[5:]))
    if path == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if path.startswith("sleep:"):
        time.sleep(float(path[6:]))
        return os.getpid()
    if path == "pid":
        return os.getpid()
    return decode_av(path, options)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("pool") / "clip.mp4"
    write_video(path, [(textured(90, 160, seed=4), 3.0)], fps=10, audio=tone(3.0))
    return str(path)


async def _hooked(pool: DecodePool, path: str) -> Any:
    """decode() through the test hook, which returns pids rather than DecodedAV."""
    return await pool.decode(path, AVOptions())


def _children() -> set[int]:
    """Pids of this process's live (not zombie) children."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_decodes_in_a_worker_process(clip: str) -> None:
    pool = DecodePool(workers=1, timeout_s=30)
    assert pool.worker_pids == []  # started lazily
    try:
        result = await pool.decode(clip, AVOptions())
        assert isinstance(result, DecodedAV)
        assert result.media_type == "video" and result.chunks[0].keyframes
        assert pool.worker_pids and os.getpid() not in pool.worker_pids
    finally:
        await pool.close()


async def test_a_corrupt_file_is_a_media_decode_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"not a video at all\n" * 50)
    pool = DecodePool(workers=1, timeout_s=30)
    try:
        with pytest.raises(MediaDecodeError, match="not a readable"):
            await pool.decode(str(bogus), AVOptions())
        worker = pool.worker_pids
        with pytest.raises(MediaDecodeError):
            await pool.decode(str(bogus), AVOptions())
        assert pool.worker_pids == worker  # a file error does not cost the worker
    finally:
        await pool.close()


async def test_at_most_workers_decodes_at_once() -> None:
    pool = DecodePool(workers=2, timeout_s=30, target=HOOK)
    try:
        await asyncio.gather(_hooked(pool, "pid"), _hooked(pool, "pid"))  # warm up
        started = time.monotonic()
        pids = await asyncio.gather(*(_hooked(pool, "sleep:0.4") for _ in range(6)))
        elapsed = time.monotonic() - started
        assert len(set(pids)) <= 2
        assert elapsed >= 3 * 0.4 - 0.05, elapsed  # three rounds of two
        assert elapsed < 3.0, elapsed
    finally:
        await pool.close()


async def test_a_hung_decode_times_out_while_others_succeed(clip: str) -> None:
    pool = DecodePool(workers=2, timeout_s=1.5, target=HOOK)
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    ticking = asyncio.create_task(ticker())
    try:
        outcomes: list[object] = await asyncio.gather(
            _hooked(pool, "hang"), pool.decode(clip, AVOptions()), return_exceptions=True
        )
        hung, good = outcomes
        assert isinstance(hung, MediaDecodeError)
        assert str(hung) == "decoding timed out after 1.5 s"
        assert isinstance(good, DecodedAV)
        assert isinstance(await pool.decode(clip, AVOptions()), DecodedAV)  # the pool replaced the worker
        assert max(lags) < 0.2, max(lags)  # the event loop was never blocked
    finally:
        ticking.cancel()
        await pool.close()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("exit:3", r"decoder crashed \(exit code 3\)"),
        ("sigkill", r"decoder crashed \(exit code -9, SIGKILL\)"),
    ],
)
async def test_a_crashing_worker_is_reported_and_replaced(clip: str, path: str, reason: str) -> None:
    pool = DecodePool(workers=2, timeout_s=30, target=HOOK)
    try:
        crashed, good = await asyncio.gather(
            pool.decode(path, AVOptions()), pool.decode(clip, AVOptions()), return_exceptions=True
        )
        assert isinstance(crashed, MediaDecodeError)
        assert re.fullmatch(reason, str(crashed)), str(crashed)
        assert isinstance(good, DecodedAV)
        results = await asyncio.gather(*(pool.decode(clip, AVOptions()) for _ in range(3)))
        assert all(isinstance(r, DecodedAV) for r in results)
    finally:
        await pool.close()


async def test_close_leaves_no_child_processes() -> None:
    before = _children()
    pool = DecodePool(workers=2, timeout_s=30, target=HOOK)
    pids = await asyncio.gather(_hooked(pool, "pid"), _hooked(pool, "sleep:0.2"))
    busy = asyncio.create_task(_hooked(pool, "hang"))
    await asyncio.sleep(0.3)
    assert set(pool.worker_pids) - before
    await pool.close()
    with pytest.raises(DecodePoolClosedError):
        await busy
    assert _children() <= before
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(DecodePoolClosedError):
        await _hooked(pool, "pid")


async def test_a_cancelled_decode_kills_its_worker() -> None:
    pool = DecodePool(workers=1, timeout_s=30, target=HOOK)
    try:
        worker = await _hooked(pool, "pid")
        task = asyncio.create_task(_hooked(pool, "hang"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if not _alive(worker):
                break
            await asyncio.sleep(0.02)
        assert not _alive(worker)
        assert await _hooked(pool, "pid") != worker  # a fresh worker serves the next file
    finally:
        await pool.close()


def test_workers_exit_when_the_pool_process_dies(tmp_path: Path) -> None:
    """No orphans even when the orchestrator is SIGKILLed mid-decode."""
    script = textwrap.dedent(
        f"""
        import asyncio, os, sys
        sys.path[:0] = {[p for p in sys.path if p]!r}
        from orchestrator.media.av_decode import AVOptions
        from orchestrator.media.decode_pool import DecodePool

        async def main():
            pool = DecodePool(workers=1, timeout_s=60, target={HOOK!r})
            print(await pool.decode("pid", AVOptions()), flush=True)
            await pool.decode("hang", AVOptions())

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    worker = int(proc.stdout.readline())
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)
