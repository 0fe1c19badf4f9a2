"""A live stream's health (GET /streams/{id}, a stream job's "stream" in GET /jobs/{id}, the metrics).

Only the event loop writes it. Its counts are the stream's whole life: a job restored after a restart
takes them from its row (`from_json`); `baseline` is what they were then, so the metrics count this
process's share only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Connection(enum.StrEnum):
    CONNECTING = "connecting"  # no connection recorded anything yet
    RECORDING = "recording"
    RECONNECTING = "reconnecting"  # the last connection failed or dropped; the recorder tries again
    STOPPED = "stopped"  # the stream's job ended (cancelled, failed) or this process is not recording it


COUNTS = ("recorded", "ingested", "dropped", "reconnects")


@dataclass(slots=True)
class StreamStatus:
    url: str = ""  # without credentials
    connection: Connection = Connection.STOPPED
    recorded: int = 0  # segments closed
    ingested: int = 0  # segments a pipeline pass took
    dropped: int = 0  # segments deleted unprocessed because STREAM_BUFFER_SEGMENTS were waiting
    reconnects: int = 0  # connections that failed or dropped
    expired: int = 0  # segments deleted by retention
    pending: int = 0  # closed segments waiting for the next pass
    last_error: str | None = None
    last_error_at: float | None = None
    last_segment_at: float | None = None  # wall clock of the newest segment's end
    ingested_until: float | None = None  # wall clock of the newest ingested segment's end: searchable up to
    lag_s: float | None = None  # the last pass: its end minus the wall clock of its newest segment's end
    recorder_pid: int | None = None
    baseline: dict[str, int] = field(default_factory=dict)  # the counts when this process took over

    def count(self, name: str) -> int:
        value: int = getattr(self, name)
        return value

    def this_process(self, name: str) -> int:
        return self.count(name) - self.baseline.get(name, 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "state": self.connection.value,
            "segments": {
                "recorded": self.recorded,
                "ingested": self.ingested,
                "dropped": self.dropped,
                "expired": self.expired,
                "pending": self.pending,
            },
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_segment_at": self.last_segment_at,
            "ingested_until": self.ingested_until,
            "lag_s": self.lag_s,
            "recorder_pid": self.recorder_pid,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> StreamStatus:
        """The status a job's row kept (its connection is `stopped`: nothing records it yet)."""
        if not data:
            return cls()
        segments = data.get("segments") or {}
        status = cls(
            url=str(data.get("url") or ""),
            recorded=int(segments.get("recorded", 0)),
            ingested=int(segments.get("ingested", 0)),
            dropped=int(segments.get("dropped", 0)),
            expired=int(segments.get("expired", 0)),
            reconnects=int(data.get("reconnects", 0)),
            last_error=data.get("last_error"),
            last_error_at=data.get("last_error_at"),
            last_segment_at=data.get("last_segment_at"),
            ingested_until=data.get("ingested_until"),
            lag_s=data.get("lag_s"),
        )
        status.baseline = {name: status.count(name) for name in COUNTS}
        return status
