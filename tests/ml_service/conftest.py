"""Fixtures for the ML service tests. The service process itself is the session fixture
``ml_service_url`` of tests/conftest.py (one process, models loaded once per test session)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

# Real models on 2 shared cores: a batch of a few images takes seconds, not milliseconds.
HTTP_TIMEOUT_S = 120.0


@pytest.fixture(scope="session")
def ml(ml_service_url: str) -> Iterator[httpx.Client]:
    """An HTTP client bound to the running service."""
    with httpx.Client(base_url=ml_service_url, timeout=HTTP_TIMEOUT_S) as client:
        yield client
