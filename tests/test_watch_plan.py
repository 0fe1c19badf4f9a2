"""Watched folders' pure logic: changed paths -> the directories a pass lists; when a file is settled."""

from __future__ import annotations

from orchestrator.jobs import WatchStatus
from orchestrator.pipeline.context import ScanScope
from orchestrator.watch import FolderWatcher
from orchestrator.watch_plan import Kind, Look, Settler, plan_scope, relevant

ROOT = "/m/root"


def _plan(*looks: Look, hidden: bool = False) -> ScanScope | None:
    return plan_scope(ROOT, looks, hidden)


def test_a_file_lists_its_directory_alone() -> None:
    scope = _plan(Look(f"{ROOT}/a/x.jpg", Kind.FILE, (1, 2, 3)), Look(f"{ROOT}/a/y.jpg", Kind.FILE))
    assert scope == ScanScope(shallow=frozenset({f"{ROOT}/a"}), deep=frozenset())


def test_a_file_in_the_root_lists_the_root_alone() -> None:
    assert _plan(Look(f"{ROOT}/x.jpg", Kind.FILE)) == ScanScope(shallow=frozenset({ROOT}))


def test_a_directory_is_walked_with_its_tree() -> None:
    assert _plan(Look(f"{ROOT}/new", Kind.DIR)) == ScanScope(deep=frozenset({f"{ROOT}/new"}))


def test_a_gone_path_lists_its_directory_and_names_what_was_under_it() -> None:
    scope = _plan(Look(f"{ROOT}/a/b", Kind.GONE))
    assert scope == ScanScope(shallow=frozenset({f"{ROOT}/a"}), deep=frozenset({f"{ROOT}/a/b"}))


def test_a_move_lists_both_directories() -> None:
    scope = _plan(Look(f"{ROOT}/a/x.jpg", Kind.GONE), Look(f"{ROOT}/b/x.jpg", Kind.FILE))
    assert scope is not None
    assert scope.shallow == {f"{ROOT}/a", f"{ROOT}/b"}
    assert scope.deep == {f"{ROOT}/a/x.jpg"}  # (a file: nothing indexed is under it)


def test_what_a_deep_directory_covers_is_dropped() -> None:
    scope = _plan(
        Look(f"{ROOT}/d", Kind.DIR),
        Look(f"{ROOT}/d/e", Kind.DIR),
        Look(f"{ROOT}/d/e/f.jpg", Kind.FILE),
        Look(f"{ROOT}/d/g.jpg", Kind.GONE),
        Look(f"{ROOT}/other/h.jpg", Kind.FILE),
    )
    assert scope == ScanScope(shallow=frozenset({f"{ROOT}/other"}), deep=frozenset({f"{ROOT}/d"}))


def test_the_root_itself_means_the_whole_root() -> None:
    assert _plan(Look(f"{ROOT}/a/x.jpg", Kind.FILE), Look(ROOT, Kind.DIR)) is None


def test_outside_and_hidden_paths_are_left_out() -> None:
    looks = (
        Look("/m/rootless/x.jpg", Kind.FILE),  # a sibling whose name starts like the root's
        Look("/elsewhere/x.jpg", Kind.FILE),
        Look(f"{ROOT}/.cache/x.jpg", Kind.FILE),
        Look(f"{ROOT}/a/.x.jpg.part", Kind.FILE),
    )
    assert _plan(*looks) == ScanScope()
    with_hidden = _plan(*looks, hidden=True)
    assert with_hidden == ScanScope(shallow=frozenset({f"{ROOT}/.cache", f"{ROOT}/a"}))
    assert relevant(ROOT, ROOT, False) and not relevant("/m/rootless", ROOT, True)


def test_a_file_settles_after_its_signature_holds_still() -> None:
    settler = Settler(1.0)
    half = Look("/m/root/x.jpg", Kind.FILE, (100, 1, 7))
    whole = Look("/m/root/x.jpg", Kind.FILE, (200, 2, 7))
    assert settler.wait_s(half, 10.0) == 1.0
    assert settler.wait_s(half, 10.5) == 0.5
    assert settler.wait_s(whole, 10.8) == 1.0  # grew: the wait starts again
    assert settler.wait_s(whole, 11.5) > 0
    assert settler.wait_s(whole, 11.8) == 0.0
    assert settler.wait_s(whole, 30.0) == 0.0  # settled until it changes again
    assert settler.wait_s(half, 30.0) == 1.0
    settler.forget(half.path)  # (handed to a pass)
    assert len(settler) == 0


def test_directories_and_gone_paths_are_settled_at_once() -> None:
    settler = Settler(1.0)
    assert settler.wait_s(Look("/m/root/x.jpg", Kind.FILE, (1, 1, 1)), 0.0) == 1.0
    assert settler.wait_s(Look("/m/root/x.jpg", Kind.GONE), 0.1) == 0.0
    assert settler.wait_s(Look("/m/root/d", Kind.DIR), 0.1) == 0.0
    assert len(settler) == 0
    assert Settler(0.0).wait_s(Look("/m/root/y.jpg", Kind.FILE, (1, 1, 1)), 0.0) == 0.0


async def test_the_watcher_leaves_out_its_own_data_dir() -> None:
    """DATA_DIR inside a watched root: a pass's own writes there must not call for another pass."""
    status = WatchStatus()
    watcher = FolderWatcher(ROOT, 1.0, False, status, ignored=(f"{ROOT}/archivist-data",))
    watcher.requeue([f"{ROOT}/archivist-data/thumbnails/ab.jpg", f"{ROOT}/archivist-data", f"{ROOT}/x.jpg"])
    assert status.pending == 1
