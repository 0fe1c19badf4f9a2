from pathlib import Path

from orchestrator.file_index import FileIndex, IndexedFile


def _row(name: str, content_hash: str = "h1", directory: str = "/d") -> IndexedFile:
    return IndexedFile(
        directory=directory, name=name, size=10, mtime_ns=5, inode=7, content_hash=content_hash, chunks=1
    )


async def test_mark_done_then_lookup_by_directory(tmp_path: Path) -> None:
    index = FileIndex(tmp_path / "idx.sqlite3")
    await index.open()
    try:
        await index.mark_done("c1", [_row("a.jpg"), _row("b.jpg", "h2"), _row("c.jpg", directory="/other")])
        found = await index.lookup_dir("c1", "/d")
        assert set(found) == {"a.jpg", "b.jpg"}
        assert found["b.jpg"].content_hash == "h2"
        assert await index.lookup_dir("c2", "/d") == {}  # collections are separate
        assert await index.paths_of("c1", ["h1", "h2", "nope"]) == {
            "h1": ["/d/a.jpg", "/other/c.jpg"],
            "h2": ["/d/b.jpg"],
        }
        await index.mark_done("c1", [_row("a.jpg", "h3")])  # replaced, not duplicated
        assert await index.count("c1") == 3
        assert await index.paths_of("c1", ["h1"]) == {"h1": ["/other/c.jpg"]}
        await index.drop_collection("c1")
        assert await index.count("c1") == 0
    finally:
        await index.close()


async def test_survives_reopen(tmp_path: Path) -> None:
    index = FileIndex(tmp_path / "idx.sqlite3")
    await index.open()
    await index.mark_done("c", [_row("a.jpg")])
    await index.close()
    again = FileIndex(tmp_path / "idx.sqlite3")
    await again.open()
    try:
        assert (await again.lookup_dir("c", "/d"))["a.jpg"].inode == 7
    finally:
        await again.close()
