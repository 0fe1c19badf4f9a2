"""ML_API_KEY: the orchestrator's scheme (X-API-Key or Authorization: Bearer) on every route but /health and
/ready, and no listening beyond loopback without a key. The real service as a subprocess (no models: the
routes are what is tested)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ml_service.app import create_app
from ml_service.config import MLSettings
from scripts.ml_process import log_tail
from tests.support.ml_server import NO_MODELS, running_ml_service

KEY = "ml-test-key-7f3a"
EXIT_TIMEOUT_S = 60.0
# Every route but the probes, with a method it serves.
PROTECTED = [
    ("GET", "/capabilities"),
    ("GET", "/metrics"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/embed/text"),
    ("POST", "/v1/analyze/images"),
    ("POST", "/api/v1/batch_embed_and_caption"),
    ("POST", "/v1/analyze/audio"),
]


@pytest.fixture(scope="module")
def keyed() -> Iterator[httpx.Client]:
    with running_ml_service(env={**NO_MODELS, "ML_API_KEY": KEY}) as service:
        with httpx.Client(base_url=service.url, timeout=30.0) as client:
            yield client


def test_probes_are_open(keyed: httpx.Client) -> None:
    assert keyed.get("/health").json() == {"status": "ok"}
    ready = keyed.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}],
    ids=["none", "wrong-header", "wrong-bearer", "other-scheme"],
)
def test_other_routes_refuse_a_missing_or_wrong_key(
    keyed: httpx.Client, method: str, path: str, headers: dict[str, str]
) -> None:
    response = keyed.request(method, path, headers=headers, json={"texts": ["x"]})
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}]
)
def test_the_key_opens_them(keyed: httpx.Client, headers: dict[str, str]) -> None:
    capabilities = keyed.get("/capabilities", headers=headers)
    assert capabilities.status_code == 200, capabilities.text
    assert capabilities.json()["service"] == "archivist-ml"
    assert keyed.get("/metrics", headers=headers).status_code == 200
    # Past authentication, the route answers as ever (no text model here: 404).
    assert keyed.post("/v1/embed/text", headers=headers, json={"texts": ["x"]}).status_code == 404


def test_refuses_to_listen_beyond_loopback_without_a_key() -> None:
    with running_ml_service(env={**NO_MODELS, "ML_HOST": "0.0.0.0"}, wait_ready=False) as service:
        code = service.process.wait(timeout=EXIT_TIMEOUT_S)
        log = log_tail(service.log_path)
    assert code != 0
    assert "refusing to listen on 0.0.0.0 without ML_API_KEY" in log, log


@pytest.mark.parametrize(
    ("values", "allowed"),
    [
        ({"host": "127.0.0.1"}, True),
        ({"host": "localhost"}, True),
        ({"host": "::1"}, True),
        ({"host": "0.0.0.0"}, False),
        ({"host": "192.168.1.10"}, False),
        ({"host": "0.0.0.0", "api_key": ""}, False),  # an empty key is no key
        ({"host": "0.0.0.0", "api_key": KEY}, True),
        ({"host": "0.0.0.0", "allow_unauthenticated": True}, True),
    ],
)
def test_exposure_rule(values: dict[str, object], allowed: bool) -> None:
    settings = MLSettings(**values)  # type: ignore[arg-type]
    if allowed:
        settings.check_exposure()
        create_app(settings)
    else:
        with pytest.raises(ValueError, match="ML_API_KEY"):
            create_app(settings)
