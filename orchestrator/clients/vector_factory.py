"""`open_vector_store`: the one place that picks (and imports) a VectorStore adapter.

Each adapter is imported only when it is chosen, so a deployment against a Qdrant server never loads the
Edge package, and an embedded one never loads qdrant-client's HTTP/gRPC stack.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.clients.qdrant_cluster import QdrantCluster
from orchestrator.clients.vector_params import EDGE_SUBDIR
from orchestrator.clients.vectors import VectorStore


def open_vector_store(
    data_dir: Path,
    qdrant_url: str | None,
    qdrant_api_key: str | None,
    cluster: QdrantCluster | None = None,
) -> VectorStore:
    """Embedded Qdrant Edge under data_dir when qdrant_url is None, else a Qdrant server client with the
    cluster's shard/replica counts and write ordering (`Settings.qdrant_cluster`; Edge has none of them)."""
    if qdrant_url is None:
        from orchestrator.clients.vectors_edge import EdgeVectorStore

        return EdgeVectorStore(data_dir / EDGE_SUBDIR)
    from qdrant_client import AsyncQdrantClient

    from orchestrator.clients.vectors_qdrant import QdrantServerVectorStore

    return QdrantServerVectorStore(AsyncQdrantClient(url=qdrant_url, api_key=qdrant_api_key), cluster=cluster)
