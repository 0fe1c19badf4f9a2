"""Raw-text jobs: the text becomes `<safe title>.txt` (UTF-8) in the job's directory, a plain-text
document the pipeline ingests like any other."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.sources.names import safe_name, with_extension


def text_file_name(title: str | None) -> str:
    return with_extension(safe_name(title or "", fallback="text"), ".txt")


def write_text(directory: Path, title: str | None, text: str) -> Path:
    """Write the text durably (fsync'd) as a new file in `directory`. Blocking."""
    path = directory / text_file_name(title)
    with open(path, "x", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return path
