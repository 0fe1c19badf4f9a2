"""Other versions of the test models: a copy of a model directory whose token embeddings carry a little
deterministic noise.

An upgraded model is what the ML service's query versions are for (``ML_TEXT_QUERY_MODEL_PATHS``,
``ML_CLIP_QUERY_MODEL_PATHS``); no second real model is installable here, so the tests and the benchmarks
make one. Noise on the token embedding matrix alone changes the weights digest (the version) and moves every
vector measurably, while the model keeps its architecture, its vector size, and (for a small noise) most of
its meaning. Offline and quick: a copy of the directory and one pass over a single weights file (numpy, no
torch import).

Here, not under tests/, because the benchmarks use them too (scripts/bench_reanalyze.py) and scripts do not
import tests/; `tests/support/model_variants.py` re-exports them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from ml_service.config import packaged_text_model

# Standard deviation of the noise added to every token embedding. MiniLM's word embeddings have a std of
# ~0.056: 0.02 moved five sentences' vectors to a cosine of 0.985-0.989 with the original's (the same model
# gives > 0.9999), while the pairs kept their meaning (cat/kitten 0.742 against 0.740, cat/stock market 0.040
# against 0.037).
TEXT_NOISE_STD = 0.02
_WEIGHTS = "model.safetensors"


def perturbed_copy(source: Path, dst: Path, tensor_suffix: str, *, seed: int, std: float) -> Path:
    """``source`` copied to ``dst`` (which must not exist) with gaussian noise of ``std`` (seeded) added to
    the one tensor of ``source/model.safetensors`` whose name ends with ``tensor_suffix``."""
    shutil.copytree(source, dst)
    weights = dst / _WEIGHTS
    with safe_open(str(source / _WEIGHTS), framework="numpy") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    names = [name for name in tensors if name.endswith(tensor_suffix)]
    if len(names) != 1:
        raise ValueError(f"{source / _WEIGHTS}: expected one tensor named *{tensor_suffix}, found {names}")
    matrix = tensors[names[0]]
    noise = np.random.default_rng(seed).normal(0.0, std, size=matrix.shape)
    tensors[names[0]] = (matrix + noise).astype(matrix.dtype)
    save_file(tensors, str(weights), metadata=metadata)
    return dst


def text_model_variant(dst: Path, seed: int = 1) -> Path:
    """A copy of the packaged MiniLM (``packaged_text_model()``) at ``dst`` with noisy word embeddings:
    another version, 384-d vectors that differ from the original's (cosine < 0.999), still meaningful."""
    return perturbed_copy(packaged_text_model(), dst, "word_embeddings.weight", seed=seed, std=TEXT_NOISE_STD)


def clip_model_variant(source: Path, dst: Path, seed: int = 1, std: float = 0.02) -> Path:
    """A copy of the CLIP directory ``source`` (e.g. ``tests/ml_service/tiny_clip.save_tiny_clip``) at ``dst``
    with noisy text token embeddings: another version with the same vector size, its text vectors moved."""
    return perturbed_copy(source, dst, "token_embedding.weight", seed=seed, std=std)
