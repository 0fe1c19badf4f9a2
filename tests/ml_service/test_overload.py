"""Overload over real HTTP: a flood of text requests against a small queue is answered 429 with Retry-After,
never 5xx; the queue, as /capabilities reports it, stays within its capacity; memory stays bounded; and the
service answers normally afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.ml_server import NO_MODELS, MLService, running_ml_service

QUEUE_ITEMS = 64
TEXTS_PER_REQUEST = 32
CONCURRENT = 48


@pytest.fixture(scope="module")
def service() -> Iterator[MLService]:
    env = {**NO_MODELS, "ML_TEXT_ENABLED": "true", "ML_MAX_QUEUE_ITEMS": str(QUEUE_ITEMS)}
    with running_ml_service(env=env) as running:
        yield running


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def flood(url: str, rounds: int) -> tuple[list[httpx.Response], list[int]]:
    """``rounds`` waves of CONCURRENT requests; meanwhile /capabilities is polled for the text queue."""
    responses: list[httpx.Response] = []
    depths: list[int] = []
    limits = httpx.Limits(max_connections=CONCURRENT + 1)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(i: int) -> httpx.Response:
            texts = [
                f"flood request {i} text {j}: the river rose over the square"
                for j in range(TEXTS_PER_REQUEST)
            ]
            return await client.post("/v1/embed/text", json={"texts": texts})

        async def watch(done: asyncio.Event) -> None:
            while not done.is_set():
                caps = (await client.get("/capabilities")).json()["models"]["text"]
                assert caps["queue_capacity"] == QUEUE_ITEMS
                depths.append(caps["queued_items"])
                await asyncio.sleep(0.01)

        for wave in range(rounds):
            done = asyncio.Event()
            watcher = asyncio.create_task(watch(done))
            responses += await asyncio.gather(*(one(wave * CONCURRENT + i) for i in range(CONCURRENT)))
            done.set()
            await watcher
    return responses, depths


def test_overload_is_429_with_retry_after_and_bounded(service: MLService) -> None:
    pid = service.process.pid
    asyncio.run(flood(service.url, rounds=1))  # warm: allocator pools, first batches
    before = rss_mb(pid)
    responses, depths = asyncio.run(flood(service.url, rounds=3))
    grown = rss_mb(pid) - before

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    refused = [r for r in responses if r.status_code == 429]
    accepted = [r for r in responses if r.status_code == 200]
    # 48 requests of 32 against 64 queued items: most are refused, a queue's worth at a time gets through.
    assert len(refused) >= CONCURRENT and len(accepted) >= 2 * 3
    for response in refused:
        assert int(response.headers["retry-after"]) >= 1
        assert "queue" in response.json()["detail"]
    for response in accepted:
        assert len(response.json()["vectors"]) == TEXTS_PER_REQUEST
    assert depths and max(depths) <= QUEUE_ITEMS and max(depths) > 0
    assert grown < 64, f"RSS grew {grown:.1f} MB under overload"

    after = httpx.post(f"{service.url}/v1/embed/text", json={"texts": ["still serving"]}, timeout=60)
    assert after.status_code == 200 and len(after.json()["vectors"]) == 1
