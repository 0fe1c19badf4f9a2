"""Model upgrades without starting over, end to end: real ML services (a second OCR version by its settings,
a second text model made by the test), the real orchestrator over HTTP, Qdrant Edge.

- A new OCR model re-runs OCR only (and the text vectors of the chunks whose text changed), in place.
- A new text model builds version 2 beside version 1; until the switch, search answers from version 1
  with the old query model; after it, from version 2 with the new one; each version's points carry one
  manifest only (never mixed).
- Replicas with different text models: the job refuses, naming both versions.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.manifest import current_manifest
from orchestrator.media.images import decode_image
from scripts.bench_pipeline import make_images
from scripts.ml_process import free_port
from tests.support.app_factory import make_settings
from tests.support.ml_gate import ml_gate
from tests.support.ml_server import QUICK_START_TEXT, MLService, running_ml_service
from tests.support.model_variants import text_model_variant
from tests.support.orchestrator_process import give_away, kill, start_orchestrator, stop
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow

FILES = 16
# Light services: OCR and tags (a derived-text task and another one), the text model; no audio. The text
# model is e5 (QUICK_START_TEXT: ready in a second, no torch import); the new one is a MiniLM variant.
LIGHT = {
    **QUICK_START_TEXT,
    "ML_IMAGE_TASKS": "ocr,tags",
    "ML_ASR_ENABLED": "false",
    "ML_VOICES_ENABLED": "false",
    "ML_CPU_THREADS": "1",
}
# Another OCR version: a stricter score threshold is part of the model's version (processing options).
NEW_OCR = {**LIGHT, "ML_OCR_MIN_SCORE": "0.95"}


@dataclass(frozen=True)
class Services:
    """The module's ML services, started together and not yet waited for (`MLService.wait_ready`)."""

    light: MLService
    new_ocr: MLService  # the light service with another OCR version
    new_text: MLService  # the new text model, the old one kept for queries of the old version


@pytest.fixture(scope="module")
def new_text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return text_model_variant(tmp_path_factory.mktemp("models") / "minilm-variant")


@pytest.fixture(scope="module")
def services(new_text_model: Path) -> Iterator[Services]:
    """Started at once: the light ones are ready in seconds, the new text model's service (torch and
    sentence-transformers) loads while the first tests run."""
    new_text_env = {
        **LIGHT,
        "ML_TEXT_BACKEND": "sentence-transformers",
        "ML_TEXT_MODEL_PATH": str(new_text_model),
        "ML_TEXT_QUERY_BACKENDS": LIGHT["ML_TEXT_BACKEND"],  # the old model, for the old version's queries
    }
    with ExitStack() as stack:
        started = [
            stack.enter_context(running_ml_service(env=env, wait_ready=False))
            for env in (LIGHT, NEW_OCR, new_text_env)
        ]
        yield Services(*started)


@pytest.fixture(scope="module")
def light(services: Services) -> MLService:
    return services.light.wait_ready()


@pytest.fixture(scope="module")
def new_text(services: Services) -> MLService:
    """The upgraded service: the new text model, the old one kept for queries of the old version."""
    return services.new_text.wait_ready()


def _names_a_version(body: bytes) -> bool:
    """A search's embed request (it names the model version); the gate holds the others (a job's)."""
    return b'"version"' in body


def _caps(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/capabilities", timeout=30).json()
    return body


async def _job(orch: RunningOrchestrator, resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 202, resp.text
    return dict(await orch.wait_job(resp.json()["job_id"], timeout_s=600))


async def _ingest(orch: RunningOrchestrator, media: Path, collection: str) -> dict[str, Any]:
    return await _job(
        orch, await orch.client.post("/jobs", json={"path": str(media), "collection": collection})
    )


async def _payloads(orch: RunningOrchestrator, physical: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    offset: str | None = None
    while True:
        points, offset = await orch.services.store.scroll(physical, None, 256, offset)
        out.update({p.id: p.payload for p in points})
        if offset is None:
            return out


async def test_a_new_ocr_model_reanalyses_ocr_only(
    tmp_path: Path, light: MLService, services: Services
) -> None:
    # The upgraded service may still load its models while the first ingest runs (it is used afterwards).
    upgraded = services.new_ocr
    media = tmp_path / "media"
    files = make_images(media, FILES)
    data = tmp_path / "data"
    settings = make_settings(data, light.url, [tmp_path])
    async with running_orchestrator(settings) as orch:
        first = await _ingest(orch, media, "ocr")
        assert first["state"] == "completed" and first["counters"]["upserted"] == FILES, first
        before = await _payloads(orch, "ocr")
        shown = (await orch.client.get("/collections/ocr")).json()
        assert shown["version"] == 1 and shown["stale"]["kind"] == "current", shown

    await asyncio.to_thread(upgraded.wait_ready)
    settings = make_settings(data, upgraded.url, [tmp_path])
    old_ocr, new_ocr = before[next(iter(before))]["models"], None
    async with running_orchestrator(settings) as orch:
        shown = (await orch.client.get("/collections/ocr")).json()
        assert shown["stale"]["kind"] == "derived" and shown["stale"]["tasks"] == ["ocr"], shown
        done = await _job(orch, await orch.client.post("/collections/ocr/reanalyze"))
        assert done["state"] == "completed", done
        assert done["kind"] == "reanalyze" and done["path"] is None
        calls = done["ml_calls_by_task"]
        assert set(calls) <= {"ocr", "text"} and calls["ocr"] >= 1, calls  # tags: all cached
        assert done["counters"]["failed"] == 0, done["errors"]
        shown = (await orch.client.get("/collections/ocr")).json()
        assert shown["version"] == 1 and [v["version"] for v in shown["versions"]] == [1]  # in place
        assert shown["stale"]["kind"] == "current", shown
        now = current_manifest(_caps(upgraded.url)["models"], settings)
        assert shown["models"] == now.models
        after = await _payloads(orch, "ocr")
        new_ocr = after[next(iter(after))]["models"]
        # Every point: the OCR the new model reads in the picture the models see; its text follows.
        async with httpx.AsyncClient(base_url=upgraded.url, timeout=60) as ml:
            for path in files:
                point = next(p for p in after.values() if p["path"] == str(path))
                copy = decode_image(
                    path.read_bytes(),
                    ml_max_side=settings.ml_image_max_side,
                    thumb_side=settings.thumbnail_size,
                    max_pixels=settings.max_image_pixels,
                ).ml_jpeg
                image = {"id": "0", "data": base64.b64encode(copy).decode()}
                asked = await ml.post("/v1/analyze/images", json={"images": [image], "tasks": ["ocr"]})
                answer = asked.json()["results"][0]
                assert point["ocr_text"] == (answer["ocr"] or {}).get("text", "").strip(), path
                assert point["ocr_text"] in point["text"]
                assert point["tags"] == before[_id_of(before, path)]["tags"]  # not asked again
        assert set(after) == set(before)
        assert {p["models"] for p in after.values()} == {new_ocr} and new_ocr != old_ocr
        # A second run has nothing left to do.
        again = await _ingest(orch, media, "ocr")
        assert again["ml_calls_by_task"] == {} and again["counters"]["ml_requests"] == 0, again


def _id_of(payloads: dict[str, dict[str, Any]], path: Path) -> str:
    return next(i for i, p in payloads.items() if p["path"] == str(path))


async def test_a_new_text_model_builds_a_version_beside_the_old_and_switches(
    tmp_path: Path, light: MLService, new_text: MLService
) -> None:
    media = tmp_path / "media"
    make_images(media, FILES)
    data = tmp_path / "data"
    old_text = _caps(light.url)["models"]["text"]["version"]
    new_version = _caps(new_text.url)["models"]["text"]["version"]
    assert old_text != new_version
    async with running_orchestrator(make_settings(data, light.url, [tmp_path])) as orch:
        assert (await _ingest(orch, media, "txt"))["state"] == "completed"
        v1 = await _payloads(orch, "txt")

    # The build's own ML requests wait at the gate; searches (which name their model version) pass.
    with ml_gate(new_text.url, passes=_names_a_version) as gate:
        settings = make_settings(data, gate.url, [tmp_path], ml_retry_deadline_s=120.0)
        async with running_orchestrator(settings) as orch:
            shown = (await orch.client.get("/collections/txt")).json()
            assert shown["stale"]["kind"] == "rebuild" and "text" in shown["stale"]["tasks"], shown
            job_id = (await orch.client.post("/collections/txt/reanalyze")).json()["job_id"]
            for _ in range(600):  # the build is under way: its first request is held
                if gate.held >= 1:
                    break
                await asyncio.sleep(0.05)
            assert gate.held >= 1
            during = (await orch.client.get("/collections/txt")).json()
            assert [(v["version"], v["state"]) for v in during["versions"]] == [
                (1, "current"),
                (2, "building"),
            ]
            for _ in range(3):
                found = await orch.client.get("/search", params={"q": "circle", "collection": "txt"})
                assert found.status_code == 200, found.text
                body = found.json()
                assert body["version"] == 1 and body["query_models"]["text"] == old_text, body
                assert body["hits"]
            gate.release()
            done: dict[str, Any] = dict(await orch.wait_job(job_id, timeout_s=600))
            assert done["state"] == "completed" and done["counters"]["failed"] == 0, done
            assert done["reanalysis"]["phase"] == "switched"
            assert set(done["ml_calls_by_task"]) == {"text"}, done["ml_calls_by_task"]  # OCR and tags cached
            found = (await orch.client.get("/search", params={"q": "circle", "collection": "txt"})).json()
            assert found["version"] == 2 and found["query_models"]["text"] == new_version, found
            shown = (await orch.client.get("/collections/txt")).json()
            assert [(v["version"], v["state"]) for v in shown["versions"]] == [(1, "retired"), (2, "current")]
            assert shown["stale"]["kind"] == "current" and shown["points"] == FILES
            listed = (await orch.client.get("/collections")).json()["collections"]
            assert [c["name"] for c in listed] == ["txt"]  # versions are not collections
            # Never mixed: each version's points were made by one manifest; version 1 is kept as it was.
            v2 = await _payloads(orch, "txt__v2")
            assert len({p["models"] for p in v2.values()}) == 1 and len(v2) == FILES
            assert await _payloads(orch, "txt") == v1
            assert {p["text"] for p in v2.values()} == {p["text"] for p in v1.values()}
            # The retired version goes when asked; the current one only with the collection.
            assert (await orch.client.delete("/collections/txt/versions/2")).status_code == 409
            assert (await orch.client.delete("/collections/txt/versions/1")).status_code == 200
            assert not await orch.services.store.collection_exists("txt")
            assert (await orch.client.get("/search", params={"q": "circle", "collection": "txt"})).json()[
                "hits"
            ]


async def test_replicas_with_different_text_models_refuse_the_job(
    tmp_path: Path, light: MLService, new_text: MLService
) -> None:
    media = tmp_path / "media"
    make_images(media, 2)
    settings = make_settings(
        tmp_path / "data", light.url, [tmp_path], ml_service_urls=f"{light.url},{new_text.url}"
    )
    old_text = _caps(light.url)["models"]["text"]["version"]
    new_version = _caps(new_text.url)["models"]["text"]["version"]
    async with running_orchestrator(settings) as orch:
        done = await _ingest(orch, media, "mixed")
        assert done["state"] == "failed", done
        assert "MLReplicasDisagreeError" in done["error"]
        assert old_text in done["error"] and new_version in done["error"]
        assert light.url in done["error"] and new_text.url in done["error"]
        assert not await orch.services.store.collection_exists("mixed")


class _SearchPoller:
    """Searches the collection over and over from a thread while the test kills and restarts the
    orchestrator; records every answer (a refused connection while the process is down is not one)."""

    def __init__(self, url: str, collection: str) -> None:
        self._url = url
        self._collection = collection
        self.answers: list[tuple[int, int | None, str | None]] = []  # status, version, query text model
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="search-poller", daemon=True)

    def __enter__(self) -> _SearchPoller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=30) as client:
            while not self._stop.wait(0.05):
                try:
                    resp = client.get("/search", params={"q": "circle", "collection": self._collection})
                except httpx.TransportError:
                    continue  # the process is down (killed, restarting)
                body = resp.json() if resp.status_code == 200 else {}
                self.answers.append(
                    (resp.status_code, body.get("version"), (body.get("query_models") or {}).get("text"))
                )


def _job_state(client: httpx.Client, job_id: str) -> str:
    return str(client.get(f"/jobs/{job_id}").json()["state"])


def _wait_for(check: Callable[[], bool], what: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_kill_9_during_the_build_and_after_the_switch(
    base: Path, light: MLService, new_text: MLService
) -> None:
    tmp_path = base
    media = tmp_path / "media"
    make_images(media, FILES)
    data = tmp_path / "data"
    data.mkdir()
    give_away(tmp_path)  # the orchestrator serves as an unprivileged user when the tests run as root
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "DATA_DIR": str(data),
        "ALLOWED_ROOTS": str(tmp_path),
        "PORT": str(port),
        "ML_RETRY_DEADLINE_S": "120",
    }
    log = tmp_path / "orchestrator.log"
    old_text = _caps(light.url)["models"]["text"]["version"]
    new_version = _caps(new_text.url)["models"]["text"]["version"]
    expected = {1: old_text, 2: new_version}

    proc = start_orchestrator({**env, "ML_SERVICE_URL": light.url}, tmp_path, log)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            job_id = client.post("/jobs", json={"path": str(media), "collection": "k"}).json()["job_id"]
            _wait_for(
                lambda: client.get(f"/jobs/{job_id}").json()["state"] == "completed", "the first ingest"
            )
    finally:
        stop(proc)

    with (
        ml_gate(new_text.url, passes=lambda body: b'"version"' in body) as gate,
        _SearchPoller(url, "k") as poller,
    ):
        upgraded = {**env, "ML_SERVICE_URL": gate.url}
        proc = start_orchestrator(upgraded, tmp_path, log)
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                job_id = client.post("/collections/k/reanalyze").json()["job_id"]
                _wait_for(lambda: gate.held >= 1, "the build's first ML request")
                kill(proc)  # 1. during the build (version 2 exists, is being written)
                held_before = gate.held
                proc = start_orchestrator(upgraded, tmp_path, log)  # the job resumes by itself
                status = client.get(f"/jobs/{job_id}").json()
                assert status["state"] in ("queued", "running"), status
                _wait_for(
                    lambda: gate.held > held_before or client.get(f"/jobs/{job_id}").json()["runs"] >= 2,
                    "the resumed build",
                )
                gate.release()

                def switched() -> bool:
                    shown = client.get("/collections/k").json()
                    return bool(shown.get("version") == 2)

                _wait_for(switched, "the switch")
                kill(proc)  # 2. right after the switch, before or while the job finishes
                proc = start_orchestrator(upgraded, tmp_path, log)
                _wait_for(
                    lambda: client.get(f"/jobs/{job_id}").json()["state"] == "completed", "the job's end"
                )
                status = client.get(f"/jobs/{job_id}").json()
                assert status["counters"]["failed"] == 0, status
                shown = client.get("/collections/k").json()
                assert [(v["version"], v["state"]) for v in shown["versions"]] == [
                    (1, "retired"),
                    (2, "current"),
                ]
                assert shown["points"] == FILES and shown["stale"]["kind"] == "current"
                _wait_for(lambda: any(a[1] == 2 for a in poller.answers), "a search answered by version 2")
        finally:
            stop(proc)

    errors = [a for a in poller.answers if a[0] != 200]
    mixed = [a for a in poller.answers if a[0] == 200 and expected.get(a[1] or 0) != a[2]]
    assert poller.answers and not errors and not mixed, (errors[:5], mixed[:5])
    assert {a[1] for a in poller.answers} == {1, 2}


async def test_a_rebuild_that_cannot_read_a_root_keeps_the_current_version(
    tmp_path: Path, light: MLService, new_text: MLService
) -> None:
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    make_images(kept, 2)
    make_images(gone, 2, seed=3)
    data = tmp_path / "data"
    async with running_orchestrator(make_settings(data, light.url, [tmp_path])) as orch:
        for root in (kept, gone):
            assert (await _ingest(orch, root, "roots"))["state"] == "completed"
    shutil.rmtree(gone)  # e.g. an unmounted disk: its files must not silently leave the collection
    async with running_orchestrator(make_settings(data, new_text.url, [tmp_path])) as orch:
        done = await _job(orch, await orch.client.post("/collections/roots/reanalyze"))
        assert done["state"] == "failed" and "cannot build a new version" in done["error"], done
        assert str(gone) in done["error"]
        shown = (await orch.client.get("/collections/roots")).json()
        assert [(v["version"], v["state"]) for v in shown["versions"]] == [(1, "current")]
        assert shown["points"] == 4 and shown["stale"]["kind"] == "rebuild"
