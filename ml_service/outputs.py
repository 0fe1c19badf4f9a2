"""Checks on what a model returns, before it leaves the service: every vector finite, of the model's
advertised size, with a non-zero norm.

A model can answer garbage without raising: OpenCV 4.13/4.14's batched SFace pass returned NaN face vectors,
which JSON carries as ``null`` components and which crashed the orchestrator's cosine. Here a bad vector
makes its item an error (code ``invalid_output``); a bad vector inside an item (one face, one speaker turn)
is withdrawn (``embedding: null``) with the reason beside it (``embedding_error``), as a face too small to
identify already has no vector. The batcher applies the check that fits its model (``output_check``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import structlog

from ml_service.config import IMAGE_TEXT
from ml_service.errors import ErrorCode
from ml_service.models.base import ItemResult, ServedModel

log = structlog.get_logger(__name__)

# A unit vector's norm is 1; below this it is zero for every purpose (all zeros once rounded to 6 decimals).
_MIN_NORM = 1e-6

OutputCheck = Callable[[list[ItemResult[Any]]], list[ItemResult[Any]]]


def vector_problem(vector: object, size: int | None) -> str | None:
    """Why ``vector`` is not a usable embedding of ``size`` floats (None: any size), or None when it is."""
    try:
        array = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        return f"the vector is not numeric ({type(exc).__name__})"
    if array.ndim != 1 or array.size == 0:
        return f"the vector has shape {array.shape}, expected ({size if size is not None else 'n'},)"
    if size is not None and array.size != size:
        return f"the vector has {array.size} components, expected {size}"
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        return f"the vector has {bad} non-finite components (NaN or infinity)"
    if float(np.linalg.norm(array)) < _MIN_NORM:
        return "the vector has zero norm"
    return None


def advertised_size(model: ServedModel[Any, Any]) -> int | None:
    """The vector size ``/capabilities`` reports (some backends know it only once loaded)."""
    size = model.capabilities().get("vector_size")
    return size if isinstance(size, int) else None


def check_vectors(model: ServedModel[Any, Any], results: list[ItemResult[Any]]) -> list[ItemResult[Any]]:
    """Items whose value is one vector (text, image–text): a bad one becomes that item's error."""
    size = advertised_size(model)
    checked: list[ItemResult[Any]] = []
    for index, result in enumerate(results):
        problem = vector_problem(result.value, size) if result.ok else None
        if problem is None:
            checked.append(result)
            continue
        log.warning("model_output_invalid", model=model.key, item=index, problem=problem)
        checked.append(ItemResult(error=f"invalid output: {problem}", code=ErrorCode.INVALID_OUTPUT))
    return checked


def check_embedded_parts(
    model: ServedModel[Any, Any], results: list[ItemResult[Any]]
) -> list[ItemResult[Any]]:
    """Items whose value is a list of parts with an ``embedding`` (faces, speaker turns): a bad vector is
    withdrawn from its part (``embedding`` None) with the reason in ``embedding_error``; the item stays ok."""
    size = advertised_size(model)
    for index, result in enumerate(results):
        if not result.ok or not isinstance(result.value, list):
            continue
        for part in result.value:
            part.setdefault("embedding_error", None)
            if part.get("embedding") is None:
                continue
            problem = vector_problem(part["embedding"], size)
            if problem is not None:
                log.warning("model_output_invalid", model=model.key, item=index, problem=problem)
                part["embedding"], part["embedding_error"] = None, f"invalid output: {problem}"
    return results


# Which check each model's outputs get, by model key (the other models return no vectors).
_CHECKS: dict[str, Callable[[ServedModel[Any, Any], list[ItemResult[Any]]], list[ItemResult[Any]]]] = {
    "text": check_vectors,
    IMAGE_TEXT: check_vectors,
    "faces": check_embedded_parts,
    "speakers": check_embedded_parts,
}


def output_check(model: ServedModel[Any, Any]) -> OutputCheck | None:
    """The check for ``model``'s results, or None for a model that returns no vectors."""
    check = _CHECKS.get(model.key)
    if check is None:
        return None
    return lambda results: check(model, results)
