"""Routes for collections: list them, show one (its versions, the models they were built with, what is
stale against the ML service now, the re-analysis in progress), start a re-analysis, delete one or one
of its replaced versions.

A collection's companions (`<name>_faces`, `<name>_voices`) and its versions' store collections
(`<name>__v<n>`, catalog.py) are shown with it, not as collections. A collection an active job writes to
cannot be deleted (409): the job would leave file-index rows behind that make the next ingest skip files
whose points are gone. Cancel the job first."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from orchestrator.api.access import PrincipalDep, check_read, readable
from orchestrator.api.deps import DeletionsDep, JobsDep, ServicesDep, same_data
from orchestrator.api.jobs import accepted
from orchestrator.api.schemas import COLLECTION_NAME, JobAccepted, ReanalyzeBody
from orchestrator.catalog import CollectionVersion
from orchestrator.clients.ml import MLReplicasDisagreeError, MLRequestError, MLUnavailableError
from orchestrator.jobs import REANALYZE
from orchestrator.manifest import compare, current_manifest
from orchestrator.people import FACE_SUFFIX, VOICE_SUFFIX, companions, is_companion
from orchestrator.services import Services
from orchestrator.versions import drop_version

router = APIRouter(tags=["collections"])

# How long GET /collections/{name} waits for the ML service's capabilities (to tell what is stale).
CAPABILITIES_DEADLINE_S = 3.0


async def _counts(services: Services, physical: str, names: set[str]) -> dict[str, int]:
    out = {"points": await services.store.count(physical) if physical in names else 0}
    for key, suffix in (("faces", FACE_SUFFIX), ("voices", VOICE_SUFFIX)):
        if f"{physical}{suffix}" in names:
            out[key] = await services.store.count(f"{physical}{suffix}")
    return out


@router.get("/collections")
async def collections(services: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    names = set(await services.store.list_collections())
    owned = await services.catalog.physical_names()
    shown: dict[str, str] = {}  # collection -> the physical collection that answers for it
    for physical, (collection, _, state) in owned.items():
        if state == "current":
            shown[collection] = physical
    for n in names:  # collections from before versions, and companions of nothing known
        if n in owned or (is_companion(n) and n.rsplit("_", 1)[0] in names):
            continue
        shown.setdefault(n, n)
    visible = await readable(who, services, sorted(shown))
    out = [{"name": n, **await _counts(services, shown[n], names)} for n in visible]
    return {"collections": out}


async def _version_of(services: Services, name: str) -> None:
    """404 for a name that is a version's store collection, not a collection."""
    owner = (await services.catalog.physical_names()).get(name)
    if owner is not None and owner[0] != name:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"{name} is version {owner[1]} of collection {owner[0]}: use /collections/{owner[0]}",
        )


@router.get("/collections/{name}")
async def collection(name: str, services: ServicesDep, jobs: JobsDep, who: PrincipalDep) -> dict[str, Any]:
    await check_read(who, services, name)
    await _version_of(services, name)
    versions = await services.catalog.versions(name)
    names = set(await services.store.list_collections())
    if not versions and name not in names:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection {name}")
    current = next((v for v in versions if v.state == "current"), None)
    physical = current.physical if current is not None else name
    stale: dict[str, Any] | None = None
    stale_error: str | None = None
    if current is not None:
        try:
            caps = await services.ml.capabilities(deadline_s=CAPABILITIES_DEADLINE_S)
            stale = compare(current.manifest, current_manifest(caps.models, services.settings)).to_json()
        except (MLUnavailableError, MLRequestError, MLReplicasDisagreeError) as exc:
            stale_error = f"cannot ask the ML service what it runs: {exc}"
    active = [j for j in jobs.live() if j.collection == name and j.active]
    return {
        "name": name,
        **await _counts(services, physical, names),
        "version": current.version if current is not None else None,
        "models": current.manifest.models if current is not None else None,
        "plans": current.manifest.plans if current is not None else None,
        "stale": stale,
        "stale_error": stale_error,
        "versions": [{**v.to_json(), **await _counts(services, v.physical, names)} for v in versions],
        "reanalysis": [
            j.status(max_errors=3)
            for j in active
            if j.kind == REANALYZE or (j.progress.reanalysis.get("kind") not in (None, "current"))
        ],
        "jobs": [j.id for j in active],
    }


@router.post(
    "/collections/{name}/reanalyze", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted
)
async def reanalyze(
    name: str,
    request: Request,
    services: ServicesDep,
    jobs: JobsDep,
    deletions: DeletionsDep,
    who: PrincipalDep,
    body: ReanalyzeBody | None = None,
) -> JobAccepted:
    """Bring the collection to the ML service's models now (see GET: `stale`), and run `tasks` again
    whatever the cache holds. A job like any other: status, events, pause, resume, cancel."""
    await check_read(who, services, name)
    await _version_of(services, name)
    if not re.fullmatch(COLLECTION_NAME, name):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid collection name {name!r}")
    if not await services.catalog.versions(name) and not await services.store.collection_exists(name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection {name}")
    if deletions.blocks(name):
        raise HTTPException(status.HTTP_409_CONFLICT, f"collection {name} is being deleted")
    tasks = [str(t) for t in body.tasks] if body is not None and body.tasks else None
    job = await jobs.submit_reanalysis(name, tasks)
    return accepted(job, request)


def _writers(jobs: JobsDep, name: str) -> None:
    writers = [j.id for j in jobs.live() if j.active and same_data(name, j.collection)]
    if writers:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {
                "detail": f"collection {name} is being written by active jobs; cancel them first",
                "jobs": writers,
            },
        )


@router.delete("/collections/{name}")
async def delete_collection(
    name: str, services: ServicesDep, jobs: JobsDep, deletions: DeletionsDep, who: PrincipalDep
) -> dict[str, Any]:
    """The collection: every version (points, faces and voices, file-index rows) and its record."""
    await check_read(who, services, name)
    await _version_of(services, name)
    versions = await services.catalog.versions(name)
    if not versions and name not in await services.store.list_collections():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection {name}")
    _writers(jobs, name)
    if deletions.blocks(name):
        raise HTTPException(status.HTTP_409_CONFLICT, f"collection {name} is already being deleted")
    deletions.names.add(name)  # no job for it starts until the points and the index rows are gone
    try:
        for version in versions:
            await drop_version(services.store, services.index, services.catalog, services.people, version)
        for leftover in (name, *companions(name)):  # a collection from before versions
            if await services.store.collection_exists(leftover):
                await services.store.delete_collection(leftover)
        await services.index.drop_collection(name)
        await services.people.drop(name)
        await services.catalog.forget(name)
    finally:
        deletions.names.discard(name)
    return {"deleted": name}


@router.delete("/collections/{name}/versions/{version}")
async def delete_version(
    name: str, version: int, services: ServicesDep, jobs: JobsDep, deletions: DeletionsDep, who: PrincipalDep
) -> dict[str, Any]:
    """A replaced (retired) version, or one being built that no job builds now. The current one answers
    searches: it goes only with the collection."""
    await check_read(who, services, name)
    found: CollectionVersion | None = next(
        (v for v in await services.catalog.versions(name) if v.version == version), None
    )
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"collection {name} has no version {version}")
    if found.state == "current":
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"version {version} is the current one; DELETE /collections/{name}"
        )
    _writers(jobs, name)
    if deletions.blocks(name):
        raise HTTPException(status.HTTP_409_CONFLICT, f"collection {name} is being deleted")
    await drop_version(services.store, services.index, services.catalog, services.people, found)
    return {"deleted": name, "version": version}
