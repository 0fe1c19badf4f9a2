"""A real PipelineContext over temporary directories, for stage-level tests."""

from __future__ import annotations

from pathlib import Path

from orchestrator.cache import ResultCache
from orchestrator.clients.ml import MLClient
from orchestrator.clients.vectors_edge import EdgeVectorStore
from orchestrator.file_index import FileIndex
from orchestrator.media.decode_pool import DecodePool
from orchestrator.people_store import PeopleStore
from orchestrator.pipeline.context import JobControl, PipelineConfig, PipelineContext
from orchestrator.pipeline.progress import JobProgress


async def make_context(tmp_path: Path, root: Path, ml_url: str = "http://127.0.0.1:9") -> PipelineContext:
    data = tmp_path / "data"
    index = FileIndex(data / "index.sqlite3")
    await index.open()
    cache = ResultCache(data / "cache")
    await cache.open()
    people = PeopleStore(data / "people.sqlite3")
    await people.open()
    config = PipelineConfig(
        queue_size=8,
        prepare_workers=1,
        infer_workers=1,
        infer_batch=4,
        upsert_batch=16,
        ml_image_max_side=512,
        thumbnail_size=128,
        max_image_pixels=10**8,
        max_file_bytes=10**8,
        include_hidden=False,
        prune=True,
        thumbnails_dir=data / "thumbs",
        models_signature="test",
        image_vectors=False,
    )
    return PipelineContext(
        job_id="test",
        root=root,
        collection="test",
        config=config,
        store=EdgeVectorStore(data / "qdrant"),
        index=index,
        cache=cache,
        ml=MLClient([ml_url], timeout_s=5, retry_deadline_s=0.5),
        progress=JobProgress(),
        control=JobControl(),
        decoder=DecodePool(workers=1, timeout_s=60),
        people=people,
    )
