"""Speaker turns from a local pyannote.audio diarization pipeline (``ML_PYANNOTE_PIPELINE_PATH``).

The directory is a pyannote pipeline as ``Pipeline.from_pretrained`` reads it offline: ``config.yaml``
naming ``pyannote.audio.pipelines.SpeakerDiarization`` and its parameters, with the segmentation and
embedding checkpoints (and the PLDA, for VBx clustering) in subfolders it refers to as ``$model/...``
(the layout of ``pyannote/speaker-diarization-community-1``). Nothing is downloaded: pyannote's weights are
gated on the hub and not installable here (docs/models.md), so the tests build a tiny, randomly initialised
pipeline of the same layout (tests/ml_service/tiny_pyannote.py).

It answers like the built-in backend (voices.py): time-ordered ``Turn`` s with local labels "S0", "S1", ...
by first appearance. pyannote segments the audio itself (the item's ASR regions are not used) and each
turn carries its speaker's embedding (pyannote's centroid for that speaker, L2-normalised; the size of
the pipeline's embedding model), or None when pyannote has none for it. Turns are pyannote's exclusive
diarization: overlapped speech is given to one speaker, as the rest of the system expects.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from ml_service.models.asr import SAMPLE_RATE, TIME_DECIMALS
from ml_service.models.base import FloatArray, InferenceModel, ItemResult, predict_each, unit_rows
from ml_service.models.local_torch import directory_files
from ml_service.models.voices import SpeakerInput, Turn, speaker_device


def speaker_vectors(centroids: Any) -> list[FloatArray | None]:
    """pyannote's per-speaker centroids as unit vectors; None for one it could not compute (NaN or zero)."""
    return [row if np.isfinite(row).all() and row.any() else None for row in unit_rows(centroids)]


class PyannoteSpeakerModel(InferenceModel[SpeakerInput, list[Turn]]):
    key: ClassVar[str] = "speakers"
    task: ClassVar[str] = "speaker-embedding"
    name: ClassVar[str] = "pyannote"
    # From the pipeline's embedding model (``dim``, known once loaded): see ``capabilities``.
    vector_size: ClassVar[int | None] = None
    # Follows the ASR limits (the same audio items go through both); items run one after another.
    default_max_batch: ClassVar[int] = 8
    default_preferred_batch: ClassVar[int] = 4
    processing_version: ClassVar[str] = "1"
    runtime_attributes: ClassVar[tuple[str, ...]] = ("_pipeline",)

    def __init__(
        self,
        pipeline_path: Path,
        *,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        max_batch: int | None = None,
        preferred_batch: int | None = None,
        threads: int = 1,
    ) -> None:
        super().__init__(max_batch=max_batch, preferred_batch=preferred_batch, threads=threads)
        self.pipeline_path = pipeline_path
        self.requested_device = device
        self.dim = 0
        self._pipeline: Any = None

    @property
    def config_file(self) -> Path:
        path = self.pipeline_path
        return path if path.is_file() else path / "config.yaml"

    def weight_files(self) -> list[Path]:
        if not self.config_file.is_file():
            raise FileNotFoundError(f"no pyannote pipeline (config.yaml) at {self.pipeline_path}")
        return directory_files(self.config_file.parent)

    def capabilities(self) -> dict[str, object]:
        return {**super().capabilities(), "vector_size": self.dim or None, "weights": self.pipeline_path.name}

    def _resolve(self) -> None:
        self.device = speaker_device(self.requested_device)

    def _load(self) -> None:
        # Offline, and no usage telemetry (pyannote.audio 4 sends it to its authors unless told not to).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ["PYANNOTE_METRICS_ENABLED"] = "0"
        import torch

        with warnings.catch_warnings():
            # torchcodec (file decoding) has no CPU build on PyPI: pyannote warns at import. Audio is
            # passed in memory here, so it is not needed.
            warnings.simplefilter("ignore")
            from pyannote.audio import Pipeline

        torch.set_num_threads(self.threads)  # process-wide, as for the other torch models
        with warnings.catch_warnings():
            # Model construction may advise on its feature settings (mel filterbanks): not for the log stream.
            warnings.simplefilter("ignore", UserWarning)
            pipeline: Any = Pipeline.from_pretrained(self.config_file)
        if pipeline is None:
            raise FileNotFoundError(f"pyannote could not load the pipeline at {self.config_file}")
        pipeline.to(torch.device(self.device))
        self._pipeline = pipeline
        # One pass over a second of noise: loads what is lazy, and tells the embedding size.
        rng = np.random.default_rng(0)
        warm = self._diarize((0.05 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32))
        # The embedding model's size (pyannote keeps it as ``_embedding``), else what the warm-up answered.
        dimension = getattr(getattr(pipeline, "_embedding", None), "dimension", None)
        answered = getattr(warm, "speaker_embeddings", None)
        self.dim = int(dimension or (np.shape(answered)[-1] if answered is not None else 0))

    def _diarize(self, samples: FloatArray) -> Any:
        import torch

        waveform = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None, :]
        with warnings.catch_warnings():
            # Short or silent stretches make pyannote's statistics warn (empty means, std of one frame);
            # they are handled (no vector) and would only break the JSON log stream on stderr.
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            return self._pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE})

    def _predict_batch(self, batch: Sequence[SpeakerInput]) -> list[ItemResult[list[Turn]]]:
        if self._pipeline is None:
            raise RuntimeError("pyannote pipeline is not loaded")
        return predict_each(self.turns, batch)

    def turns(self, item: SpeakerInput) -> list[Turn]:
        duration = len(item.samples) / SAMPLE_RATE
        output = self._diarize(item.samples)
        exclusive = getattr(output, "exclusive_speaker_diarization", None)
        annotation = exclusive if exclusive is not None else output.speaker_diarization
        labels = list(output.speaker_diarization.labels())
        centroids = getattr(output, "speaker_embeddings", None)
        vectors = speaker_vectors(centroids) if centroids is not None else [None] * len(labels)
        by_label = dict(zip(labels, vectors, strict=False))
        order: dict[str, int] = {}
        turns: list[Turn] = []
        for segment, _, label in sorted(annotation.itertracks(yield_label=True), key=lambda t: t[0].start):
            start, end = max(0.0, float(segment.start)), min(duration, float(segment.end))
            if end <= start:
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
