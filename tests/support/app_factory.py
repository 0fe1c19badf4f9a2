"""Build orchestrator settings and a counting Edge store for end-to-end tests."""

from __future__ import annotations

from pathlib import Path

from orchestrator.clients.vectors_edge import EdgeVectorStore
from orchestrator.config import Settings
from tests.support.counting_store import CountingStore


def make_settings(data_dir: Path, ml_url: str, roots: list[Path], **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "ml_service_url": ml_url,
        "allowed_roots": ",".join(str(r) for r in roots),
        "ml_retry_deadline_s": 3.0,
        "log_json": True,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def counting_store(settings: Settings) -> CountingStore:
    return CountingStore(EdgeVectorStore(settings.qdrant_dir))
