"""Live-stream lag: how long after a sentence is spoken on a live stream a search finds it.

    python scripts/bench_source_live.py --json [--ml-url URL]

`measure_live(workdir, ml_url)` (also called by scripts/bench_sources.py) writes a programme of known
sentences spoken at known times (scripts/live_media.py: one per CHUNK_SECONDS slot, over a small picture),
plays it live — over RTSP (tests/support/rtsp_server.py, GStreamer) when the system has the packages, else
as a live HLS playlist served over loopback HTTP — and records it with a real orchestrator process
(scripts/orchestrator_process.py) through POST /streams. Each time the stream's health says a pass ended,
each sentence not found yet whose end the stream's `ingested_until` has reached (a search costs the ML
service a query embedding: only those) is searched (GET /search, over loopback HTTP); it is found when a
hit's transcript has its keyword. Its lag: the moment that search answered minus the moment the sentence's
last word was live on the stream's wall clock (the RTSP server's play start, or the HLS writer's, plus the
sentence's end in the programme). Returns p50/p95/max, n (found), missed, chunk_s and
the transport. The target: p95 within CHUNK_SECONDS + 10 s.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.live_media import LiveHLS, Programme, write_programme
from scripts.ml_process import ml_service
from scripts.orchestrator_process import orchestrator_process
from tests.support.rtsp_process import SYSTEM_PYTHON, RtspServer

CHUNK_S = 5.0
# (sentence, the word a hit's transcript must have), each spoken within one CHUNK_S slot.
SENTENCES = [
    ("A local baker opened a new library.", "library"),
    ("Firefighters repaired the old lighthouse.", "lighthouse"),
    ("The orchestra played for the farmers.", "orchestra"),
    ("Engineers rescued three hikers.", "hikers"),
    ("The museum planted olive trees.", "olive"),
    ("A fisherman found a rare painting.", "painting"),
    ("The city council bought a ferry.", "ferry"),
    ("Students built a wooden rocket.", "rocket"),
    ("The zoo keeper fed the penguins.", "penguins"),
    ("A taxi driver won the marathon.", "marathon"),
    ("The weather service warned of snow.", "snow"),
    ("Beekeepers sold honey at the market.", "honey"),
]
CLOCKS_S = 1.5  # how far the recorder's wall clock (packet arrival) may be from the player's
SETTLE_S = 40.0  # after the programme's last word: how long its last passes may take


def rtsp_available() -> bool:
    """The system Python has GStreamer's RTSP server (scripts/test.sh installs it)."""
    if not SYSTEM_PYTHON.exists():
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([str(SYSTEM_PYTHON), "-c", probe], capture_output=True).returncode == 0


Live = tuple[str, RtspServer | LiveHLS, Callable[[], None]]


@contextmanager
def live_source(programme: Programme, workdir: Path, transport: str) -> Iterator[Live]:
    """The programme played live: (the stream's URL, what plays it, what stops serving it)."""
    if transport == "rtsp":
        server = RtspServer(programme.path)
        server.start()
        try:
            yield server.url, server, server.stop
        finally:
            server.stop()
        return
    site = workdir / "hls"
    site.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_QuietHandler, directory=str(site))
    http_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    writer = LiveHLS(programme.path, site)
    writer.start()
    try:
        deadline = time.monotonic() + 20
        while not (site / "live.m3u8").exists():
            if time.monotonic() > deadline or writer.error is not None:
                raise RuntimeError(f"no HLS playlist: {writer.error}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{http_server.server_address[1]}/live.m3u8", writer, http_server.shutdown
    finally:
        writer.stop()
        http_server.shutdown()
        http_server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _live_since(source: RtspServer | LiveHLS) -> float | None:
    """The stream's wall clock of the programme's time 0 (the session the recorder plays)."""
    if isinstance(source, RtspServer):
        return source.playing[0] if source.playing else None
    return source.started_at or None


def measure_live(
    workdir: Path, ml_url: str, transport: str | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """See the module. `transport`: "rtsp" or "hls" (default: RTSP when available); `env`: more settings
    for the orchestrator."""
    workdir.mkdir(parents=True, exist_ok=True)
    transport = transport or ("rtsp" if rtsp_available() else "hls")
    lines = [text for text, _ in SENTENCES]
    # Each sentence 1.5 s into its slot: whole in one segment whether the stream's first video keyframe
    # comes with its first audio or (GStreamer's RTSP server here) a second later.
    programme = write_programme(workdir / "live.mp4", lines, lead_s=1.5, slot_s=CHUNK_S, tail_s=1.0)
    env = {
        "CHUNK_SECONDS": str(CHUNK_S),
        "MIN_CHUNK_SECONDS": "2",
        "URL_ALLOWED_NETWORKS": "127.0.0.0/8",
        "STREAM_RECONNECT_MAX_S": "2",
        **(env or {}),
    }
    lags: dict[int, float] = {}
    with (
        live_source(programme, workdir, transport) as (url, source, stop_serving),
        orchestrator_process(
            workdir / "data", ml_url, [], env, log_path=workdir / "orchestrator.log"
        ) as base,
        httpx.Client(base_url=base, timeout=120.0) as client,
    ):
        resp = client.post("/streams", json={"url": url, "collection": "live"})
        if resp.status_code != 202:
            raise RuntimeError(f"POST /streams answered {resp.status_code}: {resp.text[:500]}")
        stream_id = resp.json()["stream_id"]
        ingested = -1
        deadline: float | None = None
        ended = False
        while len(lags) < len(SENTENCES):
            health = client.get(f"/streams/{stream_id}").json()
            since = _live_since(source)
            if since is not None and deadline is None:
                deadline = since + programme.duration_s + SETTLE_S
            if deadline is not None and time.time() > deadline:
                break
            if since is not None and time.time() > since + programme.duration_s + 1.0 and not ended:
                stop_serving()  # the programme is over: the recorder must not record a second showing
                ended = True
            if health["segments"]["ingested"] == ingested or since is None:
                time.sleep(0.2)
                continue
            ingested = health["segments"]["ingested"]
            until = health["ingested_until"] or 0.0  # what the passes so far have made searchable
            for i, line in enumerate(programme.lines):
                if i in lags or since + line.end_s > until + CLOCKS_S:  # its segment is not ingested yet
                    continue
                if _found(client, line.text, SENTENCES[i][1]):
                    lags[i] = time.time() - (since + line.end_s)
        client.delete(f"/streams/{stream_id}")
    values = np.asarray(sorted(lags.values()))
    return {
        "live_lag_p50_s": round(float(np.percentile(values, 50)), 2) if values.size else None,
        "live_lag_p95_s": round(float(np.percentile(values, 95)), 2) if values.size else None,
        "live_lag_max_s": round(float(values.max()), 2) if values.size else None,
        "n": int(values.size),
        "missed": len(SENTENCES) - int(values.size),
        "missed_words": [word for i, (_, word) in enumerate(SENTENCES) if i not in lags],
        "chunk_s": CHUNK_S,
        "transport": transport,
        "target_s": CHUNK_S + 10.0,
    }


def _found(client: httpx.Client, sentence: str, word: str) -> bool:
    resp = client.get("/search", params={"q": sentence, "collection": "live", "limit": 10})
    if resp.status_code != 200:  # 503: the ML service too busy to embed the query in time; next pass
        return False
    return any(word in hit["transcript"].lower() for hit in resp.json()["hits"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary directory")
    parser.add_argument("--ml-url", default=None, help="an ML service already running (default: start one)")
    parser.add_argument("--transport", choices=("rtsp", "hls"), default=None)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-live-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with ml_service(args.ml_url, log_path=workdir / "ml.log") as ml_url:
            result = measure_live(workdir, ml_url, args.transport)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if not args.json:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
