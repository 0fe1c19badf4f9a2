"""A stream's recording as the orchestrator keeps it (sources/streams.py), fed the recorder's events on real
files: the bounded buffer drops the oldest unprocessed segments, retention deletes old ones before a pass,
a dead recorder's half-written segment is cleared, the URL's credentials stay out of what is shown."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path

from orchestrator.config import Settings
from orchestrator.sources.segments import part_name, segment_name
from orchestrator.sources.stream_status import Connection, StreamStatus
from orchestrator.sources.streams import StreamConfig, StreamRecording, recording_for, save_url


def recording(directory: Path, buffer: int = 2, retention_s: float = 3600.0) -> StreamRecording:
    config = StreamConfig("rtsp://127.0.0.1/live", directory, 4.0, buffer, retention_s, "", 1.0)
    return StreamRecording(config, StreamStatus())


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def closed(rec: StreamRecording, start: float) -> str:
    """A segment file the recorder closed, and its event."""
    name = segment_name(start)
    (rec.config.directory / name).write_bytes(b"segment")
    event = {"event": "segment", "name": name, "start": start, "duration": 4.0, "bytes": 7}
    await rec.handle_event(json.dumps(event).encode())
    return name


async def test_the_oldest_unprocessed_segments_are_dropped_beyond_the_buffer(tmp_path: Path) -> None:
    rec = recording(tmp_path, buffer=2)
    now = time.time()
    names = [await closed(rec, now - 40 + 4 * i) for i in range(5)]
    status = rec.status
    assert (status.recorded, status.dropped, status.pending) == (5, 3, 2)
    assert listing(tmp_path) == names[3:]  # the 3 oldest deleted
    batch = await rec.take()
    assert [s.name for s in batch] == names[3:] and status.pending == 0
    rec.done(batch)
    assert status.ingested == 2 and status.lag_s is not None and status.ingested_until == batch[-1].end


async def test_retention_deletes_old_segments_before_a_pass(tmp_path: Path) -> None:
    rec = recording(tmp_path, buffer=10, retention_s=30.0)
    now = time.time()
    old = await closed(rec, now - 60)
    new = await closed(rec, now - 10)
    running = asyncio.Event()
    running.set()
    await asyncio.wait_for(rec.next_batch(running), 5)  # segments wait: returns at once
    batch = await rec.take()
    assert [s.name for s in batch] == [new]  # the expired one is not ingested...
    assert listing(tmp_path) == [new]  # ...but deleted (the pass prunes its points)
    assert rec.status.expired == 1 and old not in {s.name for s in batch}


async def test_states_and_errors_from_the_recorder(tmp_path: Path) -> None:
    rec = recording(tmp_path)
    await rec.handle_event(b'{"event": "recording"}')
    assert rec.status.connection is Connection.RECORDING
    await rec.handle_event(b'{"event": "failed", "error": "the stream ended", "retry_in": 0.5}')
    assert rec.status.connection is Connection.RECONNECTING
    assert (rec.status.reconnects, rec.status.last_error) == (1, "the stream ended")
    await rec.handle_event(b"not json")  # logged, ignored
    await rec.handle_event(b'{"event": "segment", "name": "../../etc/passwd", "start": 1, "duration": 1}')
    assert rec.status.recorded == 0  # not a segment's name: never a path to delete later


async def test_a_restored_stream_clears_half_written_segments_and_keeps_its_password(tmp_path: Path) -> None:
    directory = tmp_path / "uploads/.streams/cams/abc"
    await asyncio.to_thread(save_url, directory, "rtsp://admin:hunter2@127.0.0.1:9/live")
    assert stat.S_IMODE(os.stat(directory / ".url").st_mode) == 0o600
    left = segment_name(time.time() - 5)
    (directory / part_name(left)).write_bytes(b"half")
    (directory / segment_name(time.time() - 9)).write_bytes(b"whole")
    settings = Settings(data_dir=tmp_path / "data")
    status = StreamStatus()
    rec = await recording_for(directory, {"url": "rtsp://127.0.0.1:9/live"}, settings, status)
    assert rec.config.url == "rtsp://admin:hunter2@127.0.0.1:9/live"  # what the recorder opens
    assert status.url == "rtsp://127.0.0.1:9/live"  # what is shown
    try:
        await rec.start()
        assert not (directory / part_name(left)).exists()
        assert status.connection is not Connection.STOPPED
    finally:
        await rec.close()
    assert status.connection is Connection.STOPPED and status.recorder_pid is None
