"""A file swapped between the scan and the read: prepare opens only the file the scan saw. A file replaced by
a symlink to a file outside the root, or by another file, fails with that reason; nothing of the other
file is read, hashed or passed on. Real scan and prepare stages over a real tree; the swap happens between
the two, deterministically (the scan's batches are collected first, then fed to prepare)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from orchestrator.pipeline.messages import SENTINEL, DirBatch, PrepareQueue, ScanQueue
from orchestrator.pipeline.stages.prepare import PrepareStage
from orchestrator.pipeline.stages.scan import scan_stage
from scripts.make_samples import text_image
from tests.support.pipeline_context import make_context


async def _scanned(q: ScanQueue) -> list[DirBatch]:
    batches: list[DirBatch] = []
    while (message := await q.get()) is not SENTINEL:
        batches.extend(message)
    return batches


async def test_a_file_swapped_after_the_scan_is_not_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    for name, words in (("swapped.png", "SWAPPED"), ("replaced.png", "REPLACED"), ("kept.png", "KEPT")):
        text_image(words).save(root / name)
    text_image("SECRET").save(outside / "secret.png")
    text_image("IMPOSTOR").save(outside / "impostor.png")
    (root / "link.png").symlink_to(root / "kept.png")  # an in-root link: followed, to the scanned file
    ctx = await make_context(tmp_path, root)
    q: ScanQueue = asyncio.Queue(16)
    collected = asyncio.create_task(_scanned(q))
    await scan_stage(ctx, q, 1)
    batches = await collected
    assert sorted(e.name for b in batches for e in b.entries) == [
        "kept.png",
        "link.png",
        "replaced.png",
        "swapped.png",
    ]

    # Between scan and read: one file becomes a symlink out of the root, one is replaced by another file.
    (root / "swapped.png").unlink()
    (root / "swapped.png").symlink_to(outside / "secret.png")
    os.replace(outside / "impostor.png", root / "replaced.png")

    in_q: ScanQueue = asyncio.Queue()
    for batch in batches:
        await in_q.put([batch])
    await in_q.put(SENTINEL)
    out_q: PrepareQueue = asyncio.Queue()
    await PrepareStage(ctx).worker(in_q, out_q)

    passed_on = []
    while not out_q.empty():
        item = out_q.get_nowait()
        assert item is not SENTINEL
        passed_on.append(item.entry.name)
    assert sorted(passed_on) == ["kept.png", "link.png"]  # the link's content is claimed once, linked once
    reasons = {os.path.basename(e.path): e.reason for e in ctx.progress.errors}
    assert reasons == {
        "swapped.png": "file was replaced by a symlink after the scan (not followed)",
        "replaced.png": "file was replaced by another file after the scan (device and inode differ)",
    }
    assert ctx.progress.counters["bytes"] == 2 * (root / "kept.png").stat().st_size
    await ctx.store.close()
