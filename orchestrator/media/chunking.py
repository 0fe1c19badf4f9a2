"""Time chunks of a video or audio file and the shot changes that end them. Pure: no I/O, no decoding.

A chunk is a window of ``chunk_s`` seconds that ends early at the last shot change found between
``min_chunk_s`` and ``chunk_s`` after its start; a final remainder shorter than ``min_chunk_s`` joins the
chunk before it. Shot changes come from the mean absolute difference of consecutive small greyscale frames
(64x36 samples).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

GREY_SIZE = (64, 36)  # width, height of the frames the shot detector compares
DEFAULT_SCENE_THRESHOLD = 25.0  # mean absolute grey difference (0-255) between consecutive samples
DEFAULT_MIN_CUT_GAP_S = 1.0
DEFAULT_MIN_RATIO = 2.0  # a cut's difference must also be this many times the differences around it
_RECENT_SCORES = 4  # differences before a sample that a cut must stand out from

GreyFrame = NDArray[np.float32] | NDArray[np.uint8]


class ChunkOptions(Protocol):
    """What chunk planning reads (``AVOptions`` has these fields)."""

    @property
    def chunk_s(self) -> float: ...

    @property
    def min_chunk_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class ChunkSizes:
    """A plain ``ChunkOptions`` for callers that have no ``AVOptions``."""

    chunk_s: float = 15.0
    min_chunk_s: float = 4.0


def _ms(seconds: float) -> float:
    return round(float(seconds), 3)


def plan_chunks(duration_s: float, cuts: list[float], options: ChunkOptions) -> list[tuple[float, float]]:
    """Chunk boundaries (start_s, end_s), rounded to milliseconds, covering [0, duration_s]."""
    planner = ChunkPlanner(options)
    for cut in sorted(cuts):
        planner.add_cut(cut)
    return planner.finish(duration_s)


class ChunkPlanner:
    """``plan_chunks`` one window at a time, for a decoder that learns cuts and duration as it goes.

    ``ready(t)`` returns the chunks that can no longer change once the stream has been read up to ``t``
    (every cut before ``t`` added); ``finish(duration)`` returns the rest. Together they return exactly what
    ``plan_chunks`` returns for the same cuts and duration.
    """

    def __init__(self, options: ChunkOptions) -> None:
        if options.chunk_s <= 0 or options.min_chunk_s < 0 or options.min_chunk_s > options.chunk_s:
            raise ValueError("need chunk_s > 0 and 0 <= min_chunk_s <= chunk_s")
        self._chunk_s = options.chunk_s
        self._min_s = options.min_chunk_s
        self._cuts: list[float] = []
        self._start = 0.0

    @property
    def start_s(self) -> float:
        """Start of the first chunk not yet returned."""
        return self._start

    def add_cut(self, t: float) -> None:
        t = _ms(t)
        if t <= self._start:
            return
        if self._cuts and t < self._cuts[-1]:
            raise ValueError("cuts must be added in time order")
        self._cuts.append(t)

    def ready(self, t: float) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        # The window's end is known once t passes the whole window (every cut in it has been seen); no merge
        # can follow when more than min_chunk_s remains after that end.
        while True:
            end = self._window_end()
            if t <= self._start + self._chunk_s or t <= end + self._min_s:
                return out
            out.append(self._take(end))

    def finish(self, duration_s: float) -> list[tuple[float, float]]:
        duration = _ms(max(duration_s, 0.0))
        if duration <= self._start and self._start > 0:
            return []  # the chunks already returned reach the end
        out: list[tuple[float, float]] = []
        while True:
            end = self._window_end()
            if end >= duration or duration - end < self._min_s:
                out.append((self._start, duration))  # the last chunk takes a short remainder
                self._start = duration
                self._cuts.clear()
                return out
            out.append(self._take(end))

    def _window_end(self) -> float:
        lo, hi = self._start + self._min_s, self._start + self._chunk_s
        inside = [c for c in self._cuts if lo <= c <= hi]
        return _ms(inside[-1] if inside else hi)

    def _take(self, end: float) -> tuple[float, float]:
        chunk = (self._start, end)
        self._start = end
        self._cuts = [c for c in self._cuts if c > end]
        return chunk


def grey_difference(a: GreyFrame, b: GreyFrame) -> float:
    """Mean absolute difference of two equally sized greyscale frames, 0-255."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


class CutDetector:
    """Shot changes from consecutive greyscale samples, one at a time (``detect_cuts`` over a stream).

    A sample starts a new shot when its difference to the previous sample is a spike: at least ``threshold``
    and at least ``min_ratio`` times every difference around it (the few before it and the one after it). A
    fast pan or shaking camera differs a lot from frame to frame, but steadily; a one-frame flash makes two
    differences in a row; a pan in a video with repeated frames alternates; a cut stands alone. Cuts are at
    least ``min_gap_s`` apart. The decision on a sample waits for the next one: ``push`` returns the cut it
    settles, ``flush`` the last one.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_SCENE_THRESHOLD,
        min_gap_s: float = DEFAULT_MIN_CUT_GAP_S,
        min_ratio: float = DEFAULT_MIN_RATIO,
    ) -> None:
        self.threshold = threshold
        self.min_gap_s = min_gap_s
        self.min_ratio = min_ratio
        self._prev: NDArray[np.float32] | None = None
        self._pending: tuple[float, float] | None = None  # (time, difference) of the sample awaiting its next
        self._recent: deque[float] = deque(maxlen=_RECENT_SCORES)
        self._last_cut: float | None = None
        self.settled_s: float | None = None  # every sample up to this time has been decided

    def push(self, t: float, grey: GreyFrame) -> float | None:
        """Add the sample at ``t``; the cut time when this settles the previous sample as a cut, else None."""
        frame = grey.astype(np.float32, copy=False)
        prev, self._prev = self._prev, frame
        score = grey_difference(prev, frame) if prev is not None and prev.shape == frame.shape else None
        cut = self._settle(next_score=score if score is not None else 0.0)
        if score is None:
            self._recent.clear()
            self.settled_s = t
        else:
            self._pending = (t, score)
        return cut

    def flush(self) -> float | None:
        """Decide the last sample (the stream ended)."""
        return self._settle(next_score=0.0)

    def _settle(self, next_score: float) -> float | None:
        if self._pending is None:
            return None
        t, score = self._pending
        self._pending = None
        self.settled_s = t
        around = max([next_score, *self._recent])
        self._recent.append(score)
        if score < self.threshold or score < self.min_ratio * around:
            return None
        if self._last_cut is not None and t - self._last_cut < self.min_gap_s:
            return None
        self._last_cut = t
        return t


def detect_cuts(
    samples: Iterable[tuple[float, GreyFrame]],
    threshold: float = DEFAULT_SCENE_THRESHOLD,
    min_gap_s: float = DEFAULT_MIN_CUT_GAP_S,
    min_ratio: float = DEFAULT_MIN_RATIO,
) -> list[float]:
    """Times (s) at which a new shot starts, from (time, small greyscale frame) samples in time order."""
    detector = CutDetector(threshold, min_gap_s, min_ratio)
    cuts: list[float] = []
    for t, grey in samples:
        cut = detector.push(t, grey)
        if cut is not None:
            cuts.append(cut)
    last = detector.flush()
    return [*cuts, last] if last is not None else cuts


# A shot of a chunk at least this long that none of the evenly spaced keyframes falls in gets one of its own
# (its middle), up to `keyframes_per_chunk` more: a face shown for a 2 s shot is seen. The version of this
# choice is part of the chunk plan (manifest.plan_settings: another choice, other frames per chunk index).
_MIN_SHOT_S = 1.0
KEYFRAME_CHOICE = "even+shots"


def keyframe_targets(window: tuple[float, float], cuts: Sequence[float], n: int) -> list[float]:
    """The times a chunk's keyframes are taken nearest to: ``n`` evenly spaced, and the middle of each shot
    (between the chunk's ``cuts``) of at least _MIN_SHOT_S that none of them falls in, longest first, at
    most ``n`` of those; in time order."""
    start, end = window
    targets = [start + (k + 0.5) / n * (end - start) for k in range(n)]
    bounds = [start, *(c for c in cuts if start < c < end), end]
    missed = [
        (a, b)
        for a, b in itertools.pairwise(bounds)
        if b - a >= _MIN_SHOT_S and not any(a <= t < b for t in targets)
    ]
    missed.sort(key=lambda shot: (shot[0] - shot[1], shot[0]))
    return sorted(targets + [(a + b) / 2 for a, b in missed[:n]])
