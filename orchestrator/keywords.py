"""Keyword (sparse) vectors: hashed term frequencies; the engine applies IDF (Qdrant's Modifier.IDF)."""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter

from orchestrator.clients.vectors import SparseVector

_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; single characters carry no keyword signal and are dropped."""
    return [t for t in _TOKEN.findall(text.casefold()) if len(t) > 1]


def sparse_vector(text: str) -> SparseVector:
    """Map each token to a stable 31-bit index (crc32) with a damped term-frequency weight."""
    counts = Counter(zlib.crc32(t.encode("utf-8")) & 0x7FFFFFFF for t in tokenize(text))
    indices = sorted(counts)
    return SparseVector(indices=indices, values=[1.0 + math.log(counts[i]) for i in indices])
