"""Constants both vector-store adapters share, in a module that imports nothing: the Qdrant-server adapter
must not need the Edge package for them (nor the Edge adapter the server client)."""

from __future__ import annotations

# Where the embedded engine keeps its shards, under DATA_DIR, apart from the other state there.
EDGE_SUBDIR = "qdrant_edge"

# HNSW parameters, measured with scripts/bench_recall.py: MiniLM embeddings (384-d) of docstring
# sentences, 300 held-out queries, recall@10 against exact numpy search after optimize().
#   hnsw_ef          8      32     64     128    256    (engine default ~ ef_construct)
#   20k points     0.908  0.979  0.991  0.998  0.999   (default 0.998), p50 0.5-1.0 ms vs 1.8 ms exact
#   50k points       -    0.972  0.991  0.998  0.999   (default 0.997), p50 1.2 ms at 128 vs 5.7 ms exact
# m and ef_construct stay at Qdrant's defaults: with them ef 128 already clears the 0.95 target with
# room for larger collections, and optimize() took 2.5 s (20k) / 8 s (50k) on 2 cores. Random vectors
# are far harder (docs/performance-limits.md: recall 0.13); re-measure if the embedding model changes.
HNSW_M = 16  # edges per node; Qdrant's default
HNSW_EF_CONSTRUCT = 100  # build-time candidate list; Qdrant's default
HNSW_EF_SEARCH = 128  # query-time candidate list: recall@10 0.998 at 20k and 50k points, +0.2 ms over 64
