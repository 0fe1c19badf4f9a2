"""Pruning against a real file index and Edge store: gone files leave their points; unlisted
directories (and everything under them) are protected; files that were not media are just forgotten."""

from __future__ import annotations

from pathlib import Path

from orchestrator.clients.vectors import CollectionSpec, PointRecord, SparseVector
from orchestrator.file_index import IndexedFile
from orchestrator.ids import point_id
from orchestrator.pipeline.prune import SeenFiles, prune
from tests.support.pipeline_context import make_context


def _row(directory: str, name: str, content_hash: str) -> IndexedFile:
    return IndexedFile(directory, name, 1, 1, 1, content_hash, 1 if content_hash else 0)


async def test_prune_respects_unlisted_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    ctx = await make_context(tmp_path, root)
    r = str(root)
    await ctx.store.ensure_collection("test", CollectionSpec(dense={"text": 2}))
    points = [
        PointRecord(point_id(h, 0), {"text": [1.0, 0.0]}, {"sparse": SparseVector([], [])}, {"paths": paths})
        for h, paths in [
            ("h1", [f"{r}/a/x.jpg"]),
            ("h2", [f"{r}/b/c/y.jpg"]),
            ("h3", [f"{r}/a/z.jpg", f"{r}/z.jpg"]),
        ]
    ]
    await ctx.store.upsert("test", points)
    await ctx.index.mark_done(
        "test",
        [
            _row(f"{r}/a", "x.jpg", "h1"),
            _row(f"{r}/b/c", "y.jpg", "h2"),
            _row(f"{r}/a", "z.jpg", "h3"),
            _row(r, "z.jpg", "h3"),
            _row(r, "README.txt", ""),
            _row(f"{r}-sibling", "w.jpg", "h9"),  # another root sharing the prefix: never touched
        ],
    )
    seen = SeenFiles()
    seen.add(r, ["z.jpg"])
    seen.unlisted.add(f"{r}/b")  # could not be listed: y.jpg below it may well still exist
    assert await prune(ctx, seen) == 3  # x.jpg, a/z.jpg, README.txt
    assert await ctx.store.count("test") == 2  # h1 deleted; h2 protected; h3 still held by z.jpg
    held = await ctx.store.retrieve("test", [point_id("h3", 0)])
    assert held[point_id("h3", 0)]["paths"] == [f"{r}/z.jpg"]
    assert await ctx.index.count("test") == 3  # y.jpg, z.jpg, and the sibling's w.jpg
    assert set(await ctx.index.lookup_dir("test", f"{r}-sibling")) == {"w.jpg"}
    await ctx.store.close()
