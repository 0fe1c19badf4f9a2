"""DecodePool: real worker processes. The hook below is what the workers run in most tests (the pool's
``target``): it hangs, spins, crashes, sleeps, allocates or decodes, depending on the path it is given."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.media.av_decode import AVOptions, DecodedAV, decode_av
from orchestrator.media.decode_pool import DecodePool, DecodePoolClosedError
from orchestrator.media.images import MediaDecodeError
from scripts.av_write import textured, tone, write_video

# A worker with PyAV, numpy and Pillow loaded maps ~270 MB (VmPeak, measured); its small clip ~300 MB.
TEST_MEMORY_LIMIT_MB = 1024


def hook(path: str, options: AVOptions) -> object:
    """Runs in a worker: "hang[:FILE]" (FILE, when given, is created first: "I have started"), "spin:FILE"
    (the same, then a C loop that never lets go of the GIL), "exit:N", "sigkill", "sleep:S" (returns the
    pid), "pid", "alloc:MB" (returns MB and the worker's peak address space in MB); else decode."""
    if path.startswith(("hang", "spin")) and ":" in path:
        Path(path.split(":", 1)[1]).write_text(str(os.getpid()))
    if path.startswith("hang"):
        time.sleep(3600)
    if path.startswith("spin"):
        re.match(r"(a+)+$", "a" * 60 + "b")  # catastrophic backtracking: 2**60 steps inside the regex engine
    if path.startswith("alloc:"):
        block = bytearray(int(path[6:]) << 20)
        return len(block) >> 20, _peak_mb()
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


HOOK = hook


def _peak_mb() -> int:
    with open("/proc/self/status") as f:
        peak = next(line for line in f if line.startswith("VmPeak:"))
    return int(peak.split()[1]) >> 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("pool") / "clip.mp4"
    write_video(path, [(textured(90, 160, seed=4), 3.0)], fps=10, audio=tone(3.0))
    return str(path)


async def _hooked(pool: DecodePool, path: str) -> Any:
    """decode() through the test hook, which returns pids rather than DecodedAV."""
    return await pool.decode(path, AVOptions())


def _children() -> set[int]:
    """Pids of this process's live (not zombie) worker processes (multiprocessing's resource tracker, a
    child too, lives as long as this process and is no worker)."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                tracker = b"resource_tracker" in f.read()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z" and not tracker:
            found.add(int(entry))
    return found


async def _started(marker: Path) -> int:
    """Wait (bounded) until a hook running "hang:"/"spin:" created its marker; the worker's pid."""
    for _ in range(1500):
        text = await asyncio.to_thread(lambda: marker.read_text() if marker.is_file() else "")
        if text:
            return int(text)
        await asyncio.sleep(0.02)
    raise TimeoutError(f"the hook never started ({marker})")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_decodes_in_a_worker_process(clip: str) -> None:
    before = _children()
    pool = DecodePool(workers=1, timeout_s=30)
    assert _children() == before  # started lazily
    try:
        result = await pool.decode(clip, AVOptions())
        assert isinstance(result, DecodedAV)
        assert result.media_type == "video" and result.chunks[0].keyframes
        assert _children() - before  # in a worker process of this one
    finally:
        await pool.close()


async def test_a_corrupt_file_is_a_media_decode_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"not a video at all\n" * 50)
    pool = DecodePool(workers=1, timeout_s=30, target=HOOK)
    try:
        worker = await _hooked(pool, "pid")
        assert worker != os.getpid()
        with pytest.raises(MediaDecodeError, match="not a readable"):
            await pool.decode(str(bogus), AVOptions())
        with pytest.raises(MediaDecodeError):
            await pool.decode(str(bogus), AVOptions())
        assert await _hooked(pool, "pid") == worker  # a file error does not cost the worker
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


async def test_close_leaves_no_child_processes(tmp_path: Path) -> None:
    before = _children()
    pool = DecodePool(workers=2, timeout_s=30, target=HOOK)
    pids = await asyncio.gather(_hooked(pool, "pid"), _hooked(pool, "sleep:0.2"))
    busy = asyncio.create_task(_hooked(pool, f"hang:{tmp_path / 'started'}"))
    await _started(tmp_path / "started")
    assert all(_alive(pid) for pid in pids) and set(pids) <= _children() - before
    await pool.close()
    with pytest.raises(DecodePoolClosedError):
        await busy
    assert _children() <= before
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(DecodePoolClosedError):
        await _hooked(pool, "pid")


async def test_a_cancelled_decode_kills_its_worker(tmp_path: Path) -> None:
    pool = DecodePool(workers=1, timeout_s=30, target=HOOK)
    try:
        worker = await _hooked(pool, "pid")
        task = asyncio.create_task(_hooked(pool, f"hang:{tmp_path / 'started'}"))
        assert await _started(tmp_path / "started") == worker
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


async def test_a_decode_over_the_memory_limit_fails_that_file_only(clip: str) -> None:
    pool = DecodePool(workers=2, timeout_s=60, target=HOOK, memory_limit_mb=TEST_MEMORY_LIMIT_MB)
    try:
        outcomes: list[object] = await asyncio.gather(
            _hooked(pool, f"alloc:{2 * TEST_MEMORY_LIMIT_MB}"),
            pool.decode(clip, AVOptions()),
            return_exceptions=True,
        )
        greedy, good = outcomes
        assert isinstance(greedy, MediaDecodeError), greedy
        limit = f"DECODE_MEMORY_LIMIT_MB={TEST_MEMORY_LIMIT_MB}"
        assert str(greedy) == f"decoding needs more memory than this worker may use ({limit})"
        assert isinstance(good, DecodedAV)
        # The limit is per worker and stays: within it a file is fine, and the pool goes on.
        allocated, peak = await _hooked(pool, "alloc:64")
        assert allocated == 64 and peak < TEST_MEMORY_LIMIT_MB
        assert isinstance(await pool.decode(clip, AVOptions()), DecodedAV)
    finally:
        await pool.close()


_ORPHAN_SCRIPT = """
import asyncio, sys
sys.path[:0] = {path!r}
from orchestrator.media.av_decode import AVOptions
from orchestrator.media.decode_pool import DecodePool
from tests.media.test_decode_pool import hook

async def main():
    pool = DecodePool(workers=2, timeout_s=60, target=hook)
    pids = await asyncio.gather(*(pool.decode("sleep:0.5", AVOptions()) for _ in range(2)))
    print(*pids, flush=True)
    await pool.decode({busy!r}, AVOptions())

asyncio.run(main())
"""


@pytest.mark.parametrize("busy", ["hang", "spin"])
def test_workers_exit_when_the_pool_process_dies(tmp_path: Path, busy: str) -> None:
    """No orphans even when the orchestrator is SIGKILLed mid-decode: the busy worker (in a sleep, or in a
    C loop that holds the GIL, where no thread of its own could look after it) and the idle one."""
    marker = tmp_path / "started"
    script = _ORPHAN_SCRIPT.format(path=[p for p in sys.path if p], busy=f"{busy}:{marker}")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        assert proc.stdout is not None
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(set(workers)) == 2
        deadline = time.monotonic() + 60
        while not marker.is_file() or not marker.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, "the busy decode never started"
            time.sleep(0.02)
        assert int(marker.read_text()) in workers
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(_alive(w) for w in workers)
    finally:
        proc.kill()
        proc.wait()
        for worker in workers:  # a failed check must not leave them behind either
            if _alive(worker):
                os.kill(worker, signal.SIGKILL)


async def test_a_worker_that_dies_while_idle_costs_no_file(clip: str) -> None:
    """pebble gives up on a whole pool when a worker dies with no file running; the next file gets a new
    pool (whether it comes before or after pebble noticed) and decodes."""
    pool = DecodePool(workers=1, timeout_s=30, target=HOOK)
    try:
        worker = await _hooked(pool, "pid")
        os.kill(worker, signal.SIGKILL)  # the OOM killer, say
        for _ in range(250):
            if not _alive(worker):
                break
            await asyncio.sleep(0.02)
        assert isinstance(await pool.decode(clip, AVOptions()), DecodedAV)
        assert await _hooked(pool, "pid") not in (worker, os.getpid())
        os.kill(await _hooked(pool, "pid"), signal.SIGKILL)
        assert isinstance(await pool.decode(clip, AVOptions()), DecodedAV)  # at once this time: the race
    finally:
        await pool.close()
