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


async def test_releases_are_recorded_with_the_done_marks_and_cleared(tmp_path: Path) -> None:
    index = FileIndex(tmp_path / "idx.sqlite3")
    await index.open()
    try:
        await index.mark_done("c", [_row("a.jpg", "new")], [("old", 2, "/d/a.jpg")])
        assert await index.pending_releases("c") == [("old", 2, "/d/a.jpg")]
        assert await index.pending_releases("other") == []
        await index.released("c", [("old", 2, "/d/a.jpg")])
        assert await index.pending_releases("c") == []
    finally:
        await index.close()


async def test_a_failure_is_remembered_until_the_file_is_stored(tmp_path: Path) -> None:
    from orchestrator.file_index import lookup_dir_failures

    index = FileIndex(tmp_path / "idx.sqlite3")
    await index.open()
    try:
        await index.remember_failures("c", [("/d", "a.jpg", 10, 5, 7, "prepare", "cannot decode")])
        read = await index.run(lambda: lookup_dir_failures(index.conn, "c", "/d"))
        assert read == {"a.jpg": (10, 5, 7, "prepare", "cannot decode")}
        await index.mark_done("c", [_row("a.jpg")])  # the file was fixed and stored: forgotten
        assert await index.run(lambda: lookup_dir_failures(index.conn, "c", "/d")) == {}
    finally:
        await index.close()


async def test_job_scratch_claims_written_gone_then_cleared(tmp_path: Path) -> None:
    from orchestrator.file_index import MAX_BOUND

    index = FileIndex(tmp_path / "idx.sqlite3")
    await index.open()
    try:
        assert await index.claim("j", "h", "/d/a.jpg") == "/d/a.jpg"
        assert await index.claim("j", "h", "/d/b.jpg") == "/d/a.jpg"  # first path wins
        assert await index.claim("j", "h", "/d/a.jpg") == "/d/a.jpg"
        assert await index.claim("k", "h", "/d/b.jpg") == "/d/b.jpg"  # jobs are separate
        hashes = [f"h{i}" for i in range(MAX_BOUND * 2 + 3)]  # more than one statement's worth
        await index.add_written("j", [(h, 3) for h in hashes])
        assert await index.written("j", [*hashes, "nope"]) == dict.fromkeys(hashes, 3)
        await index.add_gone("j", [("/d", f"{i}.jpg") for i in range(7)])
        first = await index.gone_page("j", 0, 4)
        rest = await index.gone_page("j", first[-1][0], 4)
        assert [n for _, _, n in first + rest] == [f"{i}.jpg" for i in range(7)]
        await index.clear_job("j")
        assert await index.written("j", hashes) == {} and await index.gone_page("j", 0) == []
        assert await index.claim("j", "h", "/d/b.jpg") == "/d/b.jpg"
        assert await index.claim("k", "h", "/d/a.jpg") == "/d/b.jpg"  # another job's kept
    finally:
        await index.close()
