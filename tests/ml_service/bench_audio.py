"""Benchmark of the audio models (the numbers in docs/ml-api.md, "Audio").

    python -m tests.ml_service.bench_audio [--runs 5]

- ASR real-time factor on one item of ~32 s of espeak-ng speech (six sentences, two voices
  alternating) and on a batch of eight ~11 s items, greedy (beam 1) against beam 5, as served
  (ML_CPU_THREADS workers of one thread) and as one worker on every thread; interleaved, medians.
- Word error rate of both beam sizes over ten two-voice items (~11 s each; 226 words).
- Speaker turns (resemblyzer) on the same ~32 s: from the ASR segments, and from the VAD alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from ml_service.config import MLSettings
from ml_service.models.asr import AsrModel, as_float_audio
from ml_service.models.base import FloatArray
from ml_service.models.packaged_whisper import english_tiny_model
from ml_service.models.voices import SpeakerInput, SpeakerModel
from scripts.speech import SAMPLE_RATE, VOICES, silence, synthesize
from tests.ml_service.test_audio_analysis import word_errors

SENTENCES = [
    "Breaking news. Heavy rain caused a flood in Valencia on Tuesday morning.",
    "The river rose quickly and hundreds of families left their homes before noon.",
    "Emergency services opened three shelters near the old railway station.",
    "Officials expect the water to fall by the end of the week.",
    "The mayor thanked the volunteers who worked through the night.",
    "Schools will stay closed until the roads are safe again.",
    "The train to London leaves from platform nine at half past seven.",
    "Please send the quarterly report to the finance team by Friday.",
    "A strong wind knocked down several trees in the park yesterday.",
    "The museum will open a new exhibition about ancient Egypt next month.",
]
VOICE_ORDER = ("low", "high")


def long_speech() -> FloatArray:
    parts = [silence(1.0)]
    for index, sentence in enumerate(SENTENCES[:6]):
        parts += [synthesize(sentence, VOICES[VOICE_ORDER[index % 2]]), silence(0.8)]
    return as_float_audio(np.concatenate(parts))


def two_voice_items() -> list[tuple[FloatArray, str]]:
    items = []
    for index, first in enumerate(SENTENCES):
        second = SENTENCES[(index + 1) % len(SENTENCES)]
        a, b = VOICE_ORDER if index % 2 == 0 else VOICE_ORDER[::-1]
        samples = np.concatenate(
            [
                silence(1.0),
                synthesize(first, VOICES[a]),
                silence(1.0),
                synthesize(second, VOICES[b]),
                silence(0.5),
            ]
        )
        items.append((as_float_audio(samples), f"{first} {second}"))
    return items


def timed(runs: int, calls: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median seconds of each call, the calls interleaved run by run (after one warm-up each)."""
    for call in calls.values():
        call()
    spent: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            spent[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    threads = MLSettings().cpu_threads
    print(f"load average before: {os.getloadavg()}, threads: {threads}")
    audio = long_speech()
    seconds = len(audio) / SAMPLE_RATE
    items = two_voice_items()
    total = sum(len(samples) for samples, _ in items) / SAMPLE_RATE
    models: dict[tuple[int, str], AsrModel] = {}
    for beam in (1, 5):
        # As served: ML_CPU_THREADS workers of one thread; against one worker on every thread.
        for layout, workers in (("served", None), ("1 worker", 1)):
            model = AsrModel(
                english_tiny_model(), device="cpu", beam_size=beam, threads=threads, workers=workers
            )
            model.load()
            models[beam, layout] = model

    def label(key: tuple[int, str]) -> str:
        model = models[key]
        return f"beam {key[0]}, {model.workers} worker(s) x {model.worker_threads} thread(s)"

    asr_times = timed(args.runs, {label(key): (lambda m=m: m.transcribe(audio)) for key, m in models.items()})
    print(f"\nASR on one item of {seconds:.1f} s of speech (tiny.en, int8), median of {args.runs}:")
    for name, spent in asr_times.items():
        print(f"  {name}: {spent:.2f} s, RTF {spent / seconds:.3f}")
    batch = [samples for samples, _ in items[:8]]
    batch_seconds = sum(len(samples) for samples in batch) / SAMPLE_RATE
    batch_times = timed(args.runs, {label(key): (lambda m=m: m.predict(batch)) for key, m in models.items()})
    print(f"\nASR on a batch of {len(batch)} items ({batch_seconds:.0f} s), median of {args.runs}:")
    for name, spent in batch_times.items():
        print(f"  {name}: {spent:.2f} s, RTF {spent / batch_seconds:.3f}")

    print(f"\nWER over {len(items)} two-voice items ({total:.0f} s), {threads} thread(s):")
    for beam in (1, 5):
        model = models[beam, "served"]
        errors = np.zeros(4, dtype=int)
        started = time.perf_counter()
        for (_, reference), result in zip(
            items, model.predict([samples for samples, _ in items]), strict=True
        ):
            assert result.value is not None, result.error
            hypothesis = " ".join(s["text"] for s in result.value["segments"])
            errors += word_errors(reference, hypothesis)
        spent = time.perf_counter() - started
        subs, dels, ins, words = (int(v) for v in errors)
        print(
            f"  beam {beam}: WER {(subs + dels + ins) / words:.3f} (sub {subs}, del {dels}, ins {ins} "
            f"of {words} words), {spent:.2f} s, RTF {spent / total:.3f}"
        )

    speakers = SpeakerModel(device="cpu", threads=threads)
    started = time.perf_counter()
    speakers.load()
    print(f"\nspeaker model load (warm numba cache): {time.perf_counter() - started:.2f} s")
    segments = models[5, "served"].transcribe(audio)["segments"]
    regions = tuple((s["start"], s["end"]) for s in segments)
    with_asr, with_vad = SpeakerInput(audio, regions), SpeakerInput(audio)
    turn_times = timed(
        args.runs, {"asr segments": lambda: speakers.turns(with_asr), "vad": lambda: speakers.turns(with_vad)}
    )
    for name, spent in turn_times.items():
        turns = speakers.turns(with_asr if name == "asr segments" else with_vad)
        labels = " ".join(t["speaker"] for t in turns)
        print(f"  turns from {name}: {spent:.2f} s for {seconds:.1f} s ({len(turns)} turns: {labels})")


if __name__ == "__main__":
    main()
