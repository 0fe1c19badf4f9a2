"""Search through the HTTP API over the sample tree (real ML service, embedded Qdrant Edge): marked
snippets, file names as keywords, the relevance floor, pages, filters and search by example."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from skimage import data as skdata

from scripts.make_samples import SampleManifest
from tests.support.app_factory import make_settings
from tests.support.orchestrator_server import RunningOrchestrator, running_orchestrator

pytestmark = pytest.mark.slow


async def _search(orch: RunningOrchestrator, **params: object) -> dict[str, Any]:
    resp = await orch.client.get("/search", params={"collection": "main", **params})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _is(hit: dict[str, Any], suffix: str) -> bool:
    """The hit's content lies at a path ending so (a content's copies share one point)."""
    return any(str(p).endswith(suffix) for p in hit["paths"])


def _jpeg(array: Any, size: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).resize((size, size)).save(out, "JPEG", quality=90)
    return out.getvalue()


async def test_search_over_the_samples(
    tmp_path: Path, ml_service_url: str, samples: SampleManifest, sample_copy: Path
) -> None:
    settings = make_settings(tmp_path / "data", ml_service_url, [tmp_path])
    async with running_orchestrator(settings) as orch:
        job = (await orch.client.post("/jobs", json={"path": str(sample_copy), "collection": "main"})).json()
        assert (await orch.wait_job(job["job_id"]))["state"] == "completed"

        # Stemmed keywords mark the words where they matched; a real match clears the relevance floor.
        body = await _search(orch, q="floods in Valencia", limit=3)
        top = body["hits"][0]
        assert _is(top, "news/breaking_flood.png") and body["no_good_match"] is False
        assert top["snippet_source"] == "ocr" and "<mark>FLOOD</mark>" in top["snippet_html"]
        assert [top["snippet"][a:b] for a, b in top["highlights"]] == ["FLOOD", "VALENCIA"]
        assert top["relevance"]["keywords"] == 1.0
        # Nothing about this in the archive: said so, rather than noise presented as an answer.
        body = await _search(orch, q="submarine volcano tax audit", limit=3)
        assert body["no_good_match"] is True, [h["relevance"] for h in body["hits"]]
        # A word only in a file's name ("chelsea_the_cat.jpg") finds it; every hit has a snippet.
        body = await _search(orch, q="chelsea", limit=5)
        assert _is(body["hits"][0], "chelsea_the_cat.jpg")
        assert body["hits"][0]["snippet_source"] == "filename" and body["no_good_match"] is False
        assert all(h["snippet"] for h in body["hits"])

        # Pages: no hit twice, the last page says so.
        first = await _search(orch, q="photo", limit=4)
        second = await _search(orch, q="photo", limit=4, offset=first["next_offset"])
        assert first["next_offset"] == 4
        assert not {h["id"] for h in first["hits"]} & {h["id"] for h in second["hits"]}
        distinct = len(samples.photos) + len(samples.text_images) + 1
        everything = await _search(orch, q="photo", limit=distinct)
        assert len(everything["hits"]) == distinct and everything["next_offset"] is None

        # Filters: has_text (words read on screen), ingested after now (nothing yet), media type.
        read = await _search(orch, q="photo", limit=20, has_text="true")
        for printed in samples.text_images:
            assert any(_is(h, printed) for h in read["hits"]), printed
        assert all(h["ocr_text"] for h in read["hits"])
        assert all(
            not h["ocr_text"] for h in (await _search(orch, q="photo", limit=20, has_text="false"))["hits"]
        )
        assert (await _search(orch, q="photo", ingested_after=4e9))["hits"] == []
        assert (await _search(orch, q="photo", media_type="video"))["hits"] == []
        bad = await orch.client.get("/search", params={"q": "x", "speaker": "x" * 201})
        assert bad.status_code == 422
        # A person named nothing known (no such name or id): no hits, never an unfiltered search.
        assert (await _search(orch, q="photo", speaker="Nobody Known"))["hits"] == []
        assert (await _search(orch, q="photo", person="person-000000000000"))["hits"] == []

        # By example: the astronaut's face, resized and re-encoded, finds her photo as that person.
        face = base64.b64encode(_jpeg(skdata.astronaut(), 480)).decode()
        resp = await orch.client.post("/search", json={"image_base64": face, "collection": "main"})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["example"]["by"] == "face" and body["example"]["person"].startswith("person-")
        assert _is(body["hits"][0], "astronaut.jpg")
        # No face: similar by what the ML service sees in it (a cat).
        upload = {"image": ("cat.jpg", _jpeg(skdata.chelsea(), 256), "image/jpeg")}
        resp = await orch.client.post("/search/image", files=upload, data={"collection": "main"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["example"]["by"] in ("description", "image")
        assert _is(resp.json()["hits"][0], "chelsea_the_cat.jpg")
        # A stored moment as the example: others like it, never itself.
        coffee = next(h for h in everything["hits"] if _is(h, "coffee.jpg"))
        resp = await orch.client.post("/search", json={"media_id": coffee["id"], "collection": "main"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["hits"] and coffee["id"] not in {h["id"] for h in resp.json()["hits"]}
        assert (
            await orch.client.post("/search", json={"media_id": "0" * 8 + "-0000-0000-0000-" + "0" * 12})
        ).status_code == 404
        not_image = base64.b64encode(b"not an image at all").decode()
        assert (await orch.client.post("/search", json={"image_base64": not_image})).status_code == 422
        both = {"query": "cat", "media_id": coffee["id"]}
        assert (await orch.client.post("/search", json=both)).status_code == 422
