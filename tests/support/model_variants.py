"""Other versions of the test models (copies with noisy token embeddings): they live in
`scripts/model_variants.py`, which the benchmarks share (scripts do not import tests/); re-exported here for
the tests."""

from __future__ import annotations

from scripts.model_variants import TEXT_NOISE_STD, clip_model_variant, perturbed_copy, text_model_variant

__all__ = ["TEXT_NOISE_STD", "clip_model_variant", "perturbed_copy", "text_model_variant"]
