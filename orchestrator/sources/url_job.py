"""The first phase of a URL job (`JobManager._execute`): download the URL into the job's directory, then
the job ingests that directory like any other. A restored job whose download was complete keeps it; one
cut off downloads again (the `.part` left behind is replaced)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.logs import get_logger
from orchestrator.sources.fetch import FetchError, FetchPolicy, download

log = get_logger(__name__)

Report = Callable[[dict[str, Any]], None]


def downloaded_file(directory: Path) -> Path | None:
    """The complete download in `directory` (its one visible file), or None. Blocking."""
    try:
        names = sorted(p for p in directory.iterdir() if not p.name.startswith(".") and p.is_file())
    except FileNotFoundError:
        return None
    return names[0] if names else None


async def fetch_phase(directory: Path, url: str, policy: FetchPolicy, report: Report) -> None:
    """Make sure `directory` holds the URL's file. FetchError (the job's error) leaves the directory
    removed: the job ingests nothing and the collection is not touched."""
    done = await asyncio.to_thread(downloaded_file, directory)
    if done is not None:
        report({"url": url, "state": "downloaded", "file": done.name})
        return
    report({"url": url, "state": "downloading", "bytes": 0, "total": None})

    def progress(received: int, total: int | None) -> None:
        report({"bytes": received, "total": total})

    try:
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        result = await download(url, directory, policy, progress)
    except FetchError as exc:
        report({"state": "failed"})
        log.warning("url_fetch_failed", url=url, reason=str(exc))
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)
        raise
    report({"state": "downloaded", "file": result.path.name, "bytes": result.size, "final_url": result.url})
    log.info("url_fetched", url=url, final_url=result.url, bytes=result.size, mime=result.kind.mime)
