"""The served-file and host checks in a real orchestrator process that runs as an unprivileged user, as it
does in its container (root passes permission checks that would hide a mistake): after ingest, a symlink
swapped in for a stored file, or for its parent directory, leading outside ALLOWED_ROOTS to a file that
user CAN read, is refused; a rebound Host header is refused.

The tests run as root here, so the orchestrator drops to "nobody" (65534) with setgid/setuid
(tests/support/unprivileged_orchestrator.py) over a tree that user owns; run by any other user, it simply
runs as that user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.bench_pipeline import make_images
from scripts.ml_process import log_tail
from tests.support.ml_server import MLService
from tests.support.restricted_orchestrator import (
    hand_over,
    restricted_base,
    restricted_orchestrator,
    wait_job,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def tree() -> Iterator[Path]:
    """A tree outside pytest's tmp (whose parents are 0700 root) that the unprivileged user owns."""
    with restricted_base("archivist-restricted-") as base:
        media = base / "media"
        make_images(media / "photos", 1, size=(160, 120))
        (base / "outside").mkdir()
        (base / "outside" / "img_00000.jpg").write_bytes(b"\xff\xd8\xff SECRET outside the roots")
        for photo in (media / "photos").rglob("*.jpg"):  # flatten: one known path
            photo.rename(media / "photos" / photo.name)
        (media / ".private").mkdir()  # hidden: not ingested (INCLUDE_HIDDEN=false)
        (media / ".private" / "diary.jpg").write_bytes(b"\xff\xd8\xff PRIVATE, never ingested")
        (base / "data").mkdir()
        hand_over(base)
        yield base


def test_swapped_symlinks_and_foreign_hosts_are_refused_as_an_unprivileged_user(
    tree: Path, ml_service: MLService
) -> None:
    with restricted_orchestrator(tree, ml_service.url) as client:  # checks it does not run as root
        port = client.base_url.port
        photo = tree / "media" / "photos" / "img_00000.jpg"
        original = photo.read_bytes()
        job_id = client.post("/jobs", json={"path": str(tree / "media")}).json()["job_id"]
        status = wait_job(client, job_id, log=tree / "orchestrator.log")
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
        assert client.delete("/collections/media", headers={"host": "attacker.example"}).status_code == 400
        assert client.get("/collections").json()["collections"][0]["points"] == 1
