"""`archivist upload` and `archivist ingest-url` as a person runs them: a real subprocess against a real
orchestrator (no ML service: what is tested ends before any ML call)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import blake3
from PIL import Image

from tests.support.app_factory import make_settings
from tests.support.orchestrator_server import free_port, running_orchestrator
from tests.test_cli import _cli


async def test_cli_upload_and_ingest_url(tmp_path: Path) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 120, 200)).save(picture, "JPEG")
    photo = tmp_path / "sea view.jpg"
    await asyncio.to_thread(photo.write_bytes, picture.getvalue())
    settings = make_settings(tmp_path / "data", f"http://127.0.0.1:{free_port()}", [tmp_path / "roots"])
    async with running_orchestrator(settings) as orch:
        code, out = await _cli(orch.url, "upload", str(photo), "-c", "sea", "--no-wait")
        assert code == 0, out
        assert f"blake3 {blake3.blake3(picture.getvalue()).hexdigest()}" in out
        stored = settings.upload_root / "sea"
        assert "stored " in out and str(stored) in out.replace("\n", "")

        code, out = await _cli(orch.url, "ingest-url", "http://10.0.0.5/x.jpg", "-c", "sea")
        assert code == 1, out
        assert "address 10.0.0.5 is private" in out.replace("\n", "")
