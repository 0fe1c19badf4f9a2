"""The served-file and host checks in a real orchestrator process that runs as an unprivileged user, as it
does in its container (root passes permission checks that would hide a mistake): after ingest, a symlink
swapped in for a stored file, or for its parent directory, leading outside ALLOWED_ROOTS to a file that
user CAN read, is refused; a rebound Host header is refused.

The tests run as root here, so the orchestrator drops to "nobody" (65534) with setgid/setuid
(tests/support/unprivileged_orchestrator.py) over a tree that user owns; run by any other user, it simply
runs as that user."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts.bench_pipeline import make_images
from scripts.ml_process import REPO, free_port, log_tail, wait_ready
from tests.support.ml_server import MLService

pytestmark = pytest.mark.slow


def _unprivileged_ids() -> tuple[int, int] | None:
    """(uid, gid) to switch to when running as root; None when this process already is unprivileged."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


@pytest.fixture
def tree() -> Iterator[Path]:
    """A tree outside pytest's tmp (whose parents are 0700 root) that the unprivileged user owns."""
    base = Path(tempfile.mkdtemp(prefix="archivist-restricted-"))
    try:
        base.chmod(0o755)
        media = base / "media"
        make_images(media / "photos", 1, size=(160, 120))
        (base / "outside").mkdir()
        (base / "outside" / "img_00000.jpg").write_bytes(b"\xff\xd8\xff SECRET outside the roots")
        for photo in (media / "photos").rglob("*.jpg"):  # flatten: one known path
            photo.rename(media / "photos" / photo.name)
        (media / ".private").mkdir()  # hidden: not ingested (INCLUDE_HIDDEN=false)
        (media / ".private" / "diary.jpg").write_bytes(b"\xff\xd8\xff PRIVATE, never ingested")
        (base / "data").mkdir()
        ids = _unprivileged_ids()
        if ids is not None:
            for path in [base, *base.rglob("*")]:
                os.chown(path, *ids, follow_symlinks=False)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _start(base: Path, ml_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HOME": str(base),
        "PYTHONPATH": str(REPO),
        "DATA_DIR": str(base / "data"),
        "ALLOWED_ROOTS": str(base / "media"),
        "ML_SERVICE_URL": ml_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
    }
    ids = _unprivileged_ids()
    command = [sys.executable, "-m", "orchestrator"]
    if ids is not None:  # root: the process imports what it needs, then setuid/setgid (see that module)
        command = [sys.executable, "-m", "tests.support.unprivileged_orchestrator", str(ids[0]), str(ids[1])]
    with open(base / "orchestrator.log", "ab") as log:
        return subprocess.Popen(
            command, cwd=base, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )


def _wait_job(client: httpx.Client, job_id: str, timeout_s: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if status["state"] not in ("queued", "running", "paused"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(status)
        time.sleep(0.2)  # polling a condition, bounded by the deadline


def test_swapped_symlinks_and_foreign_hosts_are_refused_as_an_unprivileged_user(
    tree: Path, ml_service: MLService
) -> None:
    port = free_port()
    proc = _start(tree, ml_service.url, port)
    try:
        wait_ready(
            f"http://127.0.0.1:{port}", proc, 120.0, path="/health", log_path=tree / "orchestrator.log"
        )
        uid_line = next(
            line
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )
        assert uid_line.split()[1] != "0", uid_line  # really not root
        photo = tree / "media" / "photos" / "img_00000.jpg"
        original = photo.read_bytes()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            job_id = client.post("/jobs", json={"path": str(tree / "media")}).json()["job_id"]
            status = _wait_job(client, job_id)
            assert status["state"] == "completed" and status["counters"]["upserted"] == 1, (
                status,
                log_tail(tree / "orchestrator.log"),
            )
            [hit] = client.get("/search", params={"q": "photo", "limit": 1}).json()["hits"]
            stream = f"/media/{hit['id']}/stream"
            assert client.get(stream).content == original
            assert client.get(f"/media/{hit['id']}/thumbnail").status_code == 200

            # The stored file swapped for a symlink to a file under the root that was never ingested (a
            # hidden folder): a symlink as the last component is refused wherever it points.
            photo.rename(photo.with_suffix(".orig"))
            photo.symlink_to(tree / "media" / ".private" / "diary.jpg")
            resp = client.get(stream)
            assert resp.status_code == 404 and b"PRIVATE" not in resp.content

            # ... and for a symlink to a file the service user can read, outside the roots.
            photo.unlink()
            photo.symlink_to(tree / "outside" / "img_00000.jpg")
            resp = client.get(stream)
            assert resp.status_code == 404 and b"SECRET" not in resp.content

            # The parent directory swapped for a symlink leading outside (the file name itself is regular).
            photo.unlink()
            (tree / "media" / "photos").rename(tree / "media" / "photos.orig")
            (tree / "media" / "photos").symlink_to(tree / "outside")
            resp = client.get(stream)
            assert resp.status_code == 404 and b"SECRET" not in resp.content

            # A page that rebinds its own name to 127.0.0.1 sends that name as the Host.
            for path in ("/health", stream, "/jobs"):
                assert client.get(path, headers={"host": f"attacker.example:{port}"}).status_code == 400
            assert (
                client.delete("/collections/media", headers={"host": "attacker.example"}).status_code == 400
            )
            assert client.get("/collections").json()["collections"][0]["points"] == 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
