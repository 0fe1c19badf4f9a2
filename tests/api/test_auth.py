"""API key: every route but liveness/readiness needs it when API_KEY is set; exposure needs a key."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.app import create_app
from orchestrator.config import Settings
from tests.support.app_factory import counting_store, make_settings
from tests.support.orchestrator_server import running_orchestrator


async def test_routes_need_the_key(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    settings = make_settings(tmp_path / "data", "http://127.0.0.1:9", [tmp_path], api_key="s3cret")
    async with running_orchestrator(settings, counting_store(settings)) as orch:
        assert (await orch.client.get("/health")).status_code == 200
        assert (await orch.client.get("/ready")).status_code == 503  # open, and says the ML service is down
        for method, path in [
            ("GET", "/jobs"),
            ("POST", "/jobs"),
            ("GET", "/search?q=x"),
            ("GET", "/collections"),
            ("DELETE", "/collections/media"),
            ("GET", "/media/00000000-0000-0000-0000-000000000000/thumbnail"),
            ("GET", "/metrics"),
            ("GET", "/people"),
            ("GET", "/jobs/nope/events"),
        ]:
            resp = await orch.client.request(method, path)
            assert resp.status_code == 401, (method, path, resp.status_code)
            resp = await orch.client.request(method, path, headers={"x-api-key": "wrong"})
            assert resp.status_code == 401, (method, path, resp.status_code)
        ok = await orch.client.get("/jobs", headers={"x-api-key": "s3cret"})
        assert ok.status_code == 200
        bearer = await orch.client.get("/collections", headers={"authorization": "Bearer s3cret"})
        assert bearer.status_code == 200
        created = await orch.client.post(
            "/jobs", json={"path": str(tmp_path / "media")}, headers={"x-api-key": "s3cret"}
        )
        assert created.status_code == 202


def test_listening_beyond_loopback_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="API_KEY"):
        create_app(Settings(data_dir=tmp_path, host="0.0.0.0"))
    create_app(Settings(data_dir=tmp_path, host="0.0.0.0", api_key="k"))
    create_app(Settings(data_dir=tmp_path, host="127.0.0.1"))
