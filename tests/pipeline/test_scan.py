"""The scanner against a real tree: symlinks, FIFOs, hidden files, unicode names, backpressure, stop."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from orchestrator.pipeline.messages import SENTINEL, DirBatch
from orchestrator.pipeline.stages.scan import SCAN_BATCH, scan_stage
from tests.support.pipeline_context import make_context


async def _drain(q: asyncio.Queue[object]) -> tuple[dict[str, int], dict[str, str]]:
    files: dict[str, int] = {}
    failures: dict[str, str] = {}
    while (item := await q.get()) is not SENTINEL:
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


async def test_scan_batches_large_directories_and_honours_backpressure(tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(SCAN_BATCH * 2 + 10):
        (root / f"{i:04d}.jpg").write_bytes(b"x")
    ctx = await make_context(tmp_path, root)
    q: asyncio.Queue[object] = asyncio.Queue(1)
    task = asyncio.create_task(scan_stage(ctx, q, 1))
    await asyncio.sleep(0.3)
    assert q.qsize() == 1 and not task.done()  # blocked on the full queue, not buffering
    sizes = []
    while (item := await q.get()) is not SENTINEL:
        assert isinstance(item, DirBatch)
        sizes.append(len(item.entries))
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
    await asyncio.sleep(0.2)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert ctx.control.stop_flag.is_set()
    await asyncio.sleep(0.5)  # the thread polls the flag every 0.2 s and exits without putting more
    assert q.qsize() == 1
