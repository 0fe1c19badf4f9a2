"""The audio either side of a chunk that the speaker model hears with it, cut from the file's other chunks.

A chunk's speaker turns are found over its audio with up to SPEAKER_CONTEXT_SECONDS of the file's audio
before and after it (the ML service's ``context_before`` / ``context_after``; turns come back for the chunk
alone). A voice heard for a few seconds in a 15 s chunk is told apart from another far better with a minute
of the conversation around it. The decoder already holds each chunk's audio (a little wider than the chunk,
``AVOptions.audio_overlap_s``), so the context is joined from the neighbours' audio: nothing is decoded or
kept twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.pipeline.messages import ChunkInput

SAMPLE_RATE = 16_000
_BYTES = 2  # int16 samples


def _extent(chunk: ChunkInput) -> tuple[int, int]:
    """The samples of the file that the chunk's audio covers, [first, last)."""
    first = round(chunk.audio_start_s * SAMPLE_RATE)
    return first, first + len(chunk.audio or b"") // _BYTES


def _join(chunks: Sequence[ChunkInput], first: int, last: int) -> bytes:
    """The file's samples [first, last) from the chunks that cover them, up to the first gap."""
    parts: list[bytes] = []
    at = max(0, first)
    while at < last:
        extents = [(c, _extent(c)) for c in chunks if c.audio]
        covering = [(c, (start, end)) for c, (start, end) in extents if start <= at < end]
        if not covering:
            break  # a gap (or the file's end): the context stops there
        chunk, (start, end) = max(covering, key=lambda pair: pair[1][1])
        audio = chunk.audio or b""
        stop = min(end, last)
        parts.append(audio[(at - start) * _BYTES : (stop - start) * _BYTES])
        at = stop
    return b"".join(parts)


def _near(chunks: Sequence[ChunkInput], chunk: ChunkInput, reach: tuple[int, int]) -> list[ChunkInput]:
    """The chunks next to ``chunk`` (in file order) whose audio may fall in ``reach``: a file's chunks are
    in time order, so a few neighbours, not the whole file (thousands of chunks for hours of audio)."""
    pos = chunk.index if chunk.index < len(chunks) and chunks[chunk.index] is chunk else None
    if pos is None:
        pos = next(i for i, c in enumerate(chunks) if c is chunk)
    near = [chunk]
    i = pos - 1
    while i >= 0 and (not chunks[i].audio or _extent(chunks[i])[1] > reach[0]):
        near.append(chunks[i])
        if chunks[i].audio and _extent(chunks[i])[0] <= reach[0]:
            break
        i -= 1
    i = pos + 1
    while i < len(chunks) and (not chunks[i].audio or _extent(chunks[i])[0] < reach[1]):
        near.append(chunks[i])
        if chunks[i].audio and _extent(chunks[i])[1] >= reach[1]:
            break
        i += 1
    return near


def speaker_context(chunks: Sequence[ChunkInput], chunk: ChunkInput, seconds: float) -> tuple[bytes, bytes]:
    """Up to ``seconds`` of the file's audio just before and just after ``chunk``'s audio (int16 PCM),
    joined from ``chunks`` (the file's chunks, in time order, ``chunk`` among them); empty at the file's
    edges, without context or audio."""
    if seconds <= 0 or not chunk.audio:
        return b"", b""
    first, last = _extent(chunk)
    span = round(seconds * SAMPLE_RATE)
    chunks = _near(chunks, chunk, (first - span, last + span))
    before = _join(chunks, first - span, first) if first > 0 else b""
    # Only a context that reaches the chunk is usable: one that starts later than asked (a gap) is not.
    if len(before) != (first - max(0, first - span)) * _BYTES:
        before = b""
    after = _join(chunks, last, last + span)
    return before, after
