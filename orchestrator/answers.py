"""Checks on what the ML service answered, before it enters chunk records and the people index.

An answer is data from another process (another replica, another model build): a vector holding nulls or
NaN, of the wrong size, or a box of strings must not reach arithmetic that raises (one bad face would fail
the whole job) nor the vector store. Each check returns a clean value or None, and the caller decides what
None means for its item: a face or a speaker turn without a vector, or a chunk (so its file) failed.
"""

from __future__ import annotations

import math
from typing import Any


def number(value: object) -> float | None:
    """A finite real number as float (bools are not numbers here); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def vector(value: object, size: int | None = None) -> list[float] | None:
    """`value` as a list of floats when it is a non-empty list of finite numbers, of `size` when given,
    and not all zero (a zero vector has no direction: cosine similarity is undefined); else None."""
    if not isinstance(value, list | tuple) or not value:
        return None
    if size is not None and len(value) != size:
        return None
    out: list[float] = []
    for item in value:
        x = number(item)
        if x is None:
            return None
        out.append(x)
    return out if any(out) else None


def box(value: object) -> list[float] | None:
    """An [x, y, w, h] box of finite numbers with a non-negative size; None otherwise."""
    if not isinstance(value, list | tuple) or len(value) != 4:
        return None
    parts = [number(v) for v in value]
    if any(p is None for p in parts):
        return None
    clean = [p for p in parts if p is not None]
    return clean if clean[2] >= 0 and clean[3] >= 0 else None


def mapping(value: object) -> dict[str, Any]:
    """A dict as it is, anything else as an empty one (a missing or malformed part of an answer)."""
    return value if isinstance(value, dict) else {}


def items(value: object) -> list[dict[str, Any]]:
    """The dicts of a list (anything else in it, or a non-list, is dropped)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def describe_vector(value: object, size: int | None) -> str:
    """Why `vector(value, size)` refused it, for a failure reason."""
    if not isinstance(value, list | tuple) or not value:
        return f"not a list of numbers ({type(value).__name__})"
    if size is not None and len(value) != size:
        return f"{len(value)} values, expected {size}"
    for item in value:
        if number(item) is None:
            return f"holds {item!r}, not a finite number"
    return "all zero"
