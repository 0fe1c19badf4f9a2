"""A sentence-transformers BERT encoder (MiniLM) run on packed tokens: no padding in its matrix products.

``SentenceTransformer.encode`` pads every text of a pass to the longest one, and every linear layer then
multiplies the padding too. Here the pass's real tokens are stacked into one (tokens × hidden) matrix: the
embeddings, every linear layer, GELU and LayerNorm run on the real tokens only; attention alone needs the
(texts × length) layout, so each layer scatters Q, K and V into it, runs PyTorch's fused attention with a key
mask, and gathers the real positions back. Q, K and V are one matrix product (their weights concatenated
once). The texts of a pass come length-sorted (``sub_batches.py``), so the attention's own padding is small.

Measured on 128 news sentences (12-36 tokens, 2,975 real of 3,392 padded positions in sorted passes of 32),
2 CPU threads (scripts/measure_compute_batch.py --stock --clock cpu): 139 texts per CPU-second against 126 for
``encode`` on the same sorted passes and 91 for one padded pass of 128 (docs/ml-api.md, "Compute batches").
The vectors are the same within float rounding (largest difference 2e-7). PyTorch's nested tensors would
say the same with less code, but BERT in transformers does not take them.

Used only where it is exactly the model: a ``BertModel`` (absolute positions, right padding) followed by mean
or CLS pooling and at most a normalisation, on the CPU; ``PackedBert.build`` returns None otherwise, and
the text model keeps ``encode``. At load the text model compares both on probe texts before using it.
"""

from __future__ import annotations

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
class _Layer:
    """One encoder layer: the fused QKV projection and the layer's own modules."""

    qkv_weight: torch.Tensor
    qkv_bias: torch.Tensor
    module: Any  # transformers' BertLayer


class PackedBert:
    """Unit vectors of texts from a loaded SentenceTransformer's BERT, computed on packed tokens."""

    def __init__(self, st_model: Any, pooling: str) -> None:
        import torch

        self._st = st_model
        self._bert = st_model[0].auto_model
        self._pooling = pooling
        config = self._bert.config
        self._heads = int(config.num_attention_heads)
        self._hidden = int(config.hidden_size)
        layers = []
        with torch.inference_mode():
            for layer in self._bert.encoder.layer:
                attention = layer.attention.self
                weight = torch.cat([attention.query.weight, attention.key.weight, attention.value.weight])
                bias = torch.cat([attention.query.bias, attention.key.bias, attention.value.bias])
                layers.append(_Layer(weight.contiguous(), bias.contiguous(), layer))
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

        features = self._st.preprocess(texts)
        ids: torch.Tensor = features["input_ids"]
        mask: torch.Tensor = features["attention_mask"].bool()
        types = features.get("token_type_ids")
        count, width = ids.shape
        lengths = mask.sum(dim=1)
        where = mask.reshape(-1).nonzero().squeeze(1)  # packed token -> position in the padded layout
        positions = torch.arange(width).expand(count, width)[mask]
        with torch.inference_mode():
            embeddings = self._bert.embeddings
            hidden = embeddings.word_embeddings(ids[mask]) + embeddings.position_embeddings(positions)
            token_types = types[mask] if types is not None else torch.zeros_like(positions)
            hidden = embeddings.LayerNorm(hidden + embeddings.token_type_embeddings(token_types))
            key_mask = mask[:, None, None, :]
            for layer in self._layers:
                hidden = self._layer(hidden, layer, where, key_mask, count, width)
            if self._pooling == "cls":
                starts = torch.cumsum(lengths, 0) - lengths
                pooled = hidden.index_select(0, starts)
            else:
                segment = torch.repeat_interleave(torch.arange(count), lengths)
                sums = hidden.new_zeros(count, self._hidden).index_add_(0, segment, hidden)
                pooled = sums / lengths[:, None].to(hidden.dtype)
            unit = F.normalize(pooled, dim=1)
        matrix: FloatArray = np.asarray(unit.float().numpy(), dtype=np.float32)
        return matrix

    def _layer(
        self,
        hidden: torch.Tensor,
        layer: _Layer,
        where: torch.Tensor,
        key_mask: torch.Tensor,
        count: int,
        width: int,
    ) -> torch.Tensor:
        import torch.nn.functional as F

        heads, size = self._heads, self._hidden // self._heads
        qkv = F.linear(hidden, layer.qkv_weight, layer.qkv_bias)
        padded = qkv.new_zeros(count * width, 3 * self._hidden)
        padded[where] = qkv
        q, k, v = padded.view(count, width, 3, heads, size).permute(2, 0, 3, 1, 4)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        context = context.transpose(1, 2).reshape(count * width, self._hidden).index_select(0, where)
        module = layer.module
        out = module.attention.output
        hidden = out.LayerNorm(out.dense(context) + hidden)
        inner = module.intermediate.intermediate_act_fn(module.intermediate.dense(hidden))
        final = module.output
        result: torch.Tensor = final.LayerNorm(final.dense(inner) + hidden)
        return result
