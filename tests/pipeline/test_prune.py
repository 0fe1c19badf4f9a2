"""Pruning against real files, a real file index and a real Edge store: the scanner names what is gone
(deleted files, whole deleted directories), unlistable directories are protected, points lose the paths
and are deleted when no path holds their content; files that were not media are just forgotten."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from orchestrator.clients.vectors import CollectionSpec, PointRecord, SparseVector
from orchestrator.file_index import IndexedFile
from orchestrator.ids import point_id
from orchestrator.pipeline.messages import SENTINEL, DirBatch
from orchestrator.pipeline.prune import prune
from orchestrator.pipeline.stages.scan import _Walker, scan_stage
from tests.support.pipeline_context import make_context


async def _gone(q: asyncio.Queue[object]) -> list[tuple[str, str]]:
    found = []
    while (message := await q.get()) is not SENTINEL:
        assert isinstance(message, list)
        for batch in message:
            assert isinstance(batch, DirBatch)
            found.extend((batch.directory, name) for name in batch.gone)
    return sorted(found)


async def test_scan_names_what_is_gone_and_prune_removes_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in ("a/x.jpg", "a/z.jpg", "b/c/y.jpg", "z.jpg", "README.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"data")
    sibling = tmp_path / "root-sibling"
    sibling.mkdir()
    ctx = await make_context(tmp_path, root)
    r = str(root)
    hashes = {"a/x.jpg": "h1", "b/c/y.jpg": "h2", "a/z.jpg": "h3", "z.jpg": "h3", "README.txt": ""}
    rows = []
    for rel, h in hashes.items():
        st = (root / rel).stat()
        rows.append(
            IndexedFile(
                str((root / rel).parent),
                (root / rel).name,
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
                h,
                1 if h else 0,
            )
        )
    rows.append(IndexedFile(str(sibling), "w.jpg", 1, 1, 1, "h9", 1))  # another root sharing the prefix
    await ctx.index.mark_done("test", rows)
    await ctx.store.ensure_collection("test", CollectionSpec(dense={"text": 2}))
    await ctx.store.upsert(
        "test",
        [
            PointRecord(
                point_id(h, 0), {"text": [1.0, 0.0]}, {"sparse": SparseVector([], [])}, {"paths": paths}
            )
            for h, paths in [
                ("h1", [f"{r}/a/x.jpg"]),
                ("h2", [f"{r}/b/c/y.jpg"]),
                ("h3", [f"{r}/a/z.jpg", f"{r}/z.jpg"]),
            ]
        ],
    )
    (root / "a/x.jpg").unlink()
    (root / "a/z.jpg").unlink()
    (root / "README.txt").unlink()
    shutil.rmtree(root / "b")

    q: asyncio.Queue[object] = asyncio.Queue(16)
    drained = asyncio.create_task(_gone(q))
    await scan_stage(ctx, q, 1)
    gone = await drained
    assert gone == sorted(
        [(f"{r}/a", "x.jpg"), (f"{r}/a", "z.jpg"), (r, "README.txt"), (f"{r}/b/c", "y.jpg")]
    )

    await ctx.index.add_gone(ctx.job_id, gone)
    assert await prune(ctx) == 4
    assert await ctx.store.count("test") == 1  # h1 and h2 deleted; h3 still held by z.jpg
    held = await ctx.store.retrieve("test", [point_id("h3", 0)])
    assert held[point_id("h3", 0)]["paths"] == [f"{r}/z.jpg"]
    assert await ctx.index.count("test") == 2  # z.jpg and the sibling's w.jpg
    assert set(await ctx.index.lookup_dir("test", str(sibling))) == {"w.jpg"}
    await ctx.store.close()


async def test_unlistable_directories_protect_what_is_below_them(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "ok").mkdir(parents=True)
    ctx = await make_context(tmp_path, root)
    await ctx.index.mark_done(
        "test",
        [
            IndexedFile(f"{root}/locked/deep", "x.jpg", 1, 1, 1, "h", 1),
            IndexedFile(f"{root}/gone", "y.jpg", 1, 1, 1, "g", 1),
        ],
    )
    q: asyncio.Queue[object] = asyncio.Queue(16)
    walker = _Walker(ctx, asyncio.get_running_loop(), q)
    walker._visited.add(str(root))
    walker._unlisted.append(f"{root}/locked")  # as if listing it had failed (permissions, I/O error)

    def in_scan_thread() -> None:
        reader = ctx.index.reader()  # a connection belongs to the thread that made it
        try:
            walker._vanished_directories(reader)
            walker._send()
        finally:
            reader.close()

    await asyncio.to_thread(in_scan_thread)
    batches = await q.get()
    assert isinstance(batches, list)
    assert [(b.directory, b.gone) for b in batches] == [(f"{root}/gone", ["y.jpg"])]


async def test_prune_of_more_gone_contents_than_sqlite_binds_in_one_statement(tmp_path: Path) -> None:
    """More distinct gone hashes than SQLite's variable limit: one statement over all of them failed every
    later job on the root; pages of them do not. The limit is this build's 250000 (Python's libsqlite3;
    32766 or 999 elsewhere); the test lowers it on the index's connection to 999, the oldest default, so
    that going past it takes 1,009 files rather than a quarter of a million."""
    import sqlite3

    root = tmp_path / "root"
    root.mkdir()
    ctx = await make_context(tmp_path, root)
    conn = ctx.index.conn
    await ctx.index.run(conn.setlimit, sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    limit = await ctx.index.run(conn.getlimit, sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    assert limit == 999
    n = limit + 10
    directory = f"{root}/gone"
    await ctx.index.mark_done(
        "test", [IndexedFile(directory, f"{i:06d}.jpg", 1, 1, i, f"h{i}", 1) for i in range(n)]
    )
    await ctx.store.ensure_collection("test", CollectionSpec(dense={"text": 2}))
    kept = [i for i in (0, n // 2, n - 1)]  # some of them have points
    await ctx.store.upsert(
        "test",
        [
            PointRecord(
                point_id(f"h{i}", 0),
                {"text": [1.0, 0.0]},
                {"sparse": SparseVector([], [])},
                {"paths": [f"{directory}/{i:06d}.jpg"]},
            )
            for i in kept
        ],
    )
    await ctx.index.add_gone(ctx.job_id, [(directory, f"{i:06d}.jpg") for i in range(n)])
    assert await prune(ctx) == n
    assert await ctx.index.count("test") == 0
    assert await ctx.store.count("test") == 0
    await ctx.store.close()
