"""Chaos during ONE ingest, with real processes: the orchestrator killed with SIGKILL and restarted (a stored
file changes and another goes while it is down), one of two ML replicas killed with SIGKILL (the job goes on
with the other), the vector store refusing writes (its directory made read-only under the running process:
a real fault, see tests/support/read_only.py) and given them back. The store then holds exactly what a
clean ingest of the same tree holds: the same collections, the same point ids, the same payloads apart
from the time they were written; and the file index knows every file once (a second ingest reads nothing
and asks the ML service nothing), with nothing left owed or parked.

The designed behaviour under the store fault (README "Job states", tests/api/test_store_failure.py): the
job fails with the store's reason and marks nothing done that was not stored; ingesting the same directory
again once the store writes again finishes it.

The engine applies a write whose flush then fails (the point is there, the file is not marked done), and
a crash can fall between a durable write and its done mark: when such a file is gone or changed by the
next job, that write must still be taken back. The chaos test does that to two files of the refused
write; the in-process tests below make the window happen at will, check that a job running beside it
does not take back a write still in flight, and that a failed job leaves no duplicate parked."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import blake3
import httpx
import pytest

from orchestrator.clients.vector_params import EDGE_SUBDIR
from orchestrator.clients.vectors import PointRecord
from orchestrator.ids import point_id
from scripts.bench_pipeline import make_images
from scripts.ml_process import free_port
from tests.support.app_factory import counting_store, make_settings
from tests.support.counting_store import CountingStore
from tests.support.edge_snapshot import Snapshot, read_store
from tests.support.ml_gate import ml_gate
from tests.support.ml_server import LIGHT_TAGS, MLService, running_ml_service, wait_until_ready
from tests.support.orchestrator_process import give_away, kill, start_orchestrator, stop
from tests.support.orchestrator_server import running_orchestrator
from tests.support.read_only import read_only

pytestmark = pytest.mark.slow

FILES = 100  # distinct images
COPIES = 10  # copies of some of them under other names
# Light replicas: processes and faults are under test here, not the models; both replicas run the same
# models, so their answers are interchangeable.
LIGHT = LIGHT_TAGS
ACTIVE = ("queued", "running", "paused")
_POLL_S = 0.05  # between polls of a condition (each wait is bounded)


class Orchestrator:
    """One orchestrator process over one DATA_DIR, and an HTTP client bound to it."""

    def __init__(self, base: Path, data: Path, media: Path, ml_urls: list[str]) -> None:
        self.port = free_port()
        env = {
            "DATA_DIR": str(data),
            "ALLOWED_ROOTS": str(media),
            "ML_SERVICE_URLS": ",".join(ml_urls),
            "PORT": str(self.port),
            "ML_INFERENCE_BATCH_SIZE": "4",
            "QDRANT_UPSERT_BATCH_SIZE": "8",
            "ML_HEALTH_INTERVAL_S": "0.2",
            "ML_RETRY_DEADLINE_S": "60",
        }
        self.process = start_orchestrator(env, base, base / f"{data.name}.log")
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def close(self, graceful: bool = True) -> None:
        self.client.close()
        (stop if graceful else kill)(self.process)

    def submit(self, path: Path) -> str:
        resp = self.client.post("/jobs", json={"path": str(path)})
        assert resp.status_code in (200, 201, 202), resp.text
        job_id: str = resp.json()["job_id"]
        return job_id

    def until(
        self, job_id: str, done: Callable[[dict[str, Any]], bool], what: str, timeout_s: float = 120.0
    ) -> dict[str, Any]:
        """Poll the job until `done(status)`; fail when it ends first or the bound passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            status: dict[str, Any] = self.client.get(f"/jobs/{job_id}").json()
            if done(status):
                return status
            assert status["state"] in ACTIVE, f"{what}: the job ended first: {status}"
            assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s: {status}"
            time.sleep(_POLL_S)

    def finish(self, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
        return self.until(job_id, lambda s: s["state"] not in ACTIVE, "the job's end", timeout_s)

    def replicas(self) -> dict[str, dict[str, Any]]:
        return {r["url"]: r for r in self.client.get("/ready").json()["ml_replicas"]}


def _stored(status: dict[str, Any]) -> int:
    counters: dict[str, int] = status["counters"]
    return counters["upserted"]


def _diff(reference: Snapshot, chaos: Snapshot) -> list[str]:
    """What differs, point by point (empty when the stores hold the same)."""
    out = []
    if reference.keys() != chaos.keys():
        out.append(f"collections: {sorted(reference)} vs {sorted(chaos)}")
    for name in sorted(reference.keys() & chaos.keys()):
        ref, got = reference[name], chaos[name]
        out += [f"{name}: missing {pid} {ref[pid].get('paths')}" for pid in ref.keys() - got.keys()]
        out += [f"{name}: extra {pid} {got[pid].get('paths')}" for pid in got.keys() - ref.keys()]
        for pid in sorted(ref.keys() & got.keys()):
            fields = {k for k in ref[pid].keys() | got[pid].keys() if ref[pid].get(k) != got[pid].get(k)}
            out += [f"{name}: {pid}.{k}: {ref[pid].get(k)!r} vs {got[pid].get(k)!r}" for k in sorted(fields)]
    return out


def test_chaos_during_one_ingest_ends_as_a_clean_ingest(base: Path) -> None:
    media, stash = base / "media", base / "stash"
    originals = make_images(stash, FILES, size=(160, 120))
    (stash / "copies").mkdir()
    for n, src in enumerate(originals[:: FILES // COPIES][:COPIES]):
        shutil.copyfile(src, stash / "copies" / f"copy_{n:02d}.jpg")
    spare = [p.read_bytes() for p in make_images(base / "spare", 4, 99, (160, 120))]
    changed, gone = media / "changed.jpg", media / "gone.jpg"
    media.mkdir()
    changed.write_bytes(spare[0])
    gone.write_bytes(spare[1])
    data_a, data_b = base / "data_a", base / "data_b"
    data_a.mkdir()
    data_b.mkdir()
    give_away(base)
    started = time.monotonic()
    log: list[str] = []  # what happened when, for the failure message (and -s)

    def note(what: str) -> None:
        log.append(f"{time.monotonic() - started:5.1f}s {what}")
        print(log[-1], flush=True)

    with ExitStack() as stack:
        # Both load their models at once (one core each): the time of one.
        first = stack.enter_context(running_ml_service(env=LIGHT, wait_ready=False))
        second = stack.enter_context(running_ml_service(env=LIGHT, wait_ready=False))
        for replica in (first, second):
            wait_until_ready(_port(replica), replica.process, replica.log_path, 180.0)
        note("replicas ready")
        opened: list[Orchestrator] = []
        stack.callback(_kill_all, opened)

        # B runs the chaos; A, the reference, ingests the tree as it is once the chaos has changed it. Both
        # processes start together (one core each).
        orch, ref = _start_together(opened, base, media, [first.url], data_b, data_a)

        # Before the chaos job, B holds an earlier tree: changed.jpg with other bytes, gone.jpg.
        done = orch.finish(orch.submit(media))
        assert done["state"] == "completed" and _stored(done) == 2, done
        note("B: the earlier tree ingested")
        for sub in stash.iterdir():
            sub.rename(media / sub.name)

        # The chaos job. 1: the orchestrator killed with SIGKILL mid-job.
        job_id = orch.submit(media)
        status = orch.until(job_id, lambda s: _stored(s) >= FILES // 5, "progress before the kill")
        orch.close(graceful=False)
        note(f"orchestrator killed, {_stored(status)} points stored")
        changed.write_bytes(spare[2])  # while it is down: a stored file changes, another goes
        gone.unlink()

        # 2: restarted with two replicas, it resumes the job by itself; one replica killed with SIGKILL.
        orch = Orchestrator(base, data_b, media, [first.url, second.url])
        opened.append(orch)
        jobs = {j["job_id"]: j for j in orch.client.get("/jobs").json()["jobs"]}
        assert jobs[job_id]["state"] in ACTIVE, jobs[job_id]
        status = orch.until(
            job_id,
            lambda s: s["runs"] == 2 and _stored(s) >= 10 and orch.replicas()[second.url]["requests"] > 0,
            "progress after the restart, the second replica in use",
        )
        second.process.kill()
        second.process.wait(timeout=30)
        note(f"replica killed, run 2 stored {_stored(status)}")
        mark = _stored(status)
        # It stays down: loading a replica's models again costs as much CPU as the rest of the job here,
        # and the job must (and does) go on with the replica left.
        status = orch.until(job_id, lambda s: _stored(s) >= mark + 10, "progress on one replica")

        # 3: the store refuses writes until its directory is writable again: the job fails with the reason.
        note(f"store read-only, run 2 stored {_stored(status)}")
        with read_only(data_b / EDGE_SUBDIR):
            failed = orch.until(job_id, lambda s: s["state"] not in ACTIVE, "the store fault", 60.0)
        assert failed["state"] == "failed", failed
        assert "Permission denied" in failed["error"], failed
        note(f"job failed: {failed['error'][:100]}")
        # The refused write's points are in the store all the same (the engine applied them before its
        # flush failed), and their files are not marked done. One of those files goes, one changes.
        unmarked = _written_not_done(orch, media, data_b / "file_index.sqlite3")
        assert unmarked, "no file written and not marked done: the fault window did not happen"
        unmarked[0].unlink()
        if len(unmarked) > 1:
            unmarked[-1].write_bytes(spare[3])
        note(f"written, not marked done: {[p.name for p in unmarked]}; first gone, last changed")
        # The tree is final from here on: A's clean ingest of it runs beside B's last two jobs.
        reference_job = ref.submit(media)

        # 4: the same directory again, once the store writes again: it completes.
        retry = orch.submit(media)
        assert retry != job_id
        done = orch.finish(retry)
        assert done["state"] == "completed" and done["counters"]["failed"] == 0, done
        note(f"retry completed: {done['counters']}")

        # The index knows every file once: a second ingest reads nothing, writes nothing, asks no model.
        files = sorted(str(p) for p in media.rglob("*.jpg"))
        again = orch.finish(orch.submit(media))
        counters = again["counters"]
        assert again["state"] == "completed", again
        assert counters["unchanged"] == counters["done"] == len(files), counters
        assert counters["hashed"] == counters["ml_requests"] == counters["upserted"] == 0, counters
        replicas = orch.replicas()
        assert replicas[first.url]["healthy"] and not replicas[second.url]["healthy"], replicas
        note("second ingest: nothing to do")
        orch.close()

        # A: the reference, a clean ingest of the tree as it is now.
        done = ref.finish(reference_job)
        assert done["state"] == "completed" and done["counters"]["failed"] == 0, done
        assert done["counters"]["done"] == len(files), done
        ref.close()
        note(f"reference ingested: {done['counters']}")

    reference = asyncio.run(read_store(data_a / EDGE_SUBDIR))
    chaos = asyncio.run(read_store(data_b / EDGE_SUBDIR))
    differences = _diff(reference, chaos)
    assert not differences, "\n".join(log + differences[:40])
    # Every file of the tree is on exactly one point, and nothing else is.
    listed = [p for point in chaos["media"].values() for p in point["paths"]]
    assert sorted(listed) == files
    # The file index: every file once, and nothing left owed or parked by the failed and killed runs.
    indexed, leftovers = _file_index(data_b / "file_index.sqlite3")
    assert sorted(indexed) == files, sorted(set(indexed) ^ set(files))
    assert leftovers == {"parked": 0, "releases": 0, "failures": 0}, leftovers
    note("stores and file index compared")


def _written_not_done(orch: Orchestrator, media: Path, index: Path) -> list[Path]:
    """Files whose content's point lists them while the file index does not hold them (in path order)."""
    indexed = set(_file_index(index)[0])
    out = []
    for path in sorted(media.rglob("*.jpg")):
        if str(path) in indexed:
            continue
        media_id = point_id(blake3.blake3(path.read_bytes()).hexdigest(), 0)
        resp = orch.client.get(f"/media/{media_id}")
        if resp.status_code == 200 and str(path) in resp.json()["paths"]:
            out.append(path)
    return out


def _start_together(
    opened: list[Orchestrator], base: Path, media: Path, ml_urls: list[str], *datas: Path
) -> list[Orchestrator]:
    """One orchestrator per DATA_DIR, started at once; each one that answers goes into `opened` (killed at
    the end) before the first failure to start, if any, is raised."""
    with ThreadPoolExecutor(len(datas)) as starting:
        futures = [starting.submit(Orchestrator, base, data, media, ml_urls) for data in datas]
    opened += [f.result() for f in futures if f.exception() is None]
    return [f.result() for f in futures]


def _kill_all(opened: list[Orchestrator]) -> None:
    for orchestrator in opened:
        orchestrator.close(graceful=False)


def _file_index(path: Path) -> tuple[list[str], dict[str, int]]:
    """The paths the index holds for "media", and how many rows its other durable tables hold."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT directory, name FROM files WHERE collection = 'media'").fetchall()
        tables = ("parked", "releases", "failures")
        counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    return [os.path.join(d, n) for d, n in rows], counts


def _port(service: MLService) -> int:
    return int(service.url.rsplit(":", 1)[1])


class AppliesThenFails(CountingStore):
    """The real Edge store; while `broken`, an upsert of the main collection is applied and then reported
    failed, as Edge does when its flush fails after the update (measured: tests/support/read_only.py)."""

    def __init__(self, inner: CountingStore) -> None:
        super().__init__(inner.inner)
        self.broken = True

    async def upsert(self, name: str, points: list[PointRecord]) -> None:
        await super().upsert(name, points)
        if self.broken and name == "media":
            raise OSError("Input/output error")


def _hash(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


async def test_a_write_never_marked_done_is_taken_back_when_its_file_goes_or_changes(
    tmp_path: Path, ml_service_url: str
) -> None:
    """A write is stored but its files are not marked done (the store failed after applying it); then one
    file goes and another changes before the next job. That job leaves no point listing the gone file, and
    the old content of the changed one keeps only the path that still holds it (its copy)."""
    media = tmp_path / "media"
    gone, changing = await asyncio.to_thread(make_images, media, 2, 5)
    copy = media / "copy.jpg"
    copy.write_bytes(changing.read_bytes())
    replacement = (await asyncio.to_thread(make_images, tmp_path / "spare", 1, 99))[0].read_bytes()
    old = _hash(changing)
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path], qdrant_upsert_batch_size=64)
    store = AppliesThenFails(counting_store(settings))
    async with running_orchestrator(settings, store) as orch:

        async def ingest() -> dict[str, Any]:
            job_id = (await orch.client.post("/jobs", json={"path": str(media)})).json()["job_id"]
            return await orch.wait_job(job_id)

        failed = await ingest()
        assert failed["state"] == "failed" and "Input/output error" in failed["error"], failed
        assert await store.count("media") >= 1  # applied, and nothing marked done
        assert await orch.services.index.count("media") == 0

        gone.unlink()
        changing.write_bytes(replacement)
        store.broken = False
        done = await ingest()
        assert done["state"] == "completed" and done["counters"]["failed"] == 0, done
        points, _ = await store.scroll("media", None, 100, None)
        assert {p.id: p.payload["paths"] for p in points} == {
            point_id(_hash(changing), 0): [str(changing)],
            point_id(old, 0): [str(copy)],
        }
        assert await orch.services.index.pending_releases("media") == []
        # Nothing of the failed job is left in the index either (the copy it had parked).
        _, leftovers = await asyncio.to_thread(_file_index, settings.index_path)
        assert leftovers == {"parked": 0, "releases": 0, "failures": 0}, leftovers


class HeldAfterWrite(CountingStore):
    """The real Edge store; the first upsert of the main collection is applied, then held until `gate`."""

    def __init__(self, inner: CountingStore) -> None:
        super().__init__(inner.inner)
        self.written = asyncio.Event()
        self.gate = asyncio.Event()

    async def upsert(self, name: str, points: list[PointRecord]) -> None:
        await super().upsert(name, points)
        if name == "media" and not self.written.is_set():
            self.written.set()
            await self.gate.wait()


async def test_a_job_does_not_take_back_a_write_another_job_has_in_flight(
    tmp_path: Path, ml_service_url: str
) -> None:
    """Two jobs on one collection: the first has written a file's point and not yet marked it done when the
    second starts (and pays what earlier jobs left owed). The second must leave that write alone."""
    first_root, second_root = tmp_path / "first", tmp_path / "second"
    (held,) = await asyncio.to_thread(make_images, first_root, 1, 11)
    (other,) = await asyncio.to_thread(make_images, second_root, 1, 12)
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path], max_concurrent_jobs=2)
    store = HeldAfterWrite(counting_store(settings))
    async with running_orchestrator(settings, store) as orch:
        first = (await orch.client.post("/jobs", json={"path": str(first_root)})).json()["job_id"]
        await asyncio.wait_for(store.written.wait(), 120)
        second = (await orch.client.post("/jobs", json={"path": str(second_root)})).json()["job_id"]
        assert (await orch.wait_job(second))["state"] == "completed"
        store.gate.set()
        assert (await orch.wait_job(first))["state"] == "completed"
        points, _ = await store.scroll("media", None, 100, None)
        assert {p.id: p.payload["paths"] for p in points} == {
            point_id(_hash(held), 0): [str(held)],
            point_id(_hash(other), 0): [str(other)],
        }


async def test_a_failed_job_leaves_no_duplicate_parked(tmp_path: Path, ml_service_url: str) -> None:
    """A copy waits (parked in the file index) for its first copy's write; the first copy's analysis never
    comes (the ML service holds it past the retry deadline) and the job fails. The parked row goes with the
    failed run: nothing would ever read it again."""
    media = tmp_path / "media"
    (original,) = await asyncio.to_thread(make_images, media, 1, 21)
    (media / "copy.jpg").write_bytes(original.read_bytes())
    with ml_gate(ml_service_url) as gate:  # holds every analysis until the test ends
        settings = make_settings(
            tmp_path / "data", gate.url, [tmp_path], ml_request_timeout_s=1.0, ml_retry_deadline_s=5.0
        )
        async with running_orchestrator(settings) as orch:
            job_id = (await orch.client.post("/jobs", json={"path": str(media)})).json()["job_id"]
            deadline = time.monotonic() + 60
            while (await asyncio.to_thread(_file_index, settings.index_path))[1]["parked"] < 1:
                assert time.monotonic() < deadline, "the copy was never parked"
                await asyncio.sleep(_POLL_S)
            failed = await orch.wait_job(job_id)
            assert failed["state"] == "failed" and "ML service unavailable" in str(failed["error"]), failed
            _, leftovers = await asyncio.to_thread(_file_index, settings.index_path)
            assert leftovers["parked"] == 0, leftovers
