"""A batch's write and its done mark are one unit: cancelling the upsert stage, even twice, while a unit is
in flight lets the unit finish (points stored AND files marked done) before the cancellation goes through.
Real Edge store and file index; the store is held inside its upsert by an event the test releases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orchestrator.clients.vectors import CollectionSpec, PointRecord
from orchestrator.pipeline.messages import (
    SENTINEL,
    AnalyzedFile,
    ChunkAnalysis,
    ChunkInput,
    FileEntry,
    InferQueue,
    MediaInfo,
    PreparedFile,
)
from orchestrator.pipeline.stages.upsert import UpsertStage, uncancellable
from tests.support.counting_store import CountingStore
from tests.support.pipeline_context import make_context


class HeldStore(CountingStore):
    """The real store; `upsert` on the main collection waits for `gate` once it has `entered`."""

    def __init__(self, inner: CountingStore) -> None:
        super().__init__(inner.inner)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.finished = False

    async def upsert(self, name: str, points: list[PointRecord]) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().upsert(name, points)
        self.finished = True


def _analyzed(root: Path) -> AnalyzedFile:
    path = root / "a.jpg"
    path.write_bytes(b"a")
    st = path.stat()
    entry = FileEntry(str(path), str(root), "a.jpg", st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    analysis = ChunkAnalysis("", ["cat"], None, [], "Shows: cat.", [1.0, 0.0, 0.0, 0.0], None)
    prepared = PreparedFile(
        entry, "c" * 64, MediaInfo("image", "image/jpeg", 1, 1, {}), [ChunkInput(0, None, None)], None
    )
    return AnalyzedFile(prepared, {0: analysis})


async def _turn() -> None:
    """One turn of the event loop: lets a cancellation just requested reach the task (no waiting on time)."""
    await asyncio.sleep(0)


async def test_two_cancels_cannot_cut_a_unit_in_half(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    ctx = await make_context(tmp_path, root)
    store = HeldStore(CountingStore(ctx.store))
    ctx.store = store
    await store.ensure_collection("test", CollectionSpec(dense={"text": 4}))
    q: InferQueue = asyncio.Queue(4)
    await q.put(_analyzed(root))
    await q.put(SENTINEL)
    task = asyncio.create_task(UpsertStage(ctx).run(q, 1))
    await asyncio.wait_for(store.entered.wait(), 30)  # the unit is in flight, held inside the store

    for _ in range(2):
        task.cancel()
        await _turn()
        assert not task.done()  # still waiting for the unit
    store.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    # Checked before anything else runs: the unit was complete when the cancellation came through.
    assert store.finished and ctx.progress.counters["done"] == 1
    assert await store.count("test") == 1
    assert [f.name for f in (await ctx.index.lookup_dir("test", str(root))).values()] == ["a.jpg"]
    await store.close()


async def test_uncancellable_returns_the_result_and_raises_the_work_s_error() -> None:
    async def value() -> int:
        return 7

    async def broken() -> None:
        raise ValueError("no")

    assert await uncancellable(value()) == 7
    with pytest.raises(ValueError, match="no"):
        await uncancellable(broken())
