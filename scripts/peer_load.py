"""The load generator of scripts/bench_peer.py: closed-loop clients for a fixed time, alike for every server.

Each client is a thread with one keep-alive ``http.client`` connection (a shared pool cost the generator
3-5 ms of CPU per request here, more than a server's own work for one text), sending pre-serialised bodies
back to back and reading each answer whole (status checked, JSON not parsed: the generator shares the 2
cores with the server). A run starts all clients at once after a warm-up, stops issuing requests at the
deadline, and counts the texts answered until the last request in flight returns.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson


@dataclass(frozen=True, slots=True)
class RunResult:
    """One timed run: texts answered per second and the median request latency."""

    texts_per_s: float
    p50_ms: float
    requests: int
    elapsed_s: float


class Connection:
    """One keep-alive connection; ``post`` returns the status (the body is read and dropped)."""

    def __init__(self, url: str, timeout_s: float = 120.0) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._timeout_s = timeout_s
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in (0, 1):
            try:
                self._conn.request("POST", path, body=body, headers={"content-type": "application/json"})
                response = self._conn.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                self._conn.close()  # an idle keep-alive connection closed by the server: reconnect once
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> Any:
        """The JSON answer to GET ``path``."""
        self._conn.request("GET", path)
        response = self._conn.getresponse()
        return orjson.loads(response.read())

    def close(self) -> None:
        self._conn.close()


def request_body(kind: str, texts: list[str], model: str) -> bytes:
    """The body a server of ``kind`` takes for ``texts``."""
    if kind == "archivist":
        return orjson.dumps({"texts": texts})
    if kind == "openai":
        return orjson.dumps({"model": model, "input": texts})
    return orjson.dumps({"texts": texts})  # litserve (scripts/peer_litserve.py)


def vectors(kind: str, body: bytes) -> list[list[float]]:
    """The vectors of an answer, in request order."""
    answer = orjson.loads(body)
    if kind == "openai":
        rows = sorted(answer["data"], key=lambda row: row["index"])
        return [row["embedding"] for row in rows]
    found: list[list[float]] = answer["vectors"]
    return found


def timed_run(
    url: str,
    path: str,
    bodies: list[bytes],
    texts_per_body: int,
    clients: int,
    duration_s: float,
    warmup_s: float,
    after_warmup: Callable[[], None] | None = None,
) -> RunResult:
    """``clients`` closed-loop clients sending ``bodies`` (client ``c`` starts at body ``c``, each takes every
    ``clients``-th) for ``warmup_s``, then for ``duration_s`` counted; ``after_warmup`` runs in between."""
    connections = [Connection(url) for _ in range(clients)]
    try:
        _drive(connections, path, bodies, warmup_s, lambda _ms: None)
        if after_warmup is not None:
            after_warmup()
        latencies: list[float] = []
        lock = threading.Lock()

        def record(ms: float) -> None:
            with lock:
                latencies.append(ms)

        elapsed = _drive(connections, path, bodies, duration_s, record)
    finally:
        for connection in connections:
            connection.close()
    return RunResult(
        texts_per_s=len(latencies) * texts_per_body / elapsed,
        p50_ms=statistics.median(latencies),
        requests=len(latencies),
        elapsed_s=elapsed,
    )


def _drive(
    connections: list[Connection],
    path: str,
    bodies: list[bytes],
    duration_s: float,
    record: Callable[[float], None],
) -> float:
    """Every connection in a closed loop until ``duration_s`` after a common start; seconds until the last
    request answered."""
    clients = len(connections)
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(index: int) -> None:
        connection = connections[index]
        n = index
        start.wait()
        while time.perf_counter() < deadline[0]:
            body = bodies[n % len(bodies)]
            n += clients
            sent = time.perf_counter()
            status, answer = connection.post(path, body)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {answer[:300]!r}")
            record((time.perf_counter() - sent) * 1000)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(client, n) for n in range(clients)]
        started = time.perf_counter()
        deadline[0] = started + duration_s
        start.wait()
        for future in futures:
            future.result()
        return time.perf_counter() - started
