"""A pass-through in front of the real ML service that can hold the inference requests (`/v1/...`) until
the test lets them go. While one is held, a job's infer stage waits on it and, with small queues, its
prepare stage stops at a known file: a test can act between "the scan saw a file" and "prepare opened
it" without timing anything. Everything else (`/capabilities`, `/ready`) passes at once.

    with ml_gate(ml_service.url) as gate:   # held from the start
        ... point the orchestrator at gate.url, wait until gate.held >= 1 ...
        gate.release()                       # every held and later request passes
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HELD_PREFIX = "/v1/"
_FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "x-api-key")
_FORWARDED_RESPONSE_HEADERS = ("content-type", "retry-after")


class MLGate:
    def __init__(self, upstream: str, max_hold_s: float, passes: Callable[[bytes], bool] | None) -> None:
        self.upstream = upstream.rstrip("/")
        self.passes = passes  # a request body for which this is true is never held (e.g. a search's embed)
        self.url = ""
        self.max_hold_s = max_hold_s  # a held request passes after this long anyway: no test hangs on it
        self._open = threading.Event()
        self._lock = threading.Lock()
        self._held = 0

    @property
    def held(self) -> int:
        """Inference requests waiting at the gate now."""
        with self._lock:
            return self._held

    def release(self) -> None:
        self._open.set()

    def wait_at_gate(self) -> None:
        with self._lock:
            self._held += 1
        try:
            self._open.wait(self.max_hold_s)
        finally:
            with self._lock:
                self._held -= 1


def _handler(gate: MLGate, client: httpx.Client) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._forward()

        def do_POST(self) -> None:
            self._forward()

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path.startswith(_HELD_PREFIX) and not (gate.passes is not None and gate.passes(body)):
                gate.wait_at_gate()
            headers = {k: v for k in _FORWARDED_REQUEST_HEADERS if (v := self.headers.get(k)) is not None}
            try:
                answer = client.request(self.command, self.path, content=body, headers=headers)
            except httpx.HTTPError:
                self.send_error(502)
                return
            self.send_response(answer.status_code)
            for name in _FORWARDED_RESPONSE_HEADERS:
                if name in answer.headers:
                    self.send_header(name, answer.headers[name])
            self.send_header("content-length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Forward


@contextmanager
def ml_gate(
    upstream: str, max_hold_s: float = 120.0, passes: Callable[[bytes], bool] | None = None
) -> Iterator[MLGate]:
    """A gate on a free loopback port, closed (holding) until `release()`; `passes(body)`: let through."""
    gate = MLGate(upstream, max_hold_s, passes)
    with httpx.Client(base_url=gate.upstream, timeout=300.0) as client:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(gate, client))
        server.daemon_threads = True
        gate.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, name="ml-gate", daemon=True)
        thread.start()
        try:
            yield gate
        finally:
            gate.release()
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
