"""Serve a real orchestrator app over loopback HTTP inside the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from orchestrator.app import create_app
from orchestrator.clients.vectors import VectorStore
from orchestrator.config import Settings
from orchestrator.services import Services


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(slots=True)
class RunningOrchestrator:
    url: str
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def wait_job(self, job_id: str, timeout_s: float = 300.0) -> dict[str, object]:
        """Poll the job's status until it leaves the active states (bounded)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            body: dict[str, object] = (await self.client.get(f"/jobs/{job_id}")).json()
            if body["state"] not in ("queued", "running", "paused"):
                return body
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"job {job_id} still {body['state']} after {timeout_s}s: {body}")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def running_orchestrator(
    settings: Settings, store: VectorStore | None = None
) -> AsyncIterator[RunningOrchestrator]:
    port = free_port()
    app = create_app(settings, store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("orchestrator server exited during start-up")
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
            yield RunningOrchestrator(url=url, app=app, client=client)
    finally:
        server.should_exit = True
        await task
