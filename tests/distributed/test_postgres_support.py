"""The test PostgreSQL server itself: reachable with psycopg, and it survives a restart and a crash with its
committed data (what the distributed tests rely on when they restart it mid-job)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import psycopg
import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the lock

from scripts.ml_process import free_port
from tests.support.postgres import PostgresServer, server_binaries

ROOT = Path(__file__).resolve().parents[2]


async def test_server_restarts_and_crashes_keep_committed_data(postgres: PostgresServer) -> None:
    url = postgres.create_database("support_restart")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE marks (n int)")
        await conn.execute("INSERT INTO marks VALUES (1)")
        await asyncio.to_thread(postgres.restart)
        # The old session ended with the server ...
        with pytest.raises(psycopg.OperationalError):
            await conn.execute("SELECT 1")

    # ... a new one reaches the same port, and the data is there.
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("INSERT INTO marks VALUES (2)")
        await asyncio.to_thread(postgres.kill)
        assert not postgres.running
        await asyncio.to_thread(postgres.start)

    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute("SELECT n FROM marks ORDER BY n")
        assert [row[0] for row in await cursor.fetchall()] == [1, 2]
    async with await psycopg.AsyncConnection.connect(postgres.url) as conn:
        cursor = await conn.execute("SELECT current_database(), current_user")
        assert await cursor.fetchone() == ("archivist", "archivist")


def test_compose_postgres_healthcheck_tells_a_running_server(postgres: PostgresServer) -> None:
    """docker-compose.yml's pg_isready check, run against this server: 0 while it serves, not 0 where none
    listens (no Docker engine here: tests/test_deploy_files.py checks the rest of the file)."""
    test = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["postgres"]["healthcheck"][
        "test"
    ]
    assert test[:2] == ["CMD", "pg_isready"], test

    def run(port: int) -> int:
        args = [a.replace("--port=5432", f"--port={port}") for a in test[2:]]
        command = [str(server_binaries() / "pg_isready"), *args]
        return subprocess.run(command, capture_output=True, timeout=10, check=False).returncode

    assert run(postgres.port) == 0
    assert run(free_port()) != 0
