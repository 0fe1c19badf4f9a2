"""Edge's optimize() builds the index in a child process: the engine holds the GIL while it works, and in
the orchestrator's own process the event loop stood still for the whole build (minutes at 100k points)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import numpy as np

from orchestrator.clients.vectors import CollectionSpec, PointRecord, SearchRequest
from orchestrator.clients.vectors_edge import EdgeVectorStore

# 2,000 vectors of 1,536 floats: 12 MB, past the engine's indexing threshold (~10 MB), so optimize()
# really builds an HNSW graph (about a second on 2 cores); clustered, as embeddings are.
POINTS, DIM = 2_000, 1_536


async def _heartbeat(gaps: list[float], beating: asyncio.Event, stop: asyncio.Event) -> None:
    """Tick every 10 ms until `stop`, noting each gap between ticks; `beating` is set at the first one."""
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
        beating.set()


async def test_the_event_loop_runs_on_while_edge_builds_the_index(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path)
    await store.ensure_collection("c", CollectionSpec(dense={"text": DIM}, sparse=()))
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, DIM))
    vectors = (centres[rng.integers(20, size=POINTS)] + 0.3 * rng.standard_normal((POINTS, DIM))).tolist()
    ids = [str(uuid.UUID(int=i + 1)) for i in range(POINTS)]
    for start in range(0, POINTS, 500):
        batch = range(start, start + 500)
        await store.upsert("c", [PointRecord(ids[i], {"text": vectors[i]}, {}, {"i": i}) for i in batch])
    assert (await store.shard_info("c"))["indexed_vectors"] == 0

    gaps: list[float] = []
    beating, stop = asyncio.Event(), asyncio.Event()
    heart = asyncio.create_task(_heartbeat(gaps, beating, stop))
    await beating.wait()  # before optimize() takes the store's thread: a late first tick would hide a stall
    started = time.perf_counter()
    await store.optimize("c")
    took = time.perf_counter() - started
    stop.set()
    await heart

    assert (await store.shard_info("c"))["indexed_vectors"] == POINTS  # the graph was built
    # In-process, the longest pause of the loop was the whole optimize; now only the shard's reopen.
    assert max(gaps) < took / 2, (max(gaps), took)
    hits = await store.search("c", SearchRequest(dense={"text": vectors[7]}, sparse={}, limit=3))
    assert hits[0].id == ids[7] and hits[0].payload == {"i": 7}  # reopened on the new segments
    assert await store.count("c") == POINTS
    await store.close()
