"""Collection versions at work: the version a job finds (registered on first sight), a version's data
deleted, and the retention of replaced versions. The decisions are `manifest.compare`'s; the records are
the catalog's (catalog.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchestrator.catalog import Catalog, CollectionVersion
from orchestrator.clients.vectors import VectorStore
from orchestrator.file_index import FileIndex
from orchestrator.keywords import LEGACY_ANALYZER
from orchestrator.logs import get_logger
from orchestrator.manifest import Manifest, legacy_signature, with_new_plans
from orchestrator.people import companions
from orchestrator.people_store import PeopleStore

log = get_logger(__name__)


async def ensure_current(
    store: VectorStore, catalog: Catalog, collection: str, now: Manifest, models: dict[str, dict[str, Any]]
) -> CollectionVersion:
    """The collection's current version; a collection seen for the first time becomes version 1 under its
    own name. One that already has points (written before versions existed) is taken as built with
    today's models only when its points say so (their `models` value), else as built with unknown ones
    (rebuilt)."""
    current = await catalog.current(collection)
    if current is not None:
        widened = with_new_plans(current.manifest, now)
        if widened is not None:  # e.g. documents, read since: recorded, nothing to rebuild
            await catalog.set_manifest(collection, current.version, widened)
            return replace(current, manifest=widened)
        return current
    manifest = now
    if await store.collection_exists(collection) and await store.count(collection) > 0:
        page, _ = await store.scroll(collection, None, 1, None)
        built_with = page[0].payload.get("models") if page else None
        # Its keyword vectors are the legacy analysis: the first job rebuilds them (manifest.compare).
        manifest = replace(now, keywords=LEGACY_ANALYZER, schema="")
        if built_with not in (legacy_signature(models), now.digest()):
            manifest = replace(manifest, unknown=True)
    return await catalog.register(collection, manifest)


async def drop_version(
    store: VectorStore, index: FileIndex, catalog: Catalog, people: PeopleStore, version: CollectionVersion
) -> None:
    """Delete a version's points, people and file-index rows, then its catalog row (a crash in between
    leaves the row, and the next retention or delete finishes the job)."""
    for name in (version.physical, *companions(version.physical)):
        if await store.collection_exists(name):
            await store.delete_collection(name)
    await index.drop_collection(version.physical)
    await people.drop(version.physical)
    await catalog.forget_version(version.collection, version.version)
    log.info("collection_version_deleted", collection=version.collection, version=version.version)


async def retire(
    store: VectorStore, index: FileIndex, catalog: Catalog, people: PeopleStore, collection: str, keep: int
) -> int:
    """Delete replaced versions beyond the newest `keep`; returns how many were deleted."""
    retired = [v for v in await catalog.versions(collection) if v.state == "retired"]
    retired.sort(key=lambda v: v.version, reverse=True)
    for version in retired[keep:]:
        await drop_version(store, index, catalog, people, version)
    return len(retired[keep:])
