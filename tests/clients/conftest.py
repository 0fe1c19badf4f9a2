"""The stand-in Qdrant server (scripts/qdrant_standin.py): ONE process for the session, started when a test
first asks for it (its imports take a few seconds), shared by the contract suite and the cluster tests;
each test leaves it as it found it or uses collection names of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.qdrant_server import QdrantStandIn, running_qdrant_standin


@pytest.fixture(scope="session")
def qdrant_standin() -> Iterator[QdrantStandIn]:
    with running_qdrant_standin() as standin:
        yield standin
