"""Speaker turns, pyannote backend against the built-in resemblyzer one, on the same speech, side by side.

    python scripts/bench_pyannote.py --seconds 60 --json

No pyannote weights are obtainable here, so the pipeline has community-1's architectures with random weights
(tests/ml_service/tiny_pyannote.py, ``full_size``: PyanNet at its default sizes, WeSpeaker ResNet34, 256-d);
compute per second of audio is what the architecture costs, though real weights that hear more speakers per
window embed more. The audio is espeak-ng sentences by two voices taking turns (scripts/speech.py). Both
backends run in this process on the same threads (ML_CPU_THREADS or every core), the built-in one on the
Silero VAD's regions as for a chunk without ASR. Last line JSON: seconds of audio, each backend's seconds
and real-time factor, and ``pyannote_vs_resemblyzer_time``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml_service.models.base import InferenceModel
from ml_service.models.pyannote import PyannoteSpeakerModel
from ml_service.models.voices import SpeakerInput, SpeakerModel, Turn
from scripts.bench_cli import bench_main
from scripts.speech import SAMPLE_RATE, VOICES, silence, synthesize
from scripts.talk_video import sentences


def dialog(seconds: float) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Sentences by the two voices in turn, with short pauses, cut to ``seconds``."""
    parts: list[np.ndarray[Any, np.dtype[np.int16]]] = []
    total, voices = 0, [VOICES["low"], VOICES["high"]]
    for i, text in enumerate(sentences(200)):
        spoken = synthesize(text, voices[i % 2])
        parts += [spoken, silence(0.4)]
        total += len(spoken) + int(0.4 * SAMPLE_RATE)
        if total >= seconds * SAMPLE_RATE:
            break
    samples = np.concatenate(parts)[: int(seconds * SAMPLE_RATE)]
    audio: np.ndarray[Any, np.dtype[np.float32]] = samples.astype(np.float32) / 32768.0
    return audio


def timed(model: InferenceModel[SpeakerInput, list[Turn]], audio: np.ndarray[Any, Any]) -> tuple[float, int]:
    """Seconds for the model's turns of ``audio`` (loaded and warmed before), and how many turns."""
    model.load()
    model.predict([SpeakerInput(audio[: 5 * SAMPLE_RATE])])  # warm: first-call costs out of the timing
    started = time.perf_counter()
    [result] = model.predict([SpeakerInput(audio)])
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"{type(model).__name__}: {result.error}")
    return elapsed, len(result.value or [])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.ml_service.tiny_pyannote import save_tiny_pyannote

    threads = int(os.environ.get("ML_CPU_THREADS") or os.cpu_count() or 1)
    audio = dialog(args.seconds)
    seconds = len(audio) / SAMPLE_RATE
    with tempfile.TemporaryDirectory(prefix="bench-pyannote-") as tmp:
        pipeline = save_tiny_pyannote(Path(tmp) / "community-1-architecture", full_size=True)
        diarizer = PyannoteSpeakerModel(pipeline, device="cpu", threads=threads)
        pyannote_s, pyannote_turns = timed(diarizer, audio)
    builtin_s, builtin_turns = timed(SpeakerModel(device="cpu", threads=threads), audio)
    return {
        "audio_s": round(seconds, 1),
        "threads": threads,
        "pyannote_s": round(pyannote_s, 2),
        "pyannote_realtime_factor": round(seconds / pyannote_s, 2),
        "pyannote_turns": pyannote_turns,
        "resemblyzer_s": round(builtin_s, 2),
        "resemblyzer_realtime_factor": round(seconds / builtin_s, 2),
        "resemblyzer_turns": builtin_turns,
        "pyannote_vs_resemblyzer_time": round(pyannote_s / builtin_s, 1),
    }


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the dialog (default 60)")


def main() -> None:
    bench_main(__doc__, options, run)


if __name__ == "__main__":
    main()
