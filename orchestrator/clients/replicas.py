"""Which ML replica gets the next request: the healthy one with the fewest items outstanding.

A replica that refuses connections or answers 502/503/504 is dead: taken out at once (its request goes to
another one); a health loop polls `/ready` on every replica and puts it back when it answers 200. A request
that gets no answer in time only counts the replica as slow (`slow`): it stays in. A replica that answered
429 is passed over until its Retry-After has passed, while another one can take the work.
All state is touched only from the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import httpx

from orchestrator.logs import get_logger

log = get_logger(__name__)

HEALTH_TIMEOUT_S = 2.0


@dataclass(slots=True)
class Replica:
    url: str
    healthy: bool = True
    outstanding: int = 0  # items in requests sent and not yet answered
    busy_until: float = 0.0  # monotonic time before which it said 429
    requests: int = 0
    failures: int = 0  # dead: connection refused or broken, 502/503/504
    slow: int = 0  # requests it did not answer in time (not a failure: it stays in)

    def snapshot(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "healthy": self.healthy,
            "outstanding_items": self.outstanding,
            "requests": self.requests,
            "failures": self.failures,
            "slow": self.slow,
        }


class ReplicaSet:
    def __init__(self, urls: list[str]) -> None:
        if not urls:
            raise ValueError("at least one ML service URL is needed")
        self.replicas = [Replica(u.rstrip("/")) for u in urls]
        self._turn = 0
        self._health_task: asyncio.Task[None] | None = None

    def pick(self, exclude: set[str] | frozenset[str] = frozenset()) -> Replica | None:
        """The healthy, not-overloaded replica with the fewest outstanding items (ties rotate); None when
        every replica is out, overloaded or excluded."""
        now = time.monotonic()
        usable = [r for r in self.replicas if r.healthy and r.busy_until <= now and r.url not in exclude]
        if not usable:
            return None
        self._turn += 1
        least = min(r.outstanding for r in usable)
        tied = [r for r in usable if r.outstanding == least]
        return tied[self._turn % len(tied)]

    def fallback(self) -> Replica:
        """When none is usable: the one that said 429 for the shortest time, else the next in turn (a
        request to a replica marked down doubles as a probe)."""
        self._turn += 1
        healthy = [r for r in self.replicas if r.healthy]
        if healthy:
            return min(healthy, key=lambda r: r.busy_until)
        return self.replicas[self._turn % len(self.replicas)]

    def wait_hint(self) -> float | None:
        """Seconds until the first overloaded healthy replica takes work again, if any."""
        now = time.monotonic()
        waits = [r.busy_until - now for r in self.replicas if r.healthy and r.busy_until > now]
        return min(waits) if waits else None

    def mark_down(self, replica: Replica, reason: str) -> None:
        replica.failures += 1
        if replica.healthy and len(self.replicas) > 1:
            log.warning("ml_replica_down", url=replica.url, reason=reason)
            replica.healthy = False

    def mark_busy(self, replica: Replica, retry_after_s: float) -> None:
        replica.busy_until = time.monotonic() + retry_after_s

    def mark_up(self, replica: Replica) -> None:
        if not replica.healthy:
            log.info("ml_replica_up", url=replica.url)
        replica.healthy = True

    def start_health_checks(self, http: httpx.AsyncClient, interval_s: float) -> None:
        if self._health_task is None and len(self.replicas) > 1:
            self._health_task = asyncio.create_task(self._health_loop(http, interval_s))

    async def stop(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None

    async def check(self, http: httpx.AsyncClient) -> None:
        """Poll every replica's /ready once (concurrently)."""
        await asyncio.gather(*(self._check_one(http, r) for r in self.replicas))

    async def _check_one(self, http: httpx.AsyncClient, replica: Replica) -> None:
        try:
            resp = await http.get(f"{replica.url}/ready", timeout=HEALTH_TIMEOUT_S)
        except httpx.HTTPError as exc:
            self.mark_down(replica, f"health check: {type(exc).__name__}")
            return
        if resp.status_code == 200:
            self.mark_up(replica)
        else:
            self.mark_down(replica, f"health check: HTTP {resp.status_code}")

    async def _health_loop(self, http: httpx.AsyncClient, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.check(http)
