"""Length-aware compute batches (ml_service/models/sub_batches.py): a merged batch runs as length-sorted
sub-batches of the model's compute batch, and the answers come back in request order, equal to one pass."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from ml_service.config import MLSettings, packaged_text_model
from ml_service.models.clip import ClipModel
from ml_service.models.packed_bert import PackedBert, onednn_available
from ml_service.models.registry import ModelRegistry
from ml_service.models.sub_batches import length_sorted_chunks, run_length_sorted
from ml_service.models.text import TextEmbedder
from scripts.news_sentences import sentences
from tests.ml_service.tiny_clip import save_tiny_clip


def test_chunks_are_sorted_even_and_cover_every_item_once() -> None:
    lengths = [5, 1, 9, 3, 3, 7, 2, 8, 6, 4]
    chunks = length_sorted_chunks(lengths, 4)
    assert [len(c) for c in chunks] == [3, 3, 4]  # 10 items at 4: three even chunks, no lone item
    flat = [n for chunk in chunks for n in chunk]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[n] for n in flat] == sorted(lengths)
    assert flat.index(3) < flat.index(4)  # equal lengths keep their batch order
    assert length_sorted_chunks(lengths, 64) == [sorted(range(10), key=lengths.__getitem__)]
    assert length_sorted_chunks([], 8) == []
    for count in range(1, 70):
        sizes = [len(c) for c in length_sorted_chunks(list(range(count)), 16)]
        assert max(sizes) <= 16 and max(sizes) - min(sizes) <= 1 and len(sizes) == -(-count // 16)
    with pytest.raises(ValueError):
        length_sorted_chunks(lengths, 0)


def test_results_come_back_in_batch_order() -> None:
    items = ["ccc", "a", "bbbbb", "dd", "e", "ffff", "gg"]
    passes: list[list[str]] = []

    def run(chunk: list[str]) -> Sequence[str]:
        passes.append(chunk)
        return [item.upper() for item in chunk]

    out = run_length_sorted(items, [len(s) for s in items], 3, run)
    assert out == [item.upper() for item in items]
    assert passes == [["a", "e"], ["dd", "gg"], ["ccc", "ffff", "bbbbb"]]
    passes.clear()
    assert run_length_sorted(items, [0] * len(items), 7, run) == [s.upper() for s in items]
    assert passes == [items]  # fits one pass: run as it is
    with pytest.raises(RuntimeError):
        run_length_sorted(items, [1] * len(items), 2, lambda chunk: chunk[:-1])
    with pytest.raises(ValueError):
        run_length_sorted(items, [1], 2, run)


def test_compute_batch_follows_device_setting_and_request_limit() -> None:
    model = TextEmbedder(Path("unused"), device="cpu")
    assert model.compute_batch == TextEmbedder.default_compute_batch["cpu"]  # type: ignore[index]
    model.device = "cuda"
    assert model.compute_batch == TextEmbedder.default_compute_batch["cuda"]  # type: ignore[index]
    assert model.compute_batch <= model.max_batch
    assert TextEmbedder(Path("unused"), compute_batch=8).compute_batch == 8
    assert TextEmbedder(Path("unused"), max_batch=4, compute_batch=8).compute_batch == 4


def test_capabilities_report_request_limit_and_compute_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_COMPUTE_BATCH", '{"text": 24}')
    settings = MLSettings(
        text_backend="sentence-transformers",
        image_tasks=(),
        asr_enabled=False,
        voices_enabled=False,
        device="cpu",
    )
    registry = ModelRegistry.from_settings(settings)
    registry.load_all(lazy=True)
    caps = registry.capabilities()
    assert caps["models"]["text"]["compute_batch"] == 24
    endpoint = caps["endpoints"]["/v1/embed/text"]
    assert (endpoint["max_batch"], endpoint["compute_batch"]) == (caps["models"]["text"]["max_batch"], 24)
    with pytest.raises(ValueError):
        MLSettings(compute_batch={"text": 0})


def test_sub_batched_packed_vectors_equal_one_padded_pass() -> None:
    """Length-sorted sub-batches on packed tokens (packed_bert.py) give sentence-transformers' own vectors of
    one padded pass, in request order."""
    model = TextEmbedder(packaged_text_model(), device="cpu", threads=1, compute_batch=5)
    model.load()
    assert model._packed is not None  # MiniLM is a model the packed encoder computes
    assert PackedBert.build(model._model, "cuda") is None  # a GPU keeps sentence-transformers' path
    texts = sentences(23, seed=5)
    texts[7] = ""  # the shortest text of all
    sub = np.stack([r.value for r in model.predict(texts)])  # type: ignore[misc]
    one = np.stack(model._encode_stock(texts))
    assert sub.shape == (23, 384)
    assert np.allclose(sub, one, atol=1e-5)
    alone = model.predict([texts[3]])[0].value
    assert alone is not None and np.allclose(sub[3], alone, atol=1e-5)
    lengths = model.token_lengths(texts)
    assert lengths[7] == min(lengths) == 2  # [CLS] [SEP]
    assert len(set(lengths)) < len(lengths)  # some texts share a length: one attention call takes them all
    # Both ways of running its linear layers give those vectors: oneDNN (reordered weights, GELU and residuals
    # fused) where this PyTorch has it, and F.linear.
    assert model._packed.onednn == onednn_available()
    for onednn in {False, onednn_available()}:
        packed = PackedBert(model._model, "mean", onednn=onednn)
        assert np.allclose(packed.encode(texts), one, atol=1e-5)
    assert packed.encode([]).shape == (0, 384)
    # Packed passes pad nothing: a full request is one pass unless ML_COMPUTE_BATCH says otherwise.
    model.configured_compute_batch = None
    assert model.compute_batch == min(TextEmbedder.packed_compute_batch, model.max_batch)
    # A packed encoder that fails or differs at load is not used: encode serves instead.
    assert model._checked_packed(cast(PackedBert, _Broken())) is None
    assert model._checked_packed(cast(PackedBert, _Shifted(model._packed))) is None


class _Broken:
    def encode(self, texts: list[str]) -> np.ndarray[Any, Any]:
        raise IndexError("an unforeseen layout")


class _Shifted:
    def __init__(self, packed: PackedBert) -> None:
        self.packed = packed

    def encode(self, texts: list[str]) -> np.ndarray[Any, Any]:
        return self.packed.encode(texts) + 1e-3


def test_clip_texts_sub_batched_equal_one_pass(tmp_path: Path) -> None:
    model = ClipModel(save_tiny_clip(tmp_path / "clip"), device="cpu", compute_batch=3)
    model.load()
    texts = sentences(10, seed=2, words=(1, 12))
    sub = model.embed_texts(texts)
    model.configured_compute_batch = len(texts)
    assert np.allclose(sub, model.embed_texts(texts), atol=1e-5)
    assert model.capabilities()["compute_batch"] == len(texts)
