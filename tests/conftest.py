"""Session-wide real components: ONE ML service process with the default models (loaded once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.make_samples import SampleManifest, make_sample_tree
from tests.support.ml_server import MLService, running_ml_service


@pytest.fixture(scope="session")
def ml_service() -> Iterator[MLService]:
    with running_ml_service() as handle:
        yield handle


@pytest.fixture(scope="session")
def ml_service_url(ml_service: MLService) -> str:
    return ml_service.url


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> SampleManifest:
    """The same sample tree the demo ingests; tests must not modify it (copy it first)."""
    return make_sample_tree(tmp_path_factory.mktemp("samples") / "media")


@pytest.fixture
def sample_copy(samples: SampleManifest, tmp_path: Path) -> Path:
    import shutil

    dest = tmp_path / "media"
    shutil.copytree(samples.root, dest, symlinks=True)
    return dest
