import os
from pathlib import Path

import pytest

from orchestrator.security import (
    PathInvalidError,
    PathNotAllowedError,
    is_content_hash,
    open_first_within,
    open_within,
    resolve_ingest_root,
)


def test_inside_root_is_resolved(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    assert (
        resolve_ingest_root(str(tmp_path / "photos"), [tmp_path.resolve()]) == (tmp_path / "photos").resolve()
    )


@pytest.mark.parametrize(
    "trick", ["{root}/../", "{root}/photos/../../etc", "/etc", "/", "{root}/photos/../.."]
)
def test_escapes_are_refused(tmp_path: Path, trick: str) -> None:
    root = tmp_path / "allowed"
    (root / "photos").mkdir(parents=True)
    with pytest.raises(PathNotAllowedError):
        resolve_ingest_root(trick.format(root=root), [root.resolve()])


def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "allowed"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(PathNotAllowedError):
        resolve_ingest_root(str(root / "link"), [root.resolve()])


def test_sibling_with_common_prefix_is_refused(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "media-private").mkdir()
    with pytest.raises(PathNotAllowedError):
        resolve_ingest_root(str(tmp_path / "media-private"), [(tmp_path / "media").resolve()])


def test_no_roots_configured_refuses_everything(tmp_path: Path) -> None:
    with pytest.raises(PathNotAllowedError, match="ALLOWED_ROOTS"):
        resolve_ingest_root(str(tmp_path), [])


@pytest.mark.parametrize("bad", ["", "relative/path", "/x\x00y"])
def test_invalid_paths(tmp_path: Path, bad: str) -> None:
    with pytest.raises(PathInvalidError):
        resolve_ingest_root(bad, [tmp_path.resolve()])


def test_missing_and_file_paths(tmp_path: Path) -> None:
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(PathInvalidError, match="no such"):
        resolve_ingest_root(str(tmp_path / "missing"), [tmp_path.resolve()])
    with pytest.raises(PathInvalidError, match="not a directory"):
        resolve_ingest_root(str(tmp_path / "file.jpg"), [tmp_path.resolve()])


# --- serving: open_within checks the opened descriptor, not the name --------------------------------------


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "allowed"
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "a.jpg").write_bytes(b"inside")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.jpg").write_bytes(b"secret")
    return root.resolve(), outside.resolve()


def test_a_regular_file_under_a_root_is_opened(tmp_path: Path) -> None:
    root, _ = _tree(tmp_path)
    opened = open_within(str(root / "photos" / "a.jpg"), [root])
    try:
        assert opened.real_path == root / "photos" / "a.jpg"
        assert opened.stat.st_size == len(b"inside")
        with open(opened.fd_path, "rb") as reopened:  # what FileResponse reads: the same inode
            assert reopened.read() == b"inside"
    finally:
        os.close(opened.fd)


def test_a_symlink_as_last_component_is_refused_even_inside_the_root(tmp_path: Path) -> None:
    root, outside = _tree(tmp_path)
    (root / "photos" / "out.jpg").symlink_to(outside / "a.jpg")
    (root / "photos" / "in.jpg").symlink_to(root / "photos" / "a.jpg")
    for name in ("out.jpg", "in.jpg"):
        with pytest.raises(PathNotAllowedError, match="symlink"):
            open_within(str(root / "photos" / name), [root])


def test_a_symlinked_parent_directory_leading_outside_is_refused(tmp_path: Path) -> None:
    root, outside = _tree(tmp_path)
    (root / "photos" / "a.jpg").unlink()
    (root / "photos").rmdir()
    (root / "photos").symlink_to(outside)  # the name root/photos/a.jpg now opens outside/a.jpg
    with pytest.raises(PathNotAllowedError, match="outside the allowed roots"):
        open_within(str(root / "photos" / "a.jpg"), [root])
    assert open_first_within([str(root / "photos" / "a.jpg")], [root]) is None


def test_paths_outside_the_roots_and_tricks_are_refused(tmp_path: Path) -> None:
    root, outside = _tree(tmp_path)
    with pytest.raises(PathNotAllowedError):
        open_within(str(outside / "a.jpg"), [root])
    with pytest.raises(PathNotAllowedError):
        open_within(f"{root}/photos/../../outside/a.jpg", [root])
    for bad in ("", "relative.jpg", f"{root}/photos/a\x00.jpg"):
        with pytest.raises(PathInvalidError):
            open_within(bad, [root])
    with pytest.raises(PathInvalidError):
        open_within(str(root / "photos" / "missing.jpg"), [root])
    with pytest.raises(PathInvalidError, match="regular file"):
        open_within(str(root / "photos"), [root])


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    root, _ = _tree(tmp_path)
    os.mkfifo(root / "photos" / "pipe.jpg")  # a plain open() for reading would wait for a writer
    with pytest.raises(PathInvalidError, match="regular file"):
        open_within(str(root / "photos" / "pipe.jpg"), [root])


def test_open_first_within_skips_refused_and_non_string_candidates(tmp_path: Path) -> None:
    root, outside = _tree(tmp_path)
    opened = open_first_within([None, 7, str(outside / "a.jpg"), str(root / "photos" / "a.jpg")], [root])
    assert opened is not None
    os.close(opened.fd)
    assert opened.real_path == root / "photos" / "a.jpg"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("0" * 64, True),
        ("af" * 32, True),
        ("AF" * 32, False),
        ("../" + "a" * 61, False),
        ("a" * 63, False),
        ("a" * 65, False),
        ("a" * 64 + "\n", False),
        (None, False),
        (123, False),
    ],
)
def test_content_hash_format(value: object, ok: bool) -> None:
    assert is_content_hash(value) is ok
