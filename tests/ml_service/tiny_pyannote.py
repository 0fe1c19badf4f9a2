"""A tiny, randomly initialised pyannote.audio diarization pipeline (pyannote's weights are gated on the hub).

``save_tiny_pyannote(folder)`` writes the layout of ``pyannote/speaker-diarization-community-1``, which
``Pipeline.from_pretrained(folder)`` loads offline:

- ``segmentation/pytorch_model.bin``: PyanNet (SincNet, a 16-unit LSTM), powerset over 3 speakers with at
  most 2 at once, 10 s chunks, as segmentation-3.0 (its classifier fixed: one local speaker throughout);
- ``embedding/pytorch_model.bin``: an x-vector over MFCCs with ``VECTOR_SIZE``-d embeddings;
- ``plda/``: a random PLDA for VBx clustering;
- ``config.yaml``: ``SpeakerDiarization`` with ``$model/...`` references and instantiated parameters.

Same architectures and loading code as a real pipeline; only the sizes are small and the weights random,
so the turns it finds mean nothing, but their structure, times and vectors go through the real code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

VECTOR_SIZE = 32
_PLDA_SIZE = 16
# ``full_size=True``: community-1's own architectures (PyanNet at its default sizes, WeSpeaker ResNet34 with
# 256-d vectors), still random, for timing the backend (scripts/bench_pyannote.py).
FULL_VECTOR_SIZE = 256
_FULL_PLDA_SIZE = 128


def _save_checkpoint(model: Any, path: Path) -> None:
    """A Lightning-style checkpoint, as pyannote's ``Model.from_pretrained`` reads it."""
    import lightning
    import torch

    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)  # adds the pyannote.audio section: architecture, specifications
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def save_tiny_pyannote(folder: Path, seed: int = 0, full_size: bool = False) -> Path:
    import warnings

    with warnings.catch_warnings():
        # torchcodec has no CPU build here (audio is passed in memory); the small MFCC front end warns
        # about empty mel filters. Neither matters to the test.
        warnings.simplefilter("ignore")
        return _save(folder, seed, full_size)


def _save(folder: Path, seed: int, full_size: bool) -> Path:
    os.environ["PYANNOTE_METRICS_ENABLED"] = "0"
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34, XVectorMFCC
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    small: dict[str, Any] = {
        "sincnet": {"stride": 10},
        "lstm": {"hidden_size": 16, "num_layers": 1, "bidirectional": True, "monolithic": True, "dropout": 0},
        "linear": {"hidden_size": 16, "num_layers": 1},
    }
    segmentation: Any = PyanNet() if full_size else PyanNet(**small)
    segmentation.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=10.0,
        min_duration=10.0,
        warm_up=(0.0, 0.0),
        classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    segmentation.setup()  # builds the task's classifier and activation
    # Random LSTM features, but a classifier fixed to answer "speaker #1 alone" (powerset class 1 of
    # ∅, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}) everywhere: with random classes pyannote finds no stretch clean
    # enough to embed (its speaker vectors come out NaN), and the vectors are what the tests follow.
    with torch.no_grad():
        segmentation.classifier.weight.zero_()
        segmentation.classifier.bias.fill_(-10.0)
        segmentation.classifier.bias[1] = 10.0
    _save_checkpoint(segmentation, folder / "segmentation" / "pytorch_model.bin")

    embedding: Any = WeSpeakerResNet34() if full_size else XVectorMFCC(dimension=VECTOR_SIZE)
    embedding.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0, min_duration=0.5
    )
    embedding.setup()
    _save_checkpoint(embedding, folder / "embedding" / "pytorch_model.bin")

    plda = folder / "plda"
    plda.mkdir(parents=True, exist_ok=True)
    size, reduced = int(embedding.dimension), _FULL_PLDA_SIZE if full_size else _PLDA_SIZE
    np.savez(
        plda / "xvec_transform.npz",
        mean1=rng.normal(size=size),
        mean2=rng.normal(size=reduced) * 0.01,
        lda=rng.normal(size=(size, reduced)),
    )
    rotation, _ = np.linalg.qr(rng.normal(size=(reduced, reduced)))
    psi = np.sort(rng.uniform(0.5, 5.0, size=reduced))[::-1].copy()
    np.savez(plda / "plda.npz", mu=np.zeros(reduced), tr=rotation, psi=psi)

    config = {
        "dependencies": {"pyannote.audio": "4.0.0"},
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {
                "segmentation": "$model/segmentation",
                "embedding": "$model/embedding",
                "plda": "$model/plda",
                "clustering": "VBxClustering",
                "segmentation_step": 0.1,
                "embedding_exclude_overlap": True,
                "segmentation_batch_size": 32 if full_size else 8,
                "embedding_batch_size": 32 if full_size else 8,
            },
        },
        "params": {
            "segmentation": {"min_duration_off": 0.0},
            "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8},
        },
    }
    # JSON is YAML (1.2): pyannote reads it with yaml.safe_load.
    (folder / "config.yaml").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder
