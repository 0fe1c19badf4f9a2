"""Signed media URLs: what a browser's <img>/<video> uses when API_KEY is set."""

from __future__ import annotations

import time
from pathlib import Path

from orchestrator.api.signing import sign_url
from tests.support.app_factory import make_settings
from tests.support.orchestrator_server import running_orchestrator

MEDIA = "/media/00000000-0000-0000-0000-000000000001"


async def test_a_signed_url_opens_that_media_route_only_until_it_expires(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", "http://127.0.0.1:9", [tmp_path], api_key="s3cret")
    async with running_orchestrator(settings) as orch:
        thumb = sign_url(f"{MEDIA}/thumbnail?collection=main", "s3cret", 60)
        # Past the key check: the media is unknown (404), not unauthorised (401).
        assert (await orch.client.get(thumb)).status_code == 404
        assert (await orch.client.get(f"{MEDIA}/thumbnail?collection=main")).status_code == 401
        # The signature names one path and one collection.
        assert (await orch.client.get(thumb.replace("/thumbnail", "/stream"))).status_code == 401
        assert (
            await orch.client.get(thumb.replace("collection=main", "collection=other"))
        ).status_code == 401
        assert (await orch.client.get(sign_url(f"{MEDIA}?collection=main", "s3cret", 60))).status_code in (
            401,
            422,
        )
        assert (
            await orch.client.get(sign_url(f"{MEDIA}/thumbnail?collection=main", "other", 60))
        ).status_code == 401
        expired = sign_url(f"{MEDIA}/stream?collection=main", "s3cret", 60, now=time.time() - 3600)
        assert (await orch.client.get(expired)).status_code == 401
        assert (
            await orch.client.get(sign_url(f"{MEDIA}/stream?collection=main", "s3cret", 60))
        ).status_code == 404


def test_without_a_key_urls_are_left_as_they_are() -> None:
    assert sign_url(f"{MEDIA}/thumbnail?collection=main", None, 60) == f"{MEDIA}/thumbnail?collection=main"
