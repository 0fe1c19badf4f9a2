"""A real RTSP server on loopback for the live-stream tests and benchmark (GStreamer's gst-rtsp-server).

Run with Debian's system Python (python3-gi; not the project's virtual environment, which has no GObject
bindings): `/usr/bin/python3 tests/support/rtsp_server.py --port N --media FILE.mp4`. The packages:
gir1.2-gst-rtsp-server-1.0 and GStreamer's base/good/bad/ugly/libav plugins (scripts/test.sh installs them).

It serves FILE (an mp4 of H.264 video and AAC audio, e.g. from scripts/live_media.py) at
`rtsp://127.0.0.1:N/live`, remuxed without decoding and paced in real time, as a camera would. Each client
session plays the file from its start (a media per session). On stdout, one JSON object per line:
`{"event": "ready", "url": ...}` once it listens, `{"event": "playing", "at": <unix time>}` when a session's
media starts playing (the stream's wall clock: the file's second x is live at `at + x`). At the file's end
the session ends. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

MOUNT = "/live"


def _say(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def launch_line(media: str, audio: bool) -> str:
    """The media pipeline: the mp4's H.264 (and AAC) packets straight into RTP payloaders."""
    location = media.replace("\\", "\\\\").replace('"', '\\"')
    line = (
        f'( filesrc location="{location}" ! qtdemux name=d '
        "d.video_0 ! queue ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=1 "
    )
    if audio:
        line += "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 "
    return line + ")"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--media", required=True)
    parser.add_argument("--no-audio", action="store_true", help="serve the video track only")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.media, not args.no_audio))
    factory.set_shared(False)

    def on_state(_media: GstRtspServer.RTSPMedia, state: int) -> None:
        if state == Gst.State.PLAYING:
            _say("playing", at=time.time())

    def on_configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        media.connect("new-state", on_state)

    factory.connect("media-configure", on_configure)
    server.get_mount_points().add_factory(MOUNT, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, lambda *_: loop.quit() or False)
    _say("ready", url=f"rtsp://127.0.0.1:{args.port}{MOUNT}")
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
