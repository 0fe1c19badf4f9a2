from pathlib import Path

import pytest

from orchestrator.security import PathInvalidError, PathNotAllowedError, resolve_ingest_root


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
