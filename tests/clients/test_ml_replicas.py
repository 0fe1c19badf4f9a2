"""The ML client over several replicas and against batches the service refuses, with small local
stand-ins speaking the ML service's protocol on loopback: load-aware routing, a replica that dies or
overloads, health checks putting it back, a slow replica (no answer in time) told from a dead one (connection
refused), 413 halving and bisection down to the one bad item."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.clients.ml import ImageRequestItem, MLClient
from tests.support.orchestrator_server import free_port
from tests.support.polling import until
from tests.support.silent_server import silent_server


@dataclass
class Replica:
    """Answers /v1/embed/text and /v1/analyze/images; /ready is 200 unless `ready` is False."""

    delay_s: float = 0.0
    max_batch: int = 64
    poison: str = "poison"  # a batch holding this text or image id is answered 500
    ready: bool = True
    overloaded: int = 0  # answer this many requests with 429 ...
    retry_after: str = "1"  # ... and this Retry-After
    gate: asyncio.Event | None = None  # when set: hold each request until the event is set
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set by the first request taken in
    batches: list[int] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0

    async def _work(self, items: list[str]) -> Response | None:
        if self.overloaded:
            self.overloaded -= 1
            return Response(b'{"detail": "queue full"}', 429, headers={"retry-after": self.retry_after})
        if len(items) > self.max_batch:
            return Response(b'{"detail": "too many"}', 413)
        self.batches.append(len(items))
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.arrived.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        if self.poison in items:
            return Response(b'{"detail": "model failed"}', 500)
        return None

    async def embed(self, request: Request) -> Response:
        texts = orjson.loads(await request.body())["texts"]
        refused = await self._work(texts)
        return refused or Response(orjson.dumps({"vectors": [[float(len(t)), 1.0] for t in texts]}))

    async def analyze(self, request: Request) -> Response:
        ids = [img["id"] for img in orjson.loads(await request.body())["images"]]
        refused = await self._work(ids)
        results = [{"id": i, "ok": True, "error": None, "tags": []} for i in ids]
        return refused or Response(orjson.dumps({"results": results}))

    async def capabilities_route(self, request: Request) -> Response:
        limits = {"max_batch": self.max_batch, "preferred_batch": self.max_batch, "max_concurrency": 1}
        caps = {
            "models": {"text": {"version": "v1", "vector_size": 2}},
            "endpoints": {"/v1/embed/text": limits},
        }
        return Response(orjson.dumps(caps))

    async def ready_route(self, request: Request) -> Response:
        return Response(b"{}", 200 if self.ready else 503)


@asynccontextmanager
async def serving(replica: Replica) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    app = Starlette(
        routes=[
            Route("/v1/embed/text", replica.embed, methods=["POST"]),
            Route("/v1/analyze/images", replica.analyze, methods=["POST"]),
            Route("/ready", replica.ready_route),
            Route("/capabilities", replica.capabilities_route),
        ]
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        await task


def healthy(client: MLClient) -> dict[str, bool]:
    return {s["url"]: s["healthy"] for s in client.replica_stats()}


async def test_requests_go_to_the_replica_with_fewest_outstanding_items() -> None:
    release = asyncio.Event()
    slow, fast = Replica(gate=release), Replica()
    async with serving(slow) as (slow_url, _), serving(fast) as (fast_url, _):
        client = MLClient([slow_url, fast_url], timeout_s=30, retry_deadline_s=30)
        try:
            # Two requests at once: one goes to each replica (a tie, then the other has fewer outstanding);
            # the slow replica holds its own until released.
            first = [asyncio.create_task(client.embed_text([t])) for t in ("a", "b")]
            async with asyncio.timeout(20):  # a request held by the slow replica would wait for ever
                await slow.arrived.wait()
                done, held = await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
                # While the slow replica holds one item, each next request goes to the fast one (round-robin
                # would give the slow one every other request).
                after = [v for i in range(10) for v in await client.embed_text([f"c{i}"])]
            assert (len(slow.batches), len(fast.batches)) == (1, 11)
            release.set()
            held_vectors = await asyncio.gather(*held)
        finally:
            release.set()
            await client.close()
    assert len(done) == 1 and len(held) == 1
    assert all(v is not None for v in after) and held_vectors[0] == [[1.0, 1.0]]


async def test_batch_limits_are_the_smallest_any_replica_reports_whichever_answers_first() -> None:
    small, large = Replica(max_batch=16), Replica(max_batch=64)
    async with serving(small) as (small_url, _), serving(large) as (large_url, _):
        client = MLClient([small_url, large_url], timeout_s=5, retry_deadline_s=5)
        try:
            # Ties rotate: the first asks the small replica first, the second the large one.
            limits = [(await client.capabilities()).limits("/v1/embed/text").max_batch for _ in range(3)]
        finally:
            await client.close()
    assert limits == [16, 16, 16]


async def test_a_dead_replica_is_taken_out_and_its_request_goes_elsewhere() -> None:
    a, b = Replica(), Replica()
    async with serving(b) as (b_url, _):
        async with serving(a) as (a_url, a_server):
            client = MLClient([a_url, b_url], timeout_s=5, retry_deadline_s=5, health_interval_s=0.1)
            client.start()
            assert await client.embed_text(["warm"]) and await client.embed_text(["up"])
            assert len(a.batches) == 1 and len(b.batches) == 1  # ties rotate
            a_server.should_exit = True
        # a is gone (serving() waited for its server to stop: its port refuses connections)
        try:
            for i in range(6):
                assert (await client.embed_text([f"x{i}"]))[0] is not None
            stats = {s["url"]: s for s in client.replica_stats()}
            assert stats[a_url]["healthy"] is False and stats[b_url]["healthy"] is True
            assert len(b.batches) == 7
        finally:
            await client.close()


async def test_health_checks_put_a_recovered_replica_back() -> None:
    a, b = Replica(ready=False), Replica()
    async with serving(a) as (a_url, _), serving(b) as (b_url, _):
        client = MLClient([a_url, b_url], timeout_s=5, retry_deadline_s=5, health_interval_s=0.05)
        client.start()
        try:
            await until(lambda: healthy(client) == {a_url: False, b_url: True}, "a found not ready", 20)
            for _ in range(4):
                await client.embed_text(["only b"])
            assert a.batches == []
            a.ready = True
            await until(
                lambda: healthy(client) == {a_url: True, b_url: True}, "a checked again and put back", 20
            )
            for _ in range(4):
                await client.embed_text(["both"])
            assert len(a.batches) >= 1
        finally:
            await client.close()


async def test_an_overloaded_replica_is_passed_over_while_another_can_work() -> None:
    a, b = Replica(overloaded=1, retry_after="30"), Replica()  # sitting it out would take 30 s
    async with serving(a) as (a_url, _), serving(b) as (b_url, _):
        client = MLClient([a_url, b_url], timeout_s=5, retry_deadline_s=5)
        try:
            started = asyncio.get_running_loop().time()
            for i in range(3):
                assert (await client.embed_text([f"t{i}"]))[0] is not None
            elapsed = asyncio.get_running_loop().time() - started
        finally:
            await client.close()
    assert elapsed < 10  # did not sit out a's Retry-After: b took the work
    assert a.overloaded == 0 and a.batches == [] and len(b.batches) == 3


async def test_413_halves_the_batch_until_it_fits() -> None:
    small = Replica(max_batch=3)
    async with serving(small) as (url, _):
        client = MLClient([url], timeout_s=5, retry_deadline_s=5)
        try:
            vectors = await client.embed_text([f"text {i}" for i in range(10)])
        finally:
            await client.close()
    assert [v[0] if v else None for v in vectors] == [float(len(f"text {i}")) for i in range(10)]
    assert max(small.batches) <= 3 and sum(small.batches) == 10


async def test_a_failing_batch_is_bisected_to_the_bad_item() -> None:
    replica = Replica()
    async with serving(replica) as (url, _):
        client = MLClient([url], timeout_s=5, retry_deadline_s=5)
        try:
            items = [ImageRequestItem(f"img{i}", b"jpeg") for i in range(8)]
            items[5] = ImageRequestItem("poison", b"jpeg")
            results = await client.analyze_images(items)
        finally:
            await client.close()
    assert [r["ok"] for r in results] == [True] * 5 + [False] + [True] * 2
    assert "500" in results[5]["error"]
    assert [r["id"] for r in results] == [it.id for it in items]
    # 8 (twice: one retry) -> 4 + 4 (the poisoned half twice) -> 2 + 2 ...: logarithmic in the batch
    assert len(replica.batches) <= 14


async def test_a_slow_replica_is_passed_over_but_not_taken_out() -> None:
    """A replica that accepts and never answers is slow, not dead: each request it holds goes to another
    replica after the request timeout, and it stays in (a dead one, refusing connections, is taken out)."""
    good = Replica()
    async with silent_server() as silent, serving(good) as (good_url, _):
        client = MLClient([silent.url, good_url], timeout_s=0.5, retry_deadline_s=30)
        try:
            started = asyncio.get_running_loop().time()
            for i in range(4):
                assert (await client.embed_text([f"t{i}"]))[0] is not None
            elapsed = asyncio.get_running_loop().time() - started
            stats = {s["url"]: s for s in client.replica_stats()}
        finally:
            await client.close()
    assert silent.connections >= 1  # it was asked ...
    assert stats[silent.url]["slow"] >= 1 and stats[silent.url]["failures"] == 0
    assert stats[silent.url]["healthy"] is True  # ... and is still in
    assert len(good.batches) == 4
    assert elapsed < 0.5 * 4 + 1.5  # at most one timeout per call, no backoff pause


async def test_a_refused_connection_takes_the_replica_out() -> None:
    good = Replica()
    dead = f"http://127.0.0.1:{free_port()}"
    async with serving(good) as (good_url, _):
        client = MLClient([dead, good_url], timeout_s=5, retry_deadline_s=5)
        try:
            for i in range(3):
                assert (await client.embed_text([f"t{i}"]))[0] is not None
            stats = {s["url"]: s for s in client.replica_stats()}
        finally:
            await client.close()
    assert stats[dead]["healthy"] is False and stats[dead]["failures"] == 1 and stats[dead]["slow"] == 0
