"""The audio either side of a chunk, joined from the file's other chunks (speaker_context.py)."""

from __future__ import annotations

import numpy as np

from orchestrator.pipeline.messages import ChunkInput
from orchestrator.pipeline.speaker_context import SAMPLE_RATE, speaker_context

CHUNK_S, OVERLAP_S = 15.0, 0.5


def file_chunks(duration_s: float) -> tuple[list[ChunkInput], np.ndarray]:
    """Chunks as the decoder cuts them: 15 s spans whose audio reaches 0.5 s past each side. The file's
    samples count up (sample n is n % 32768), so every sample's place in the file can be checked."""
    total = round(duration_s * SAMPLE_RATE)
    samples = (np.arange(total) % 32768).astype("<i2")
    chunks = []
    for index, start in enumerate(np.arange(0.0, duration_s, CHUNK_S)):
        end = min(duration_s, start + CHUNK_S)
        a, b = max(0.0, start - OVERLAP_S), min(duration_s, end + OVERLAP_S)
        first, last = round(a * SAMPLE_RATE), round(b * SAMPLE_RATE)
        chunks.append(
            ChunkInput(
                index=index,
                start_s=float(start),
                end_s=float(end),
                audio=samples[first:last].tobytes(),
                audio_start_s=round(float(a), 3),
                has_audio=True,
            )
        )
    return chunks, samples


def test_the_context_is_the_files_audio_right_around_the_chunk() -> None:
    chunks, samples = file_chunks(60.0)
    middle = chunks[2]  # audio 29.5 s .. 45.5 s
    before, after = speaker_context(chunks, middle, 10.0)
    first, last = round(29.5 * SAMPLE_RATE), round(45.5 * SAMPLE_RATE)
    assert before == samples[first - 10 * SAMPLE_RATE : first].tobytes()
    assert after == samples[last : last + 10 * SAMPLE_RATE].tobytes()
    # Joined across two neighbours (20 s reaches into the chunk before the previous one).
    before, _ = speaker_context(chunks, middle, 20.0)
    assert before == samples[first - 20 * SAMPLE_RATE : first].tobytes()


def test_the_context_stops_at_the_files_edges() -> None:
    chunks, samples = file_chunks(40.0)
    before, after = speaker_context(chunks, chunks[0], 15.0)
    assert before == b""  # the first chunk's audio starts at 0
    assert after == samples[round(15.5 * SAMPLE_RATE) : round(30.5 * SAMPLE_RATE)].tobytes()
    before, after = speaker_context(chunks, chunks[-1], 15.0)
    assert after == b""
    last_start = round(29.5 * SAMPLE_RATE)  # the last chunk (30 s .. 40 s) hears from 29.5 s
    assert before == samples[last_start - 15 * SAMPLE_RATE : last_start].tobytes()


def test_no_context_when_off_or_without_audio() -> None:
    chunks, _ = file_chunks(45.0)
    assert speaker_context(chunks, chunks[1], 0.0) == (b"", b"")
    silent = ChunkInput(index=5, start_s=0.0, end_s=15.0, audio=None)
    assert speaker_context(chunks, silent, 15.0) == (b"", b"")
    # A neighbour without decoded audio is a gap: the context before would not reach the chunk.
    gapped = [chunks[0], ChunkInput(index=1, start_s=15.0, end_s=30.0), chunks[2]]
    before, after = speaker_context(gapped, chunks[2], 15.0)
    assert (before, after) == (b"", b"")
    before, after = speaker_context(gapped, chunks[0], 15.0)
    assert after == b""
