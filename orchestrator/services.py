"""The long-lived dependencies of one orchestrator process, built once and passed explicitly."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from orchestrator.cache import ResultCache
from orchestrator.catalog import Catalog
from orchestrator.clients.ml import MLClient
from orchestrator.clients.vector_factory import open_vector_store
from orchestrator.clients.vectors import VectorStore
from orchestrator.config import Settings
from orchestrator.file_index import FileIndex
from orchestrator.media.decode_pool import DecodePool
from orchestrator.metrics import Metrics
from orchestrator.people_store import PeopleStore
from orchestrator.pipeline.context import (
    Checkpoint,
    JobControl,
    PartitionScan,
    PipelineConfig,
    PipelineContext,
    WatchScan,
)
from orchestrator.pipeline.progress import JobProgress
from orchestrator.sources.s3 import ObjectScan, ObjectStorage


@dataclass(slots=True)
class Services:
    settings: Settings
    store: VectorStore
    index: FileIndex
    catalog: Catalog  # collection versions and roots (catalog.py)
    people: PeopleStore  # names, merges, splits and voice–face links (people_store.py)
    cache: ResultCache
    ml: MLClient
    metrics: Metrics
    decoder: DecodePool  # video/audio decoding in worker processes (started on first use)
    objects: ObjectStorage  # the S3 client of s3:// roots (sources/s3.py; built on first use)

    @classmethod
    async def open(cls, settings: Settings, store: VectorStore | None = None) -> Services:
        """Open every resource under DATA_DIR; a test may pass its own (real) store."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        index = FileIndex(settings.index_path)
        await index.open()
        catalog = Catalog(settings.catalog_path)
        await catalog.open()
        people = PeopleStore(settings.people_path)
        await people.open()
        cache = ResultCache(settings.cache_dir)
        await cache.open()
        metrics = Metrics()
        ml = MLClient(
            settings.ml_urls,
            timeout_s=settings.ml_request_timeout_s,
            retry_deadline_s=settings.ml_retry_deadline_s,
            observe=metrics.observe_ml,
            health_interval_s=settings.ml_health_interval_s,
            api_key=settings.ml_service_api_key,
        )
        ml.start()
        if store is None:
            store = open_vector_store(
                settings.data_dir, settings.qdrant_url, settings.qdrant_api_key, settings.qdrant_cluster
            )
        decoder = DecodePool(
            workers=max(1, settings.decode_workers),
            timeout_s=settings.decode_timeout_s,
            memory_limit_mb=settings.decode_memory_limit_mb or None,
        )
        return cls(
            settings=settings,
            store=store,
            index=index,
            catalog=catalog,
            people=people,
            cache=cache,
            ml=ml,
            metrics=metrics,
            decoder=decoder,
            objects=ObjectStorage(settings),
        )

    def pipeline_context(
        self,
        *,
        job_id: str,
        root: Path,
        collection: str,
        config: PipelineConfig,
        progress: JobProgress,
        control: JobControl,
        watch: WatchScan | None = None,
        objects: ObjectScan | None = None,
        partition: PartitionScan | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> PipelineContext:
        """One pipeline pass over these services: the pass's own parts given, the shared ones filled in."""
        return PipelineContext(
            job_id=job_id,
            root=root,
            collection=collection,
            config=config,
            store=self.store,
            index=self.index,
            cache=self.cache,
            ml=self.ml,
            progress=progress,
            control=control,
            decoder=self.decoder,
            people=self.people,
            media_slots=asyncio.Semaphore(max(1, self.settings.media_in_flight)),
            watch=watch,
            objects=objects,
            partition=partition,
            checkpoint=checkpoint,
        )

    async def close(self) -> None:
        await self.decoder.close()
        await self.ml.close()
        await self.store.close()
        await self.cache.close()
        await self.index.close()
        await self.catalog.close()
        await self.people.close()
