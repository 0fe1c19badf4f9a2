"""Run tests/support/rtsp_server.py (GStreamer's RTSP server, Debian's system Python) as a child process:
start it on a port, read its events (ready, playing), kill it and start it again on the same port."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.ml_process import free_port

SYSTEM_PYTHON = Path("/usr/bin/python3")
SERVER = Path(__file__).resolve().with_name("rtsp_server.py")
READY_S = 20.0
APT_PACKAGES = "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad,ugly} gstreamer1.0-libav"


class RtspServer:
    """One server process at a time on `port`; `playing` holds the wall clock of each session's start."""

    def __init__(self, media: Path, port: int | None = None) -> None:
        self.media = media
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self.playing: list[float] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        """Start the server and wait until it listens (blocking, bounded)."""
        if not SYSTEM_PYTHON.exists():
            raise RuntimeError(f"{SYSTEM_PYTHON} is missing (apt-get install python3-gi {APT_PACKAGES})")
        process = subprocess.Popen(
            [str(SYSTEM_PYTHON), str(SERVER), "--port", str(self.port), "--media", str(self.media)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._process = process
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(process, ready), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + READY_S
        while not ready.wait(0.05):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                err = process.stderr.read() if process.stderr else ""
                raise RuntimeError(
                    f"the RTSP server did not start (exit {process.returncode}): {err[-2000:]} "
                    f"(scripts/test.sh installs {APT_PACKAGES})"
                )

    def _read(self, process: subprocess.Popen[str], ready: threading.Event) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            event = json.loads(line)
            if event["event"] == "ready":
                ready.set()
            elif event["event"] == "playing":
                self.playing.append(float(event["at"]))

    def stop(self) -> None:
        """Kill the server (SIGKILL: as a crash, connections are cut) and wait for it."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


@contextmanager
def rtsp_server(media: Path, port: int | None = None) -> Iterator[RtspServer]:
    server = RtspServer(media, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
