"""A sentence-transformers BERT encoder (MiniLM) run on packed tokens: no padding anywhere in its pass.

``SentenceTransformer.encode`` pads every text of a pass to the longest one, and every linear layer then
multiplies the padding too. Here the pass's texts are sorted by token count and their real tokens stacked
into one (tokens × hidden) matrix: the embeddings, every linear layer, GELU and LayerNorm run on the real
tokens only. Attention runs once per run of texts of the same length, on views of that run's rows (no
padding, no mask, no copy into a padded layout); the pooled vectors are put back in the texts' order.

The linear layers run on oneDNN with weights reordered once at load for it (``torch.ops.mkldnn``, what
PyTorch's own compiler uses on the CPU), with GELU and the residual additions fused into the matrix
products; where this PyTorch has no oneDNN they run as ``F.linear``. On this machine's CPUs oneDNN's fp32
products are 20-40 % faster than the default (MKL) ones at these shapes.

Measured on 128 news sentences (12-36 tokens), 2 CPU threads, in this process: see docs/ml-api.md
("Compute batches") and scripts/measure_compute_batch.py. The vectors are the same within float rounding
(largest difference ~3e-7). PyTorch's nested tensors would say the same with less code, but BERT in
transformers does not take them.

Used only where it is exactly the model: a ``BertModel`` (absolute positions, right padding) followed by mean
or CLS pooling and at most a normalisation, on the CPU; ``PackedBert.build`` returns None otherwise, and
the text model keeps ``encode``. At load the text model compares both on probe texts before using it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ml_service.models.base import FloatArray

if TYPE_CHECKING:
    import torch

# The sentence-transformers modules a packed encoder replaces (by class name: their import paths moved
# between sentence-transformers releases).
_TRANSFORMER, _POOLING, _NORMALIZE = "Transformer", "Pooling", "Normalize"


@dataclass(frozen=True, slots=True)
class _Linear:
    """One linear layer: on oneDNN (``weight`` reordered for it, GELU or a residual fused) or ``F.linear``."""

    weight: torch.Tensor
    bias: torch.Tensor
    onednn: bool

    @classmethod
    def of(cls, weight: torch.Tensor, bias: torch.Tensor, onednn: bool) -> _Linear:
        import torch

        weight, bias = weight.detach().contiguous(), bias.detach().contiguous()
        if onednn:
            return cls(torch.ops.mkldnn._reorder_linear_weight(weight, None), bias, True)
        return cls(weight, bias, False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        if self.onednn:
            out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
            return out
        return F.linear(x, self.weight, self.bias)

    def gelu(self, x: torch.Tensor) -> torch.Tensor:
        """GELU (erf, BERT's "gelu") of the layer's output."""
        import torch
        import torch.nn.functional as F

        if self.onednn:
            out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
                x, self.weight, self.bias, "gelu", [], "none"
            )
            return out
        return F.gelu(F.linear(x, self.weight, self.bias))

    def plus(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """The layer's output plus ``residual``."""
        import torch
        import torch.nn.functional as F

        if self.onednn:
            out: torch.Tensor = torch.ops.mkldnn._linear_pointwise.binary(
                x, residual, self.weight, self.bias, "add"
            )
            return out
        return F.linear(x, self.weight, self.bias) + residual


@dataclass(frozen=True, slots=True)
class _Layer:
    """One encoder layer: Q, K and V as one product (their weights concatenated once), then BERT's own."""

    qkv: _Linear
    attention_out: _Linear
    attention_norm: Callable[[torch.Tensor], torch.Tensor]
    intermediate: _Linear
    activation: Callable[[torch.Tensor], torch.Tensor] | None  # None: exact GELU, fused into ``intermediate``
    output: _Linear
    output_norm: Callable[[torch.Tensor], torch.Tensor]


def onednn_available() -> bool:
    """This PyTorch runs fp32 linear layers on oneDNN with reordered weights (torch.ops.mkldnn)."""
    import torch

    if not torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
        return False
    return all(hasattr(torch.ops.mkldnn, name) for name in ("_linear_pointwise", "_reorder_linear_weight"))


class PackedBert:
    """Unit vectors of texts from a loaded SentenceTransformer's BERT, computed on packed tokens."""

    def __init__(self, st_model: Any, pooling: str, onednn: bool | None = None) -> None:
        import torch

        self._st = st_model
        self._bert = st_model[0].auto_model
        self._pooling = pooling
        config = self._bert.config
        self._heads = int(config.num_attention_heads)
        self._hidden = int(config.hidden_size)
        self.onednn = onednn_available() if onednn is None else onednn
        exact_gelu = getattr(config, "hidden_act", None) == "gelu"
        layers = []
        with torch.inference_mode():
            for layer in self._bert.encoder.layer:
                attention = layer.attention.self
                weight = torch.cat([attention.query.weight, attention.key.weight, attention.value.weight])
                bias = torch.cat([attention.query.bias, attention.key.bias, attention.value.bias])
                out, intermediate, final = layer.attention.output, layer.intermediate, layer.output
                layers.append(
                    _Layer(
                        qkv=_Linear.of(weight, bias, self.onednn),
                        attention_out=_Linear.of(out.dense.weight, out.dense.bias, self.onednn),
                        attention_norm=out.LayerNorm,
                        intermediate=_Linear.of(
                            intermediate.dense.weight, intermediate.dense.bias, self.onednn
                        ),
                        activation=None if exact_gelu else intermediate.intermediate_act_fn,
                        output=_Linear.of(final.dense.weight, final.dense.bias, self.onednn),
                        output_norm=final.LayerNorm,
                    )
                )
        self._layers = tuple(layers)

    @classmethod
    def build(cls, st_model: Any, device: str) -> PackedBert | None:
        """A packed encoder for ``st_model`` when it is one this module computes exactly, else None."""
        if device != "cpu":
            return None  # the GPU keeps sentence-transformers' own path (nothing here has run on one)
        modules = list(st_model)
        names = [type(m).__name__ for m in modules]
        if names not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]):
            return None
        transformer, pooling = modules[0], modules[1]
        bert = getattr(transformer, "auto_model", None)
        config = getattr(bert, "config", None)
        if type(bert).__name__ != "BertModel" or getattr(config, "model_type", None) != "bert":
            return None
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            return None
        if getattr(transformer.tokenizer, "padding_side", "right") != "right":
            return None
        mode = getattr(pooling, "pooling_mode", None)
        if mode not in ("mean", "cls") or not getattr(pooling, "include_prompt", True):
            return None
        return cls(st_model, mode)

    def encode(self, texts: list[str]) -> FloatArray:
        """Unit vectors of ``texts`` (one pass, tokenized as sentence-transformers does), in order."""
        import torch
        import torch.nn.functional as F

        if not texts:
            return np.zeros((0, self._hidden), dtype=np.float32)
        features = self._st.preprocess(texts)
        lengths: torch.Tensor = features["attention_mask"].sum(dim=1)
        order = torch.argsort(lengths, stable=True)  # texts shortest first: equal lengths lie together
        lengths = lengths[order]
        mask = features["attention_mask"][order].bool()
        count, width = mask.shape
        positions = torch.arange(width).expand(count, width)[mask]
        types = features.get("token_type_ids")
        runs = _runs(lengths)
        with torch.inference_mode():
            embeddings = self._bert.embeddings
            hidden = embeddings.word_embeddings(features["input_ids"][order][mask])
            hidden = hidden + embeddings.position_embeddings(positions)
            token_types = types[order][mask] if types is not None else torch.zeros_like(positions)
            hidden = embeddings.LayerNorm(hidden + embeddings.token_type_embeddings(token_types))
            for layer in self._layers:
                hidden = self._layer(hidden, layer, runs)
            if self._pooling == "cls":
                pooled = hidden.index_select(0, torch.cumsum(lengths, 0) - lengths)
            else:
                segment = torch.repeat_interleave(torch.arange(count), lengths)
                sums = hidden.new_zeros(count, self._hidden).index_add_(0, segment, hidden)
                pooled = sums / lengths[:, None].to(hidden.dtype)
            unit = torch.empty_like(pooled)
            unit[order] = F.normalize(pooled, dim=1)
        matrix: FloatArray = np.asarray(unit.float().numpy(), dtype=np.float32)
        return matrix

    def _layer(self, hidden: torch.Tensor, layer: _Layer, runs: list[tuple[int, int, int]]) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        heads, size = self._heads, self._hidden // self._heads
        qkv = layer.qkv(hidden)
        context = torch.empty_like(hidden)
        for start, texts, length in runs:  # texts of one length: attention needs no padding and no mask
            end = start + texts * length
            q, k, v = qkv[start:end].view(texts, length, 3, heads, size).permute(2, 0, 3, 1, 4)
            attended = F.scaled_dot_product_attention(q, k, v)
            context[start:end] = attended.transpose(1, 2).reshape(end - start, self._hidden)
        hidden = layer.attention_norm(layer.attention_out.plus(context, hidden))
        if layer.activation is None:
            inner = layer.intermediate.gelu(hidden)
        else:
            inner = layer.activation(layer.intermediate(hidden))
        result: torch.Tensor = layer.output_norm(layer.output.plus(inner, hidden))
        return result


def _runs(lengths: torch.Tensor) -> list[tuple[int, int, int]]:
    """(first packed row, texts, tokens each) of every run of equal lengths in sorted ``lengths``."""
    import torch

    values, counts = torch.unique_consecutive(lengths, return_counts=True)
    runs, start = [], 0
    for length, texts in zip(values.tolist(), counts.tolist(), strict=True):
        runs.append((start, texts, length))
        start += texts * length
    return runs
