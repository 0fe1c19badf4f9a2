"""Session-wide real components: ONE ML service process with the default models (loaded once)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from scripts.make_samples import SampleManifest, make_sample_tree
from tests.support.ml_server import MLService, running_ml_service
from tests.support.vlm_standin import (
    STANDIN_IMAGE_MAX_SIDE,
    STANDIN_MODEL,
    VLMStandIn,
    ml_env,
    running_vlm_standin,
)

# The suite checks the CPU path on every host, GPU or not: models in this process and every ML service it
# starts (they inherit the environment) run on the CPU whatever torch sees. scripts/check_gpu.py checks the
# GPU path on a GPU host; tests of device choice fake what torch reports.
os.environ["ML_DEVICE"] = "cpu"
# The suite's ML services run the English models its search and transcript assertions were calibrated on,
# which also keep CI within its time: whisper tiny.en (~2.5x faster than base) and MiniLM (~10x faster than
# 4-bit e5 on this CPU). The defaults (multilingual whisper base, multilingual-e5) run in the tests that ask
# for them by name: tests/test_languages.py, tests/ml_service/test_text_backends.py, test_asr_languages.py.
os.environ.setdefault("ML_ASR_MODEL", "tiny.en")
os.environ.setdefault("ML_TEXT_BACKEND", "sentence-transformers")


# The session's ML service once started early (pytest_collection_finish): the stack that stops it, and it.
_EARLY_ML_SERVICE = pytest.StashKey[tuple[ExitStack, MLService]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the session's ML service as soon as collection shows that a test will need it: its models load
    (tens of seconds on 2 cores, mostly one core importing) while the tests before that one run."""
    option = session.config.option
    if option.collectonly or getattr(option, "showfixtures", False):
        return
    if any("ml_service" in getattr(item, "fixturenames", ()) for item in session.items):
        stack = ExitStack()
        handle = stack.enter_context(running_ml_service(wait_ready=False))
        session.config.stash[_EARLY_ML_SERVICE] = (stack, handle)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop an early-started service that no test got to use (the fixture stops the one it yielded)."""
    started = session.config.stash.get(_EARLY_ML_SERVICE, None)
    if started is not None:
        started[0].close()


@pytest.fixture(scope="session")
def ml_service(request: pytest.FixtureRequest) -> Iterator[MLService]:
    started = request.config.stash.get(_EARLY_ML_SERVICE, None)
    if started is None:  # e.g. a test that asks for it with request.getfixturevalue
        with running_ml_service() as handle:
            yield handle
        return
    stack, handle = started
    with stack:
        yield handle.wait_ready()


@pytest.fixture(scope="session")
def ml_service_url(ml_service: MLService) -> str:
    return ml_service.url


@pytest.fixture(scope="session")
def vlm_standin() -> Iterator[VLMStandIn]:
    """The stand-in VLM server (tests/support/vlm_standin.py); reset it before use (``vlm`` fixtures)."""
    with running_vlm_standin(model=STANDIN_MODEL, max_side=STANDIN_IMAGE_MAX_SIDE) as standin:
        yield standin


@pytest.fixture(scope="session")
def vlm_ml_service(vlm_standin: VLMStandIn) -> Iterator[MLService]:
    """A second ML service process: the "caption" task asking the stand-in, plus the text model."""
    with running_ml_service(env=ml_env(vlm_standin.url)) as handle:
        yield handle


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


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory outside pytest's tmp (whose parents are 0700 root) that an orchestrator process serving
    as the unprivileged user (tests/support/orchestrator_process.py) can use."""
    path = Path(tempfile.mkdtemp(prefix="archivist-test-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
