"""Documents end to end: PDF (text and scanned pages), DOCX (with a picture), HTML, Markdown and plain text
become passages with their page, section and heading; search finds them; a re-ingest costs no ML call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scripts.sample_documents import docx_file, scanned_pdf, sign_picture, text_pdf
from tests.support.app_factory import counting_store, make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow

FILLER = "The committee reviewed the minutes and agreed to meet again next month. " * 30


def _library(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "harbour.pdf").write_bytes(
        text_pdf(
            [
                [
                    "Harbour report",
                    "The ferry to the island leaves at nine every morning.",
                    "Cod and hake sold well.",
                ],
                ["Council budget", "The council approved money for a new bridge over the river."],
            ],
            title="Harbour and council",
        )
    )
    (root / "scan.pdf").write_bytes(scanned_pdf(["ROAD CLOSED", "FLOODING AHEAD"]))
    docx_file(
        root / "bees.docx",
        [("Pollination", ["Honey bees pollinate the almond orchards in February."]), ("Methods", [FILLER])],
        picture=sign_picture(["BEEHIVE 42"], (900, 300)),
    )
    (root / "volcano.html").write_text(
        "<html><head><title>Eruption</title><script>var x = 'lava';</script></head><body>"
        "<h1>Volcano</h1><p>Lava reached the sea near the fishing village.</p>"
        "<h2>Flights</h2><p>Ash clouds grounded every flight for two days.</p></body></html>"
    )
    (root / "bread.md").write_text("# Recipes\n\nSourdough bread needs a starter fed with rye flour.\n")
    (root / "notes.txt").write_text("Remember to water the tomato plants on Sunday.\n")
    (root / "empty.txt").write_text("")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf at all\n")
    (root / "fake.docx").write_bytes(b"PK\x03\x04" + b"\x00" * 64)


async def _search(orch: RunningOrchestrator, q: str, **params: Any) -> list[dict[str, Any]]:
    params = {"q": q, "collection": "docs", "limit": 5, **params}
    resp = await orch.client.get("/search", params=params)
    assert resp.status_code == 200, resp.text
    hits: list[dict[str, Any]] = resp.json()["hits"]
    return hits


async def _ingest(orch: RunningOrchestrator, root: Path, collection: str = "docs") -> dict[str, Any]:
    body = {"path": str(root), "collection": collection}
    resp = await orch.client.post("/jobs", json=body)
    assert resp.status_code == 202, resp.text
    return await orch.wait_job(resp.json()["job_id"])


async def test_documents_become_passages_found_by_search(tmp_path: Path, ml_service_url: str) -> None:
    root = tmp_path / "library"
    _library(root)
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path], document_passage_words=40)
    store = counting_store(settings)
    async with running_orchestrator(settings, store) as orch:
        status = await _ingest(orch, root)
        assert status["state"] == "completed", status
        counters = status["counters"]
        errors = (await orch.client.get(f"/jobs/{status['job_id']}/errors")).json()["errors"]
        reasons = {Path(e["path"]).name: e["reason"] for e in errors}
        assert set(reasons) == {"broken.pdf", "fake.docx"}, reasons
        assert "not a readable PDF" in reasons["broken.pdf"]
        assert "DOCX" in reasons["fake.docx"]
        assert counters["skipped"] == 1  # the empty note

        hits = await _search(orch, "when does the ferry to the island leave")
        assert Path(hits[0]["path"]).name == "harbour.pdf"
        assert (hits[0]["media_type"], hits[0]["page"], hits[0]["heading"]) == (
            "document",
            1,
            "Harbour report",
        )
        hits = await _search(orch, "bridge over the river", media_type="document")
        assert (Path(hits[0]["path"]).name, hits[0]["page"]) == ("harbour.pdf", 2)
        thumb = await orch.client.get(hits[0]["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"

        hits = await _search(orch, "road closed flooding")  # no text layer: read by OCR
        assert Path(hits[0]["path"]).name == "scan.pdf" and hits[0]["page"] == 1
        assert "ROAD" in hits[0]["ocr_text"].upper()
        hits = await _search(orch, "almond orchards pollination")
        assert Path(hits[0]["path"]).name == "bees.docx" and hits[0]["heading"] == "Pollination"
        hits = await _search(orch, "beehive 42")  # the DOCX's picture, read by OCR
        assert Path(hits[0]["path"]).name == "bees.docx"
        hits = await _search(orch, "ash clouds grounded flights")
        assert Path(hits[0]["path"]).name == "volcano.html" and hits[0]["heading"] == "Flights"
        assert all("var x" not in h["snippet"] for h in await _search(orch, "var x lava"))  # scripts unread
        hits = await _search(orch, "sourdough starter rye")
        assert Path(hits[0]["path"]).name == "bread.md" and hits[0]["heading"] == "Recipes"
        hits = await _search(orch, "water the tomato plants")
        assert Path(hits[0]["path"]).name == "notes.txt"

        # The long section is cut into passages of at most 40 words, each under its heading.
        page, _ = await store.scroll("docs", None, 1000, None)
        methods = [p.payload for p in page if p.payload.get("heading") == "Methods"]
        assert len(methods) >= 9 and all(len(str(p["text"]).split()) <= 41 for p in methods)
        assert {p.payload["section"] for p in page if Path(p.payload["paths"][0]).name == "bees.docx"} == {
            1,
            2,
        }

        # Another collection over the same files: every passage, picture answer and text vector is cached.
        again = await _ingest(orch, root, collection="docs2")
        assert again["state"] == "completed", again
        assert again["counters"]["ml_requests"] == 0, again["counters"]
        assert await store.count("docs2") == await store.count("docs")
        hits = await _search(orch, "bridge over the river", collection="docs2")
        assert (Path(hits[0]["path"]).name, hits[0]["page"], hits[0]["heading"]) == (
            "harbour.pdf",
            2,
            "Council budget",
        )
