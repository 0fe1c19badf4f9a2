"""Watched folders (options.watch) end to end: a real orchestrator over loopback, the session's ML service,
inotify on real directories. Every wait polls a condition with a bound."""

from __future__ import annotations

import asyncio
import io
import os
import random
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import pytest

from orchestrator.ids import point_id
from scripts.bench_pipeline import WORDS
from scripts.make_samples import scene_image
from tests.support.app_factory import make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow

SETTLE_S = 0.5  # WATCH_SETTLE_S (default 1 s)
COLLECTION = "watched"  # the module's tests share it (a new collection costs ~2 s); their pictures differ
BOUND_S = 30.0  # the longest any change may take to arrive (it takes ~1-3 s)


def image(seed: int) -> bytes:
    """A small distinct picture (JPEG)."""
    out = io.BytesIO()
    scene_image(random.Random(seed), WORDS, seed, (160, 120)).save(out, format="JPEG", quality=85)
    return out.getvalue()


async def poll(what: str, check: Callable[[], Awaitable[bool]], bound_s: float = BOUND_S) -> None:
    deadline = time.monotonic() + bound_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {bound_s} s")
        await asyncio.sleep(0.05)


async def stays(what: str, check: Callable[[], Awaitable[bool]], for_s: float) -> None:
    """`check` holds for `for_s` (a pause in the scenario, with the condition asserted throughout)."""
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        assert await check(), what
        await asyncio.sleep(0.05)


def inotify_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            pass
    return count


@dataclass(slots=True)
class Watched:
    orch: RunningOrchestrator
    root: Path
    collection: str
    job_id: str

    async def status(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self.orch.client.get(f"/jobs/{self.job_id}")).json()
        return body

    async def paths_of(self, data: bytes) -> list[str] | None:
        """The paths on the point of this content (None: no point)."""
        found = await self.orch.services.store.retrieve(
            self.collection, [point_id(blake3.blake3(data).hexdigest(), 0)]
        )
        return None if not found else sorted(next(iter(found.values()))["paths"])

    async def has(self, data: bytes, *paths: Path) -> bool:
        return await self.paths_of(data) == sorted(str(p) for p in paths)

    async def gone(self, data: bytes) -> bool:
        return await self.paths_of(data) is None


async def start_watching(orch: RunningOrchestrator, root: Path, collection: str) -> str:
    """A watching job on `root`, once its first pass is done."""
    resp = await orch.client.post(
        "/jobs", json={"path": str(root), "collection": collection, "options": {"watch": True}}
    )
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["job_id"]

    async def first_pass_done() -> bool:
        body = (await orch.client.get(f"/jobs/{job_id}")).json()
        assert body["state"] in ("queued", "running"), body
        return bool(body["watching"] and body["watch"]["passes"] >= 1)

    await poll("the first pass", first_pass_done, 60)
    return job_id


@pytest.fixture(scope="module")
def watch_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("watch").resolve()


@pytest.fixture(scope="module")
async def orch(watch_base: Path, ml_service_url: str) -> AsyncIterator[RunningOrchestrator]:
    """One orchestrator for the module; each test watches a folder of its own."""
    settings = make_settings(watch_base / "data", ml_service_url, [watch_base], watch_settle_s=SETTLE_S)
    async with running_orchestrator(settings) as running:
        yield running


@pytest.fixture
async def watched(
    orch: RunningOrchestrator, watch_base: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Watched]:
    """A folder of its own (with the pictures `before` names) and a watching job on it, its first pass
    done; cancelled at the end."""
    name = request.node.name.removeprefix("test_").split("[")[0][:60]
    root = watch_base / name
    root.mkdir()
    for rel, seed in getattr(request, "param", {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(image(seed))
        an_hour_ago = time.time() - 3600  # long settled: the first pass reads it (a fresh one would wait)
        os.utime(root / rel, (an_hour_ago, an_hour_ago))
    job_id = await start_watching(orch, root, COLLECTION)
    yield Watched(orch, root, COLLECTION, job_id)
    await orch.client.post(f"/jobs/{job_id}/cancel")


def before(files: dict[str, int]) -> pytest.MarkDecorator:
    """Pictures (relative path -> seed) in the folder before its job starts."""
    return pytest.mark.parametrize("watched", [files], indirect=True, ids=["before"])


async def test_a_new_picture_is_ingested_and_found_by_search(watched: Watched) -> None:
    data = image(1)
    path = watched.root / "quokkaparade.jpg"
    path.write_bytes(data)
    written = time.monotonic()
    await poll("the new picture", lambda: watched.has(data, path))
    assert time.monotonic() - written < SETTLE_S + 10
    hits = (
        await watched.orch.client.get(
            "/search", params={"q": "quokkaparade", "collection": watched.collection, "mode": "keyword"}
        )
    ).json()
    assert [p for h in hits["hits"] for p in h["paths"]] == [str(path)]
    status = await watched.status()
    assert status["state"] == "running" and status["watching"] is True
    assert status["watch"]["passes"] >= 2 and status["watch"]["last_event_at"] is not None
    assert status["counters"]["failed"] == 0
    metrics = (await watched.orch.client.get("/metrics")).text
    assert "archivist_watching_jobs 1.0" in metrics


@before({"a/photo.jpg": 2})
async def test_a_changed_picture_replaces_its_points(watched: Watched) -> None:
    path = watched.root / "a/photo.jpg"
    assert await watched.has(image(2), path)
    path.write_bytes(image(3))
    await poll("the new content", lambda: watched.has(image(3), path))
    await poll("the old content's point", lambda: watched.gone(image(2)))


@before({"a/photo.jpg": 4, "b/keep.jpg": 5})
async def test_a_deleted_picture_loses_its_points(watched: Watched) -> None:
    (watched.root / "a/photo.jpg").unlink()
    await poll("the point of the deleted picture", lambda: watched.gone(image(4)))
    assert await watched.has(image(5), watched.root / "b/keep.jpg")


@before({"a/moved.jpg": 6})
async def test_a_moved_picture_keeps_its_points_without_ml(watched: Watched) -> None:
    ml = watched.orch.services.ml
    requests = ml.requests
    passes = (await watched.status())["watch"]["passes"]
    os.rename(watched.root / "a/moved.jpg", watched.root / "moved.jpg")  # into a directory that was there

    async def moved() -> bool:
        paths = await watched.paths_of(image(6))
        assert paths is not None, "the picture was not found for a moment"  # one pass: no gap
        return paths == [str(watched.root / "moved.jpg")]

    await poll("the new path", moved)

    async def pass_ended() -> bool:
        return bool((await watched.status())["watch"]["passes"] > passes)

    await poll("the pass's end", pass_ended)
    assert ml.requests == requests  # the content's results came from the cache


async def test_a_file_written_in_two_halves_is_read_once_whole(watched: Watched) -> None:
    data = image(7)
    path = watched.root / "slow.jpg"
    seen = (await watched.status())["watch"]["events"]
    passes = (await watched.status())["watch"]["passes"]
    inferred = (await watched.status())["counters"]["inferred"]
    out = await asyncio.to_thread(open, path, "wb")
    try:
        out.write(data[: len(data) // 2])
        out.flush()

        async def event_seen() -> bool:
            return bool((await watched.status())["watch"]["events"] > seen)

        await poll("the first half's event", event_seen)

        async def no_pass() -> bool:
            return bool((await watched.status())["watch"]["passes"] == passes)

        # The writer pauses well past the notifier's grouping (50 ms) but within the settle time.
        await stays("no pass over the half-written file", no_pass, SETTLE_S * 0.6)
        out.write(data[len(data) // 2 :])
    finally:
        out.close()
    await poll("the whole picture", lambda: watched.has(data, path))
    status = await watched.status()
    assert status["counters"]["failed"] == 0 and status["errors"] == []
    assert status["counters"]["inferred"] == inferred + 1  # read once, whole
    assert await watched.gone(data[: len(data) // 2])


async def test_a_new_directory_with_pictures_is_picked_up(watched: Watched) -> None:
    first, second = image(8), image(9)
    (watched.root / "trip/day1").mkdir(parents=True)  # the files land before inotify watches the directory
    (watched.root / "trip/day1/one.jpg").write_bytes(first)
    (watched.root / "trip/two.jpg").write_bytes(second)
    outside = watched.root.parent / "outside_album"
    outside.mkdir()
    third = image(10)
    (outside / "three.jpg").write_bytes(third)
    os.rename(outside, watched.root / "album")  # a tree moved in
    await poll("the first", lambda: watched.has(first, watched.root / "trip/day1/one.jpg"))
    await poll("the second", lambda: watched.has(second, watched.root / "trip/two.jpg"))
    await poll("the moved-in one", lambda: watched.has(third, watched.root / "album/three.jpg"))


@before({"d/x.jpg": 11})
async def test_a_removed_directory_loses_its_points(watched: Watched) -> None:
    shutil.rmtree(watched.root / "d")
    await poll("the removed directory's point", lambda: watched.gone(image(11)))


async def test_an_idle_watcher_holds_no_job_slot(watched: Watched) -> None:
    """MAX_CONCURRENT_JOBS is 1: an ordinary job still runs while the folder is watched."""
    other = watched.root.parent / "not_watched"
    other.mkdir()
    (other / "plain.jpg").write_bytes(image(14))
    resp = await watched.orch.client.post("/jobs", json={"path": str(other), "collection": COLLECTION})
    done: dict[str, Any] = dict(await watched.orch.wait_job(resp.json()["job_id"], timeout_s=BOUND_S))
    assert done["state"] == "completed" and done["counters"]["upserted"] == 1
    assert (await watched.status())["watching"] is True


async def test_pause_holds_changes_until_resume(watched: Watched) -> None:
    client = watched.orch.client
    assert (await client.post(f"/jobs/{watched.job_id}/pause")).json()["state"] == "paused"
    seen = (await watched.status())["watch"]["events"]
    data = image(12)
    path = watched.root / "while_paused.jpg"
    path.write_bytes(data)

    async def event_seen() -> bool:
        status = await watched.status()
        return bool(status["watch"]["events"] > seen and status["watching"] and status["state"] == "paused")

    await poll("the change seen while paused", event_seen)
    await stays("nothing ingested while paused", lambda: watched.gone(data), SETTLE_S + 1.0)
    assert (await client.post(f"/jobs/{watched.job_id}/resume")).json()["state"] == "running"
    await poll("the change after resume", lambda: watched.has(data, path))


async def test_cancel_stops_the_watcher(watched: Watched) -> None:
    client = watched.orch.client
    assert inotify_fds() >= 1
    watching = inotify_fds()
    cancelled = (await client.post(f"/jobs/{watched.job_id}/cancel")).json()
    assert cancelled["state"] == "cancelled"

    async def closed() -> bool:
        return inotify_fds() == watching - 1

    await poll("the watcher closed", closed)
    status = await watched.status()
    assert status["state"] == "cancelled" and status["watching"] is False
    data = image(13)
    (watched.root / "after_cancel.jpg").write_bytes(data)
    await stays("nothing ingested after the cancel", lambda: watched.gone(data), SETTLE_S + 1.0)


async def test_a_watched_folder_that_goes_fails_the_job(watched: Watched) -> None:
    shutil.rmtree(watched.root)

    async def failed() -> bool:
        return bool((await watched.status())["state"] == "failed")

    await poll("the job failed", failed)
    error = (await watched.status())["error"]
    assert "watched folder" in error and str(watched.root) in error


async def test_a_restored_watching_job_catches_up_then_watches(tmp_path: Path, ml_service_url: str) -> None:
    root = tmp_path / "media"
    root.mkdir()
    (root / "old.jpg").write_bytes(image(20))
    os.utime(root / "old.jpg", (time.time() - 3600, time.time() - 3600))
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path], watch_settle_s=SETTLE_S)
    async with running_orchestrator(settings) as orch:
        job_id = await start_watching(orch, root, "restored")
        watched = Watched(orch, root, "restored", job_id)
        assert await watched.has(image(20), root / "old.jpg")
    # While the service is down: one picture added, one deleted.
    (root / "old.jpg").unlink()
    (root / "while_down.jpg").write_bytes(image(21))
    async with running_orchestrator(settings) as orch:
        watched = Watched(orch, root, "restored", job_id)
        await poll("the picture added while down", lambda: watched.has(image(21), root / "while_down.jpg"))
        await poll("the picture deleted while down", lambda: watched.gone(image(20)))
        status = await watched.status()
        assert status["state"] == "running" and status["runs"] == 2 and status["watching"] is True
        (root / "after.jpg").write_bytes(image(22))
        await poll("a change after the restart", lambda: watched.has(image(22), root / "after.jpg"))
        await orch.client.post(f"/jobs/{job_id}/cancel")
