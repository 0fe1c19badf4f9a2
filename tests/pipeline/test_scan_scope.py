"""A watched folder's pass: the scanner lists only its scope's directories and never names files gone in a
directory it did not list; it leaves files still being written for later."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

from orchestrator.file_index import IndexedFile
from orchestrator.pipeline.context import PipelineContext, ScanScope, WatchScan
from orchestrator.pipeline.messages import SENTINEL, DirBatch, ScanQueue
from orchestrator.pipeline.stages.scan import _Walker, scan_stage
from tests.support.pipeline_context import make_context

FILES = ["a/one.jpg", "a/two.jpg", "a/sub/three.jpg", "b/four.jpg", "c/d/five.jpg", "c/d/e/six.jpg", "r.jpg"]


async def _indexed_tree(tmp_path: Path) -> tuple[Path, PipelineContext]:
    """A tree whose every file the index has as done (unchanged for a scan), files written long ago."""
    root = tmp_path / "root"
    rows = []
    for rel in FILES:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode())
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
        st = path.stat()
        rows.append(IndexedFile(str(path.parent), path.name, st.st_size, st.st_mtime_ns, st.st_ino, "h", 1))
    ctx = await make_context(tmp_path, root)
    await ctx.index.mark_done(ctx.collection, rows)
    return root, ctx


async def _scan(ctx: PipelineContext) -> tuple[set[str], set[str], set[str], set[str]]:
    """(new or changed files, gone files, unchanged files, directories listed or named)."""
    q: ScanQueue = asyncio.Queue(4)
    entries: set[str] = set()
    gone: set[str] = set()
    unchanged: set[str] = set()
    directories: set[str] = set()

    async def drain() -> None:
        while (message := await q.get()) is not SENTINEL:
            assert isinstance(message, list)
            for batch in message:
                assert isinstance(batch, DirBatch)
                directories.add(batch.directory)
                entries.update(e.path for e in batch.entries)
                gone.update(os.path.join(batch.directory, n) for n in batch.gone)
                unchanged.update(os.path.join(batch.directory, n) for n in batch.unchanged)

    drained = asyncio.create_task(drain())
    await scan_stage(ctx, q, 1)
    await drained
    return entries, gone, unchanged, directories


def _scope(root: Path, shallow: tuple[str, ...] = (), deep: tuple[str, ...] = ()) -> WatchScan:
    return WatchScan(
        0.0,
        ScanScope(frozenset(str(root / d) for d in shallow), frozenset(str(root / d) for d in deep)),
    )


async def test_a_shallow_directory_is_listed_alone(tmp_path: Path) -> None:
    root, ctx = await _indexed_tree(tmp_path)
    (root / "a/new.jpg").write_bytes(b"new")
    (root / "a/two.jpg").unlink()
    (root / "b/four.jpg").unlink()  # gone too, but b is not in this pass's scope
    shutil.rmtree(root / "c/d/e")  # and this whole directory
    ctx.watch = _scope(root, shallow=("a",))
    entries, gone, unchanged, directories = await _scan(ctx)
    assert entries == {str(root / "a/new.jpg")}
    assert gone == {str(root / "a/two.jpg")}
    assert unchanged == {str(root / "a/one.jpg")}
    assert directories == {str(root / "a")}  # not a/sub, not b, not the root
    assert ctx.progress.scan_complete


async def test_the_same_changes_in_a_whole_pass(tmp_path: Path) -> None:
    """The control: a whole pass names every one of them gone."""
    root, ctx = await _indexed_tree(tmp_path)
    (root / "a/two.jpg").unlink()
    (root / "b/four.jpg").unlink()
    shutil.rmtree(root / "c/d/e")
    ctx.watch = WatchScan(0.0, None)
    _, gone, _, _ = await _scan(ctx)
    assert gone == {str(root / "a/two.jpg"), str(root / "b/four.jpg"), str(root / "c/d/e/six.jpg")}


async def test_a_deep_directory_is_walked_and_what_vanished_under_it_is_gone(tmp_path: Path) -> None:
    root, ctx = await _indexed_tree(tmp_path)
    (root / "c/d/new").mkdir()
    (root / "c/d/new/seven.jpg").write_bytes(b"7")
    shutil.rmtree(root / "c/d/e")
    (root / "a/sub/three.jpg").unlink()  # outside the scope: stays
    ctx.watch = _scope(root, deep=("c",))
    entries, gone, unchanged, _ = await _scan(ctx)
    assert entries == {str(root / "c/d/new/seven.jpg")}
    assert gone == {str(root / "c/d/e/six.jpg")}
    assert unchanged == {str(root / "c/d/five.jpg")}


async def test_a_vanished_scope_directory_names_its_tree_gone(tmp_path: Path) -> None:
    root, ctx = await _indexed_tree(tmp_path)
    shutil.rmtree(root / "c")
    shutil.rmtree(root / "a/sub")
    ctx.watch = _scope(root, shallow=("a/sub",), deep=("c/d",))
    entries, gone, _, _ = await _scan(ctx)
    assert entries == set()
    assert gone == {str(root / "c/d/five.jpg"), str(root / "c/d/e/six.jpg"), str(root / "a/sub/three.jpg")}
    assert ctx.progress.errors == []  # gone is not a failure


async def test_a_scope_directory_behind_a_symlink_is_not_listed(tmp_path: Path) -> None:
    """A directory replaced by a link (even one to a directory inside the root) is not walked, as in a
    whole pass: its indexed files are gone, and nothing is read through the link."""
    root, ctx = await _indexed_tree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"secret")
    shutil.rmtree(root / "c")
    (root / "c").symlink_to(outside)
    ctx.watch = _scope(root, shallow=("c/d",), deep=("c",))
    entries, gone, _, directories = await _scan(ctx)
    assert entries == set()
    assert gone == {str(root / "c/d/five.jpg"), str(root / "c/d/e/six.jpg")}
    assert str(outside) not in directories and str(root / "c") not in directories


async def test_an_unlistable_directory_protects_its_tree_in_a_scoped_pass(tmp_path: Path) -> None:
    root, ctx = await _indexed_tree(tmp_path)
    shutil.rmtree(root / "c/d/e")
    q: ScanQueue = asyncio.Queue(16)
    walker = _Walker(ctx, asyncio.get_running_loop(), q)
    walker._unlisted.append(str(root / "c/d"))  # as if listing it had failed (permissions, I/O error)

    def in_scan_thread() -> None:
        reader = ctx.index.reader()  # a connection belongs to the thread that made it
        try:
            walker._vanished_directories(reader, [str(root / "c")])
            walker._send()
        finally:
            reader.close()

    def named_gone() -> list[tuple[str, list[str]]]:
        batches: list[tuple[str, list[str]]] = []
        while not q.empty():
            message = q.get_nowait()
            assert isinstance(message, list)
            batches.extend((b.directory, b.gone) for b in message if isinstance(b, DirBatch))
        return sorted(batches)

    await asyncio.to_thread(in_scan_thread)
    assert named_gone() == []  # c/d/e was never reached, but c/d hides it
    walker._unlisted.clear()  # the control: without the failed listing they are gone
    await asyncio.to_thread(in_scan_thread)
    assert named_gone() == [
        (str(root / "c/d"), ["five.jpg"]),  # (this walker never listed c/d either)
        (str(root / "c/d/e"), ["six.jpg"]),
    ]


async def test_a_file_still_being_written_is_left_for_later(tmp_path: Path) -> None:
    root, ctx = await _indexed_tree(tmp_path)
    (root / "a/fresh.jpg").write_bytes(b"half")
    (root / "a/one.jpg").write_bytes(b"changed now")  # changed and fresh: its row stays, it is not gone
    old = root / "a/old.jpg"
    old.write_bytes(b"copied with its time")
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    ahead = root / "a/ahead.jpg"  # an mtime ahead of the clock does not hold it back
    ahead.write_bytes(b"skewed")
    future = time.time_ns() + 3600 * 10**9
    os.utime(ahead, ns=(future, future))
    ctx.watch = WatchScan(30.0, ScanScope(shallow=frozenset({str(root / "a")})))
    entries, gone, _, _ = await _scan(ctx)
    assert entries == {str(old), str(ahead)}
    assert gone == set()
    assert sorted(ctx.watch.deferred) == [str(root / "a/fresh.jpg"), str(root / "a/one.jpg")]
