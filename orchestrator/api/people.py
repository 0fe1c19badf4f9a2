"""Routes for people (people_view.py, identities.py, people_store.py): list, one person's appearances,
rename, merge, split, undo; the chunk payloads follow every change (people_sync.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, status

from orchestrator.api.access import PrincipalDep, check_read
from orchestrator.api.deps import ServicesDep
from orchestrator.api.schemas import PersonMerge, PersonPatch, PersonSplit
from orchestrator.api.signing import sign_url
from orchestrator.identities import Identities
from orchestrator.people_store import NothingToUndoError
from orchestrator.people_sync import sync_people
from orchestrator.people_view import Person, appearances, load_people, order_key, person_json
from orchestrator.search import media_urls
from orchestrator.services import Services
from orchestrator.tenancy import Principal

router = APIRouter(tags=["people"])

_COLLECTION = r"^[A-Za-z0-9_-]{1,64}$"
_ID = r"^[A-Za-z0-9_-]{1,80}$"


async def _physical(services: Services, who: Principal, collection: str | None) -> tuple[str, str]:
    name = collection or services.settings.default_collection
    await check_read(who, services, name)
    physical = await services.catalog.resolve(name)  # the version searches read (catalog.py)
    if not await services.store.collection_exists(physical):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection {name}")
    return name, physical


async def _people(services: Services, physical: str) -> tuple[dict[str, Person], Identities]:
    return await load_people(services.people, physical)


def _thumbnail(services: Services, name: str, person: Person) -> str:
    # Signed when API_KEY is set (api/signing.py): an <img> cannot send the key.
    url = f"/media/{person.count.first_chunk}/thumbnail?collection={quote(name)}"
    return sign_url(url, services.settings.signing_key, services.settings.media_url_ttl_s)


def _one(people: dict[str, Person], person_id: str) -> Person:
    person = people.get(person_id)
    if person is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no person {person_id}")
    return person


async def _changed(services: Services, physical: str, clusters: list[str], relink: bool = True) -> None:
    """Links again when rejections may have changed (a split rejects one, an undo may take one back;
    links read only evidence and rejections, so a rename or a merge cannot change them), then rewrite the
    chunks of these clusters and of every voice whose link changed with the people as they are now."""
    relinked = await services.people.refresh_links(physical) if relink else set()
    ids = await services.people.identities(physical)
    await sync_people(services.store, physical, ids, sorted({*clusters, *relinked}))


@router.get("/people")
async def list_people(
    who: PrincipalDep,
    services: ServicesDep,
    collection: str | None = Query(None, pattern=_COLLECTION),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    name: str | None = Query(None, max_length=200, description="a part of the name (case-insensitive)"),
) -> dict[str, Any]:
    """The collection's people: named first, then the most often seen or heard. A face cluster is a person
    until merged; a voice is its linked face's person (co-occurrence, links.py) or its own."""
    coll, physical = await _physical(services, who, collection)
    people, ids = await _people(services, physical)
    found = sorted(people.values(), key=order_key)
    if name:
        folded = name.casefold()
        found = [p for p in found if p.name and folded in p.name.casefold()]
    page = found[offset : offset + limit]
    return {
        "collection": coll,
        "total": len(found),
        "next_offset": offset + limit if len(found) > offset + limit else None,
        "people": [person_json(p, ids, _thumbnail(services, coll, p)) for p in page],
    }


@router.get("/people/{person_id}")
async def get_person(
    who: PrincipalDep,
    person_id: str,
    services: ServicesDep,
    collection: str | None = Query(None, pattern=_COLLECTION),
) -> dict[str, Any]:
    """One person with every file they are seen or heard in, as time ranges."""
    coll, physical = await _physical(services, who, collection)
    people, ids = await _people(services, physical)
    person = _one(people, person_id)
    body = person_json(person, ids, _thumbnail(services, coll, person))
    found = await appearances(services.store, physical, person.id)
    settings = services.settings
    for f in found:
        for r in f["ranges"]:
            # Signed (api/signing.py): an <img> or a <video> cannot send the key.
            thumbnail, stream = media_urls(r["chunk_id"], coll)
            r["thumbnail_url"] = sign_url(thumbnail, settings.signing_key, settings.media_url_ttl_s)
            r["stream_url"] = sign_url(stream, settings.signing_key, settings.media_url_ttl_s)
    body["appearances"] = found
    return body


@router.patch("/people/{person_id}")
async def rename_person(
    who: PrincipalDep,
    person_id: str,
    body: PersonPatch,
    services: ServicesDep,
    collection: str | None = Query(None, pattern=_COLLECTION),
) -> dict[str, Any]:
    coll, physical = await _physical(services, who, collection)
    people, _ = await _people(services, physical)
    person = _one(people, person_id)
    await services.people.rename(physical, person.id, (body.name or "").strip() or None)
    await _changed(services, physical, person.clusters, relink=False)
    people, ids = await _people(services, physical)
    return person_json(people[person.id], ids, _thumbnail(services, coll, people[person.id]))


@router.post("/people/{person_id}/merge")
async def merge_people(
    who: PrincipalDep,
    person_id: str,
    body: PersonMerge,
    services: ServicesDep,
    collection: str | None = Query(None, pattern=_COLLECTION),
) -> dict[str, Any]:
    """Merge the given people into this one (its id and name kept; an unnamed one takes the first name)."""
    coll, physical = await _physical(services, who, collection)
    people, _ = await _people(services, physical)
    target = _one(people, person_id)
    others = [_one(people, o) for o in dict.fromkeys(body.people) if o != target.id]
    if not others:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "nothing to merge: name other people")
    clusters = [c for o in others for c in o.clusters]
    await services.people.merge(physical, target.id, clusters, [o.id for o in others])
    await _changed(services, physical, [*target.clusters, *clusters], relink=False)
    people, ids = await _people(services, physical)
    return person_json(people[target.id], ids, _thumbnail(services, coll, people[target.id]))


@router.post("/people/{person_id}/split")
async def split_person(
    who: PrincipalDep,
    person_id: str,
    body: PersonSplit,
    services: ServicesDep,
    collection: str | None = Query(None, pattern=_COLLECTION),
) -> dict[str, Any]:
    """Move some of this person's clusters to a new person. An automatically linked voice moved out is
    remembered as "not this person"."""
    coll, physical = await _physical(services, who, collection)
    people, ids = await _people(services, physical)
    person = _one(people, person_id)
    moved = list(dict.fromkeys(body.clusters))
    strangers = [c for c in moved if c not in person.clusters]
    if strangers:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"not clusters of {person.id}: {', '.join(strangers)}"
        )
    if len(moved) == len(person.clusters):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "a split must leave the person a cluster")
    new = await services.people.split(physical, person.id, moved, ids)
    await _changed(services, physical, person.clusters)
    people, ids = await _people(services, physical)
    return {
        "person": person_json(people[person.id], ids, _thumbnail(services, coll, people[person.id])),
        "new": person_json(people[new], ids, _thumbnail(services, coll, people[new])),
    }


@router.post("/people/undo")
async def undo_people(
    who: PrincipalDep, services: ServicesDep, collection: str | None = Query(None, pattern=_COLLECTION)
) -> dict[str, Any]:
    """Undo the collection's last rename, merge or split."""
    _, physical = await _physical(services, who, collection)
    before, _ = await _people(services, physical)
    try:
        undone = await services.people.undo(physical)
    except NothingToUndoError:
        raise HTTPException(status.HTTP_409_CONFLICT, "nothing to undo") from None
    after, _ = await _people(services, physical)
    # Every cluster whose person changed, either way.
    clusters = {c for p in before.values() for c in p.clusters}
    was = {c: p.id for p in before.values() for c in p.clusters}
    now = {c: p.id for p in after.values() for c in p.clusters}
    names_before = {p.id: p.name for p in before.values()}
    names_after = {p.id: p.name for p in after.values()}
    touched = [
        c
        for c in clusters
        if was.get(c) != now.get(c) or names_before.get(was[c]) != names_after.get(now.get(c, ""))
    ]
    await _changed(services, physical, touched)
    return {"undone": {"action": undone.action, "person": undone.person}}
