"""A small HTTP origin on loopback for URL-job tests: canned answers per path (a body, a redirect, a body
without Content-Length, one that stalls), and the Host headers it was asked with."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True, slots=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False  # no Content-Length: the body in 64 KiB chunks until it ends
    stall: bool = False  # the headers, then nothing until the origin stops


@dataclass(slots=True)
class Origin:
    url: str  # http://127.0.0.1:PORT
    port: int
    answers: dict[str, Answer]
    hosts: list[str]  # the Host header of every request, in order
    stop: threading.Event


@contextmanager
def web_origin(answers: dict[str, Answer]) -> Iterator[Origin]:
    hosts: list[str] = []
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            hosts.append(self.headers.get("Host", ""))
            answer = answers.get(self.path.split("?")[0], Answer(404, b"not here"))
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if answer.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(answer.body), 1 << 16):
                    piece = answer.body[i : i + (1 << 16)]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if answer.stall:
                stop.wait(60)  # bounded: the origin's stop (the test's end) releases it
                return
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="web-origin", daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield Origin(f"http://127.0.0.1:{port}", int(port), answers, hosts, stop)
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
