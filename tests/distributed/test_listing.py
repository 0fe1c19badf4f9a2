"""A scan task's look at one directory (orchestrator/distributed/listing.py), on real files."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.distributed.listing import list_directory
from orchestrator.file_index import IndexedFile


def test_pages_by_count_and_bytes_in_name_order(tmp_path: Path) -> None:
    for i in range(7):
        (tmp_path / f"f{i}.txt").write_bytes(b"x" * 10)
    (tmp_path / "big.bin").write_bytes(b"y" * 100)
    listing = list_directory(str(tmp_path), {}, include_hidden=False, max_files=3, max_bytes=35)
    pages = [list(p.names) for p in listing.partitions]
    assert pages == [["big.bin"], ["f0.txt", "f1.txt", "f2.txt"], ["f3.txt", "f4.txt", "f5.txt"], ["f6.txt"]]
    assert [p.page for p in listing.partitions] == [0, 1, 2, 3]
    # The same listing gives the same pages (partition ids are uuid5 of job, directory and page).
    again = list_directory(str(tmp_path), {}, include_hidden=False, max_files=3, max_bytes=35)
    assert again.partitions == listing.partitions


def test_unchanged_files_are_counted_not_partitioned(tmp_path: Path) -> None:
    kept, changed = tmp_path / "kept.txt", tmp_path / "changed.txt"
    kept.write_text("same")
    changed.write_text("before")
    st_kept, st_changed = kept.stat(), changed.stat()
    known = {
        "kept.txt": IndexedFile(
            str(tmp_path), "kept.txt", st_kept.st_size, st_kept.st_mtime_ns, st_kept.st_ino, "h", 1
        ),
        "changed.txt": IndexedFile(
            str(tmp_path),
            "changed.txt",
            st_changed.st_size + 1,
            st_changed.st_mtime_ns,
            st_changed.st_ino,
            "h",
            1,
        ),
    }
    listing = list_directory(str(tmp_path), known, include_hidden=False, max_files=10, max_bytes=1 << 30)
    assert listing.unchanged == 1
    assert [list(p.names) for p in listing.partitions] == [["changed.txt"]]


def test_subdirectories_hidden_names_and_links(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".dot.txt").write_text("h")
    (tmp_path / "a.txt").write_text("a")
    os.symlink(tmp_path / "sub", tmp_path / "link-to-dir")  # never entered: the worker judges it as a file
    listing = list_directory(str(tmp_path), {}, include_hidden=False, max_files=10, max_bytes=1 << 30)
    assert listing.subdirectories == [str(tmp_path / "sub")]
    assert [list(p.names) for p in listing.partitions] == [["a.txt", "link-to-dir"]]
    shown = list_directory(str(tmp_path), {}, include_hidden=True, max_files=10, max_bytes=1 << 30)
    assert str(tmp_path / ".hidden") in shown.subdirectories
    assert ".dot.txt" in shown.partitions[0].names


def test_an_unlistable_directory_is_a_failure_of_the_scan(tmp_path: Path) -> None:
    listing = list_directory(str(tmp_path / "gone"), {}, include_hidden=False, max_files=10, max_bytes=10)
    assert listing.partitions == [] and listing.subdirectories == []
    [failure] = listing.failures
    assert (
        failure.status == "failed"
        and failure.stage == "scan"
        and "cannot list directory" in str(failure.reason)
    )
