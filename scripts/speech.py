"""Synthetic speech for tests and benchmarks: espeak-ng voices rendered to 16 kHz mono int16 samples.

    from scripts.speech import VOICES, silence, synthesize, write_wav
    audio = np.concatenate([silence(1.0), synthesize("Breaking news.", VOICES["low"]), silence(0.5)])
    write_wav(Path("speech.wav"), audio)

Nothing is downloaded: espeak-ng (apt-get install espeak-ng) renders the speech, and sox (when on the
PATH) or numpy resamples it from espeak-ng's 22,050 Hz to 16 kHz.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000

Int16Array = np.ndarray[Any, np.dtype[np.int16]]


class SpeechToolMissing(RuntimeError):
    """espeak-ng (or another needed program) is not installed."""


@dataclass(frozen=True, slots=True)
class Voice:
    """An espeak-ng voice (``-v``) with its pitch (``-p``, 0..99)."""

    name: str
    espeak_voice: str
    pitch: int


# Two voices resemblyzer tells apart (docs/models.md): same-voice cosine >= 0.87, cross-voice <= 0.72.
# (Plain en-us against en-gb+f3 were NOT separable: 0.86-0.94 across voices.) Measured on 20 sentences:
# en+f3 -p 75 against the low voice: cross-voice cosine <= 0.63, tiny.en WER 0.09
# (en-gb+f5 -p 80: 0.79 and 0.125).
VOICES: dict[str, Voice] = {
    "low": Voice("low", "en-us+m3", 25),
    "high": Voice("high", "en+f3", 75),
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SpeechToolMissing(
            f"{name} is not installed (apt-get install {name}); it renders the test speech"
        )
    return path


def _read_wav(data: bytes) -> tuple[Int16Array, int]:
    """Mono int16 samples and the rate of a 16-bit PCM WAV file held in memory."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"expected 16-bit samples, got {8 * wav.getsampwidth()}-bit")
        frames = wav.readframes(wav.getnframes())
        channels, rate = wav.getnchannels(), wav.getframerate()
    samples = np.frombuffer(frames, dtype="<i2").astype(np.int16)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return samples, rate


def _sox_raw_pipe(rate: int) -> list[str]:
    """sox's file arguments for headerless 16-bit signed mono at ``rate`` Hz on stdin/stdout."""
    return ["-t", "raw", "-r", str(rate), "-e", "signed", "-b", "16", "-c", "1", "-"]


def _resample(samples: Int16Array, rate: int, target: int) -> Int16Array:
    if rate == target or samples.size == 0:
        return samples
    sox = shutil.which("sox")
    if sox is not None:
        converted = subprocess.run(
            [sox, *_sox_raw_pipe(rate), *_sox_raw_pipe(target)],
            input=samples.astype("<i2").tobytes(),
            capture_output=True,
            check=True,
        ).stdout
        return np.frombuffer(converted, dtype="<i2").astype(np.int16)
    # No sox: linear interpolation. espeak-ng's output has little energy above 8 kHz, so the
    # missing low-pass filter costs little for tests.
    count = round(samples.size * target / rate)
    positions = np.arange(count) * (rate / target)
    resampled = np.interp(positions, np.arange(samples.size), samples.astype(np.float64))
    out: Int16Array = np.clip(np.round(resampled), -32768, 32767).astype(np.int16)
    return out


def synthesize(text: str, voice: Voice, speed_wpm: int = 150) -> Int16Array:
    """``text`` spoken by ``voice`` as 16 kHz mono int16 samples (espeak-ng, no network)."""
    espeak = _tool("espeak-ng")
    result = subprocess.run(
        [espeak, "-v", voice.espeak_voice, "-p", str(voice.pitch), "-s", str(speed_wpm), "--stdout", text],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0 or not result.stdout:
        raise RuntimeError(
            f"espeak-ng failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
        )
    samples, rate = _read_wav(result.stdout)
    return _resample(samples, rate, SAMPLE_RATE)


def silence(seconds: float) -> Int16Array:
    """``seconds`` of digital silence at 16 kHz."""
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


def trim_silence(samples: Int16Array) -> Int16Array:
    """Cut espeak's leading and trailing silence, so a phrase's start time is when its speech starts."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 500)
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples


def write_wav(path: Path, samples: Int16Array, rate: int = SAMPLE_RATE) -> None:
    """Write mono int16 ``samples`` as a 16-bit PCM WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def words(text: str) -> list[str]:
    """Lower-cased words of a transcript or a reference sentence (punctuation and hyphens split words)."""
    return re.findall(r"[a-z0-9']+", text.lower())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int, int, int]:
    """(substitutions, deletions, insertions, reference words) of a word-level alignment."""
    ref, hyp = words(reference), words(hypothesis)
    # cost, substitutions, deletions, insertions of aligning ref[:i] with hyp[:j]
    row = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i in range(1, len(ref) + 1):
        previous, row = row, [(i, 0, i, 0)]
        for j in range(1, len(hyp) + 1):
            same = ref[i - 1] == hyp[j - 1]
            diagonal, up, left = previous[j - 1], previous[j], row[j - 1]
            row.append(
                min(
                    (diagonal[0] + (not same), diagonal[1] + (not same), diagonal[2], diagonal[3]),
                    (up[0] + 1, up[1], up[2] + 1, up[3]),
                    (left[0] + 1, left[1], left[2], left[3] + 1),
                )
            )
    _, subs, dels, ins = row[-1]
    return subs, dels, ins, len(ref)


def word_error_rate(reference: str, hypothesis: str) -> float:
    subs, dels, ins, count = word_errors(reference, hypothesis)
    return (subs + dels + ins) / max(count, 1)
