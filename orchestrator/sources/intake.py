"""The process's intake of files over HTTP: the managed area and the resumable uploads in it (built once in
the app's lifespan, passed to the routes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from orchestrator.config import Settings
from orchestrator.sources.managed import ManagedArea
from orchestrator.sources.tus import TusStore


@dataclass(frozen=True, slots=True)
class Intake:
    area: ManagedArea
    tus: TusStore

    @classmethod
    async def open(cls, settings: Settings) -> Intake:
        """Create UPLOAD_DIR's layout (and drop POST bodies a dead process left half received)."""
        area = ManagedArea(await asyncio.to_thread(lambda: settings.upload_root))
        await asyncio.to_thread(area.create)
        return cls(area, TusStore(area))
