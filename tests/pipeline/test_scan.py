"""The scanner against a real tree: symlinks, FIFOs, hidden files, unicode names, backpressure, stop."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from orchestrator.pipeline.messages import SENTINEL, DirBatch
from orchestrator.pipeline.stages.scan import SCAN_BATCH, scan_stage
from tests.support.pipeline_context import make_context
from tests.support.polling import until


async def _drain(q: asyncio.Queue[object]) -> tuple[dict[str, int], dict[str, str]]:
    files: dict[str, int] = {}
    failures: dict[str, str] = {}
    while (message := await q.get()) is not SENTINEL:
        assert isinstance(message, list)
        for item in message:
            assert isinstance(item, DirBatch)
            files.update({e.path: e.size for e in item.entries})
            failures.update({f.path: f.reason for f in item.failures})
    return files, failures


async def test_scan_policies(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.jpg").write_bytes(b"a")
    (root / "sub" / "deeper" / "b.png").write_bytes(b"bb")
    (root / "sub" / "café_東京.jpg").write_bytes(b"ccc")
    (root / ".hidden.jpg").write_bytes(b"h")
    (root / ".git").mkdir()
    (root / ".git" / "x.jpg").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"secret")
    (root / "escape.jpg").symlink_to(outside / "secret.jpg")
    (root / "escape_dir").symlink_to(outside)
    (root / "inside_link.jpg").symlink_to(root / "a.jpg")
    (root / "loop_dir").symlink_to(root / "sub")
    (root / "dangling.jpg").symlink_to(root / "nope.jpg")
    os.mkfifo(root / "pipe.jpg")

    ctx = await make_context(tmp_path, root)
    q: asyncio.Queue[object] = asyncio.Queue(4)
    drained = asyncio.create_task(_drain(q))
    await scan_stage(ctx, q, 1)
    files, failures = await drained

    assert set(files) == {
        str(root / "a.jpg"),
        str(root / "sub" / "deeper" / "b.png"),
        str(root / "sub" / "café_東京.jpg"),
        str(root / "inside_link.jpg"),
    }
    assert files[str(root / "inside_link.jpg")] == 1  # the target's size, not the link's
    assert "outside the root" in failures[str(root / "escape.jpg")]
    assert "outside the root" in failures[str(root / "escape_dir")]
    assert failures[str(root / "dangling.jpg")] == "broken symlink"
    assert "not a regular file" in failures[str(root / "pipe.jpg")]
    assert len(failures) == 4


def _a_put_waits() -> bool:
    return any(getattr(t.get_coro(), "__qualname__", "") == "Queue.put" for t in asyncio.all_tasks())


async def test_scan_batches_large_directories_and_honours_backpressure(tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(SCAN_BATCH * 2 + 10):
        (root / f"{i:04d}.jpg").write_bytes(b"x")
    ctx = await make_context(tmp_path, root)
    q: asyncio.Queue[object] = asyncio.Queue(1)
    task = asyncio.create_task(scan_stage(ctx, q, 1))
    await until(q.full, "the scan's first put", 30)
    assert not task.done()  # blocked on the full queue, not buffering
    sizes = []
    while (message := await q.get()) is not SENTINEL:
        assert isinstance(message, list)
        sizes.extend(len(item.entries) for item in message)
    await task
    assert sizes == [SCAN_BATCH, SCAN_BATCH, 10]


async def test_scan_stops_when_cancelled(tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(SCAN_BATCH * 3):
        (root / f"{i:04d}.jpg").write_bytes(b"x")
    ctx = await make_context(tmp_path, root)
    q: asyncio.Queue[object] = asyncio.Queue(1)
    task = asyncio.create_task(scan_stage(ctx, q, 1))
    await until(q.full, "the scan's first put", 30)
    await until(_a_put_waits, "the thread's next put waiting on the loop", 30)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert ctx.control.stop_flag.is_set()
    # The thread polls the flag every 0.2 s: within five polls it withdraws its waiting put and exits.
    await asyncio.sleep(1.0)
    q.get_nowait()  # room again: a put still waiting would land now
    await asyncio.sleep(0.1)
    assert q.empty()


async def test_unchanged_files_take_the_fast_path_and_travel_by_name(tmp_path: Path) -> None:
    from orchestrator.file_index import IndexedFile

    root = tmp_path / "tree"
    for d in range(3):
        (root / f"d{d}").mkdir(parents=True)
        for i in range(5):
            (root / f"d{d}" / f"{i}.jpg").write_bytes(b"x" * (i + 1))
    ctx = await make_context(tmp_path, root)
    rows = []
    for path in sorted(root.rglob("*.jpg")):
        st = path.stat()
        rows.append(IndexedFile(str(path.parent), path.name, st.st_size, st.st_mtime_ns, st.st_ino, "h", 1))
    await ctx.index.mark_done("test", rows)
    (root / "d1" / "3.jpg").write_bytes(b"changed!")  # size differs: the careful path, with its old row
    q: asyncio.Queue[object] = asyncio.Queue(8)
    await scan_stage(ctx, q, 1)
    messages = []
    while (message := await q.get()) is not SENTINEL:
        messages.append(message)
    batches = [b for m in messages for b in m]  # type: ignore[attr-defined]
    unchanged = sorted(f"{b.directory}/{n}" for b in batches for n in b.unchanged)
    assert len(unchanged) == 14 and f"{root}/d1/3.jpg" not in unchanged
    changed = [(b.directory, e.name, b.known[e.name].content_hash) for b in batches for e in b.entries]
    assert changed == [(str(root / "d1"), "3.jpg", "h")]
    assert len(messages) <= 2  # unchanged-only directories share a message
