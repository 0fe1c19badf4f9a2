"""The VectorStore seam: one small protocol over the Qdrant engine, embedded or served.

Two adapters implement it, both the real Qdrant engine:
- `EdgeVectorStore` (vectors_edge.py): Qdrant Edge in-process, one shard per collection; the default.
- `QdrantServerVectorStore` (vectors_qdrant.py): qdrant-client against a server or cluster.

This module holds the shared dataclasses and the validation both adapters apply (so they refuse the same
inputs); it imports neither adapter. `vector_factory.open_vector_store` picks one from the configuration
(the only module that imports them); `vector_params` holds the constants they share.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# Reciprocal Rank Fusion constant: the k=60 of Cormack et al. (2009), also Qdrant's own default.
RRF_K = 60

# Letters, digits, "_" and "-" only: a collection name becomes a directory name under DATA_DIR for
# the embedded engine, so anything else ("..", "/", "") could escape it. The length cap keeps the
# name a valid file name everywhere.
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")


class CollectionNotFoundError(LookupError):
    """The named collection does not exist."""


class CollectionSpecMismatchError(ValueError):
    """ensure_collection found the collection with other vectors than the spec asks for."""


@dataclass(frozen=True, slots=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    dense: dict[str, int]  # named dense vectors -> size, cosine distance
    sparse: tuple[str, ...] = ("sparse",)  # named sparse vectors, IDF modifier (keyword search)
    keyword_indexes: tuple[str, ...] = ()  # payload fields to index as keyword
    float_indexes: tuple[str, ...] = ()  # payload fields to index as float (ranges)

    def to_json(self) -> dict[str, Any]:
        return {
            "dense": dict(self.dense),
            "sparse": list(self.sparse),
            "keyword_indexes": list(self.keyword_indexes),
            "float_indexes": list(self.float_indexes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CollectionSpec:
        return cls(
            dense={str(k): int(v) for k, v in data["dense"].items()},
            sparse=tuple(data["sparse"]),
            keyword_indexes=tuple(data["keyword_indexes"]),
            float_indexes=tuple(data["float_indexes"]),
        )

    def vector_names(self) -> set[str]:
        return set(self.dense) | set(self.sparse)


@dataclass(frozen=True, slots=True)
class PointRecord:
    id: str  # a UUID string
    dense: dict[str, list[float]]  # may omit some named vectors
    sparse: dict[str, SparseVector]
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SearchFilter:
    match: dict[str, Any] = field(default_factory=dict)  # field == value; a list value means "any of"
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # gte/lte


@dataclass(frozen=True, slots=True)
class SearchRequest:
    dense: dict[str, list[float]]  # vector name -> query vector (0..n)
    sparse: dict[str, SparseVector]  # vector name -> query (0..n)
    limit: int = 10
    filter: SearchFilter | None = None
    prefetch_limit: int = 50  # per branch when fusing
    # one branch -> plain nearest search; several -> Reciprocal Rank Fusion (k=60) of the branches
    with_vectors: tuple[str, ...] = ()  # named dense vectors to return with each hit (ScoredPoint.vectors)


@dataclass(frozen=True, slots=True)
class ScoredPoint:
    id: str
    score: float
    payload: dict[str, Any]
    vectors: dict[str, list[float]] = field(default_factory=dict)  # those asked for (SearchRequest)


class VectorStore(Protocol):
    """Collections of points with named dense and sparse vectors (AGENTS.md, "Vector store")."""

    async def ensure_collection(self, name: str, spec: CollectionSpec) -> None: ...  # idempotent
    async def collection_exists(self, name: str) -> bool: ...
    async def list_collections(self) -> list[str]: ...
    async def delete_collection(self, name: str) -> None: ...
    async def upsert(self, name: str, points: list[PointRecord]) -> None: ...  # durable on return
    async def retrieve(self, name: str, ids: list[str]) -> dict[str, dict[str, Any]]: ...
    # The named dense vectors of points (missing ids and vectors left out).
    async def retrieve_vectors(self, name: str, ids: list[str]) -> dict[str, dict[str, list[float]]]: ...
    async def set_payload(self, name: str, ids: list[str], payload: dict[str, Any]) -> None: ...
    # Per-point payload merges in one durable write (missing ids skipped, as set_payload does).
    async def set_payloads(self, name: str, updates: dict[str, dict[str, Any]]) -> None: ...
    async def delete(self, name: str, ids: list[str]) -> None: ...  # durable
    async def count(self, name: str) -> int: ...
    async def dense_vectors(self, name: str) -> dict[str, int]: ...  # named dense vectors -> size
    async def scroll(
        self, name: str, filter: SearchFilter | None, limit: int, offset: str | None
    ) -> tuple[list[ScoredPoint], str | None]: ...
    async def search(self, name: str, request: SearchRequest) -> list[ScoredPoint]: ...
    async def optimize(self, name: str) -> None: ...  # build the ANN index (Edge); no-op on a server
    async def close(self) -> None: ...


# --- validation shared by both adapters -------------------------------------------------------


def validate_collection_name(name: str) -> str:
    """Return `name` if it is a safe collection name, else raise ValueError."""
    if not isinstance(name, str) or _COLLECTION_NAME.fullmatch(name) is None:
        raise ValueError(f"invalid collection name {name!r}: use 1-128 letters, digits, '_' or '-'")
    return name


def canonical_id(point_id: str) -> str:
    """The canonical (lower-case, hyphenated) form of a UUID string; ValueError for anything else.

    Both engines accept only integers and UUIDs as ids and hand UUIDs back canonicalised, so callers
    comparing ids must compare canonical forms.
    """
    try:
        return str(uuid.UUID(point_id))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"point id must be a UUID string, got {point_id!r}") from exc


def dense_vectors_of(vector: object) -> dict[str, list[float]]:
    """The named dense vectors of an engine's answer (sparse ones and an unnamed vector left out)."""
    if not isinstance(vector, dict):
        return {}
    return {str(k): [float(x) for x in v] for k, v in vector.items() if isinstance(v, list)}


def check_points(spec: CollectionSpec | None, points: list[PointRecord]) -> None:
    """Refuse points naming vectors the collection does not have (when the spec is known)."""
    if spec is None:
        return
    for point in points:
        unknown = (set(point.dense) - set(spec.dense)) | (set(point.sparse) - set(spec.sparse))
        if unknown:
            raise ValueError(f"point {point.id} has vectors {sorted(unknown)} not in the collection")


def search_branches(request: SearchRequest) -> list[tuple[str, list[float] | SparseVector]]:
    """The request's query branches, dense first; ValueError when there is none."""
    branches: list[tuple[str, list[float] | SparseVector]] = [*request.dense.items()]
    branches.extend(request.sparse.items())
    if not branches:
        raise ValueError("a search needs at least one dense or sparse query vector")
    if request.limit < 1 or request.prefetch_limit < 1:
        raise ValueError("limit and prefetch_limit must be positive")
    return branches


MatchValueType = str | int
ConditionKind = Literal["value", "any", "range"]


def filter_conditions(
    search_filter: SearchFilter,
) -> Iterator[tuple[str, ConditionKind, Any]]:
    """Yield (field, kind, value) for every condition, all of which must hold.

    kind "value": value is a str or int; "any": a non-empty list of str or of int; "range":
    (gte, lte) with at least one bound. Booleans and floats are refused for matching: Qdrant matches
    only keywords and integers exactly, and qdrant-edge-py 0.9 turns True into 1, so a bool match
    would silently find nothing there. Store flags as keywords, compare floats with ranges.
    """
    for key, value in search_filter.match.items():
        if isinstance(value, list):
            if not value:
                raise ValueError(f"match on {key!r}: an empty 'any of' list would match nothing")
            for item in value:
                _check_match_value(key, item)
            if len({type(item) for item in value}) > 1:
                raise ValueError(f"match on {key!r}: mix of str and int values")
            yield key, "any", list(value)
        else:
            _check_match_value(key, value)
            yield key, "value", value
    for key, (low, high) in search_filter.ranges.items():
        if low is None and high is None:
            raise ValueError(f"range on {key!r} has neither bound")
        yield key, "range", (low, high)


def _check_match_value(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"match on {key!r}: values must be str or int, got {value!r}")


__all__ = [
    "RRF_K",
    "CollectionNotFoundError",
    "CollectionSpec",
    "CollectionSpecMismatchError",
    "PointRecord",
    "ScoredPoint",
    "SearchFilter",
    "SearchRequest",
    "SparseVector",
    "VectorStore",
]
