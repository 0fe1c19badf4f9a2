"""Stable identifiers: point ids are uuid5 of (content hash, chunk index, pipeline version)."""

from __future__ import annotations

import uuid

# Bump when the chunk record's meaning changes (chunking, text composition, payload schema):
# every point id and result-cache key changes with it, so nothing stale is reused.
PIPELINE_VERSION = "1"
# Bump when only the payload's fields change (not the chunks, the ML answers or the point ids): collections
# are rebuilt into a new version from the result cache, with no ML call. "people@2": faces and turns keep
# their clusters, people fields are derived from them (identities.py).
RECORD_SCHEMA = "people@2"

_NAMESPACE = uuid.UUID("5b0a3c8e-7d2f-4b8e-9a51-3f7c2d1e6a90")


def point_id(content_hash: str, chunk_index: int) -> str:
    """Deterministic id: re-ingesting the same content never duplicates a point."""
    return str(uuid.uuid5(_NAMESPACE, f"{content_hash}:{chunk_index}:{PIPELINE_VERSION}"))
