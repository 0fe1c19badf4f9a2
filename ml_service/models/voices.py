"""Speaker turns of an audio item: a resemblyzer voice embedding per turn, and local speaker labels.

How turns are formed (kept simple on purpose):
1. Speech regions are the item's ASR segments when ASR ran on it, else the Silero VAD's speech
   regions (``faster_whisper.vad.get_speech_timestamps``, split at pauses of ``VAD_MIN_SILENCE_MS``).
2. Each region of at least ``MIN_EMBED_SECONDS`` gets a 256-d unit embedding (resemblyzer's
   ``embed_utterance`` over the region, after its volume normalisation and silence trimming). A
   shorter region is too short to identify a voice: its embedding is ``None`` and it takes the label
   of the nearest embedded turn in time (the earlier one on a tie).
3. Consecutive embedded regions less than ``MERGE_GAP_SECONDS`` apart are merged when their
   embeddings are at least the same-voice threshold apart (embedding: the duration-weighted mean,
   re-normalised); different voices stay separate turns however close.
4. The item's turn embeddings are clustered (agglomerative, average linkage on cosine similarity,
   merging while the best pair is >= the threshold); labels "S0", "S1", ... follow first appearance.
   When no turn of an item is long enough to embed, all its turns are "S0": there is nothing to
   tell voices apart by.
Labels are local to the item: "S0" of one item is not "S0" of another (compare embeddings instead).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NotRequired, TypedDict

import numpy as np

from ml_service.models.asr import SAMPLE_RATE, TIME_DECIMALS, resolve_device, vad_model_file
from ml_service.models.base import FloatArray, InferenceModel, ItemResult, predict_each

# Below this a region is not embedded: resemblyzer's partial utterances are 1.6 s, and shorter
# speech gives vectors dominated by padding.
MIN_EMBED_SECONDS = 0.8
# Consecutive turns closer than this may be one turn (when their voices match).
MERGE_GAP_SECONDS = 0.3
# VAD regions when ASR did not run: split at pauses of 300 ms (a change of speaker rarely leaves
# less), padded by 100 ms, at most 15 s each (longer ones are split).
VAD_MIN_SILENCE_MS = 300
VAD_SPEECH_PAD_MS = 100
VAD_MAX_SPEECH_S = 15.0
# Regions whose RMS is below this (about -70 dBFS) are silence: no embedding.
_SILENT_RMS = 3e-4


@dataclass(frozen=True, slots=True)
class SpeakerInput:
    """One item: 16 kHz mono float32 samples, and its speech regions (seconds) or None for the VAD."""

    samples: FloatArray
    regions: tuple[tuple[float, float], ...] | None = None


class Turn(TypedDict):
    start: float
    end: float
    speaker: str
    embedding: FloatArray | None  # 256-d unit vector; None for a turn too short to embed
    # Why ``embedding`` is None although the turn was embedded (the output check, as for faces).
    embedding_error: NotRequired[str | None]


@dataclass(slots=True)
class _Region:
    start: float
    end: float
    embedding: FloatArray | None

    @property
    def duration(self) -> float:
        return self.end - self.start


def cluster(embeddings: FloatArray, threshold: float) -> list[int]:
    """Agglomerative clustering (average linkage, cosine) of unit rows; a cluster id per row.

    Merges the most similar pair of clusters while their mean pairwise cosine is >= ``threshold``.
    Ids are in order of first appearance (row order).
    """
    count = len(embeddings)
    if count == 0:
        return []
    similarity = embeddings @ embeddings.T
    clusters: list[list[int]] = [[i] for i in range(count)]
    while len(clusters) > 1:
        best, pair = -np.inf, (0, 0)
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                score = float(similarity[np.ix_(clusters[a], clusters[b])].mean())
                if score > best:
                    best, pair = score, (a, b)
        if best < threshold:
            break
        a, b = pair
        clusters[a] = clusters[a] + clusters.pop(b)
    owner = {row: index for index, members in enumerate(clusters) for row in members}
    order: dict[int, int] = {}
    for row in range(count):
        order.setdefault(owner[row], len(order))
    return [order[owner[row]] for row in range(count)]


def speaker_device(setting: Literal["auto", "cpu", "cuda"]) -> str:
    """Where a speaker model runs: where the ASR runs (CTranslate2 sees a GPU), if torch sees it too."""
    if resolve_device(setting) == "cuda":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


class SpeakerModel(InferenceModel[SpeakerInput, list[Turn]]):
    key: ClassVar[str] = "speakers"
    task: ClassVar[str] = "speaker-embedding"
    name: ClassVar[str] = "resemblyzer"
    vector_size: ClassVar[int | None] = 256
    # Follows the ASR limits: the same audio items go through both.
    default_max_batch: ClassVar[int] = 8
    default_preferred_batch: ClassVar[int] = 4
    processing_version: ClassVar[str] = "1"
    runtime_attributes: ClassVar[tuple[str, ...]] = ("_encoder",)

    def __init__(
        self,
        *,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        same_threshold: float = 0.80,
        max_batch: int | None = None,
        preferred_batch: int | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__(max_batch=max_batch, preferred_batch=preferred_batch, threads=threads)
        self.requested_device = device
        self.same_threshold = same_threshold
        self._encoder: Any = None

    def weight_files(self) -> list[Path]:
        import importlib.util

        spec = importlib.util.find_spec("resemblyzer")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("the resemblyzer package is not installed")
        return [Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt", vad_model_file()]

    def processing_options(self) -> str:
        return (
            f"same={self.same_threshold};min_embed={MIN_EMBED_SECONDS};merge_gap={MERGE_GAP_SECONDS};"
            f"vad={VAD_MIN_SILENCE_MS},{VAD_SPEECH_PAD_MS},{VAD_MAX_SPEECH_S}"
        )

    def capabilities(self) -> dict[str, object]:
        return {**super().capabilities(), "device": self.device, "same_threshold": self.same_threshold}

    def _resolve(self) -> None:
        self.device = speaker_device(self.requested_device)

    def _load(self) -> None:
        import torch
        from faster_whisper.vad import get_vad_model

        with warnings.catch_warnings():
            # webrtcvad imports pkg_resources, resemblyzer scipy.ndimage.morphology: both warn on stderr,
            # outside the JSON log stream.
            warnings.simplefilter("ignore")
            from resemblyzer import VoiceEncoder

        torch.set_num_threads(self.threads)  # process-wide, as for the text model: one model runs at a time
        self._encoder = VoiceEncoder(device=self.device, verbose=False)
        get_vad_model()
        # The first embedding compiles librosa's numba kernels (10-15 s): pay for it at load.
        rng = np.random.default_rng(0)
        self._embed((0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32))

    def _embed(self, samples: FloatArray) -> FloatArray | None:
        """A unit vector for one stretch of speech, or None when it is silent or too short."""
        from resemblyzer import preprocess_wav

        if len(samples) < MIN_EMBED_SECONDS * SAMPLE_RATE:
            return None
        if float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) < _SILENT_RMS:
            return None
        wav = preprocess_wav(samples)  # volume normalisation and long-silence trimming (webrtcvad)
        if len(wav) < MIN_EMBED_SECONDS * SAMPLE_RATE:
            wav = samples  # mostly trimmed away: the region as it is is still better than nothing
        vector = np.asarray(self._encoder.embed_utterance(wav), dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0.0:
            return None
        unit: FloatArray = vector / norm
        return unit

    def speech_regions(self, samples: FloatArray) -> list[tuple[float, float]]:
        """Silero VAD regions (seconds) for items without ASR segments."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        options = VadOptions(
            min_silence_duration_ms=VAD_MIN_SILENCE_MS,
            speech_pad_ms=VAD_SPEECH_PAD_MS,
            max_speech_duration_s=VAD_MAX_SPEECH_S,
        )
        stamps = get_speech_timestamps(samples, options, sampling_rate=SAMPLE_RATE)
        return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]

    def _predict_batch(self, batch: Sequence[SpeakerInput]) -> list[ItemResult[list[Turn]]]:
        if self._encoder is None:
            raise RuntimeError("speaker model is not loaded")
        return predict_each(self.turns, batch)

    def turns(self, item: SpeakerInput) -> list[Turn]:
        """The item's speaker turns, in time order (see the module docstring)."""
        duration = len(item.samples) / SAMPLE_RATE
        spans = item.regions if item.regions is not None else self.speech_regions(item.samples)
        regions: list[_Region] = []
        for start, end in sorted(spans):
            start, end = max(0.0, start), min(duration, end)
            if end <= start:
                continue
            piece = item.samples[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
            regions.append(_Region(start, end, self._embed(piece)))
        regions = self._merge_close(regions)
        vectors = {i: r.embedding for i, r in enumerate(regions) if r.embedding is not None}
        embedded = list(vectors)
        labels: dict[int, int] = {}
        if embedded:
            matrix = np.stack(list(vectors.values()))
            labels = dict(zip(embedded, cluster(matrix, self.same_threshold), strict=True))
        for index in range(len(regions)):
            if index not in labels:
                labels[index] = labels[self._nearest(regions, embedded, index)] if embedded else 0
        # Renumber by first appearance over all turns (short turns included).
        order: dict[int, int] = {}
        for index in range(len(regions)):
            order.setdefault(labels[index], len(order))
        return [
            Turn(
                start=round(region.start, TIME_DECIMALS),
                end=round(region.end, TIME_DECIMALS),
                speaker=f"S{order[labels[index]]}",
                embedding=region.embedding,
            )
            for index, region in enumerate(regions)
        ]

    def _merge_close(self, regions: list[_Region]) -> list[_Region]:
        merged: list[_Region] = []
        for region in regions:
            last = merged[-1] if merged else None
            if (
                last is not None
                and last.embedding is not None
                and region.embedding is not None
                and region.start - last.end < MERGE_GAP_SECONDS
                and float(last.embedding @ region.embedding) >= self.same_threshold
            ):
                mean = last.embedding * last.duration + region.embedding * region.duration
                last.embedding = (mean / np.linalg.norm(mean)).astype(np.float32)
                last.end = max(last.end, region.end)
                continue
            merged.append(region)
        return merged

    @staticmethod
    def _nearest(regions: list[_Region], embedded: list[int], index: int) -> int:
        """The embedded region closest in time to ``regions[index]`` (the earlier one on a tie)."""
        target = regions[index]

        def gap(other: int) -> tuple[float, int]:
            r = regions[other]
            distance = max(r.start - target.end, target.start - r.end, 0.0)
            return distance, other

        return min(embedded, key=gap)
