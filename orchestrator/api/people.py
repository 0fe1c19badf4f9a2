"""Routes for people: the face clusters ("person-…") and voice clusters ("voice-…") of a collection."""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, status

from orchestrator.api.deps import ServicesDep
from orchestrator.api.signing import sign_url
from orchestrator.people import FACE_SUFFIX, VOICE_SUFFIX

router = APIRouter(tags=["people"])

_PAGE = 1024


@router.get("/people")
async def people(
    services: ServicesDep, collection: str | None = Query(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
) -> dict[str, Any]:
    """Every cluster with how often it appears (faces or speaker turns), in how many chunks, and where it
    is first seen (a chunk id whose thumbnail shows it; search with `person=<id>` finds its chunks).
    Speaker–face linking: a voice names the person most often alone on screen while it speaks
    (`person`, seen `linked` times); a person lists the voices linked to it (`voices`)."""
    name = collection or services.settings.default_collection
    physical = await services.catalog.resolve(name)  # the version searches read (catalog.py)
    if not await services.store.collection_exists(physical):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection {name}")
    clusters: dict[str, dict[str, Any]] = {}
    for kind, suffix in (("face", FACE_SUFFIX), ("voice", VOICE_SUFFIX)):
        companion = f"{physical}{suffix}"
        if not await services.store.collection_exists(companion):
            continue
        offset: str | None = None
        while True:
            points, offset = await services.store.scroll(companion, None, _PAGE, offset)
            for p in points:
                cid = str(p.payload.get("cluster"))
                entry = clusters.setdefault(
                    cid,
                    {"id": cid, "kind": kind, "count": 0, "chunks": set(), "first": None, "seen": Counter()},
                )
                entry["count"] += 1
                if p.payload.get("person"):
                    entry["seen"][str(p.payload["person"])] += 1
                entry["chunks"].add(p.payload.get("chunk_id"))
                seen = (p.payload.get("content_hash"), p.payload.get("start_s") or 0.0)
                if entry["first"] is None or seen < entry["first"][0]:
                    entry["first"] = (seen, p.payload.get("chunk_id"), p.payload.get("start_s"))
            if offset is None:
                break
    links: dict[str, str] = {}  # voice -> person
    for entry in clusters.values():
        together: Counter[str] = entry.pop("seen")
        if entry["kind"] == "voice":
            person, linked = together.most_common(1)[0] if together else (None, 0)
            entry["person"], entry["linked"] = person, linked
            if person:
                links[entry["id"]] = person
    for entry in clusters.values():
        if entry["kind"] == "face":
            entry["voices"] = sorted(v for v, person in links.items() if person == entry["id"])
    out = []
    for entry in sorted(clusters.values(), key=lambda e: (e["kind"], -e["count"], e["id"])):
        _, chunk_id, start_s = entry.pop("first")
        entry["chunks"] = len(entry["chunks"])
        entry["example"] = {
            "chunk_id": chunk_id,
            "start_s": start_s,
            # Signed when API_KEY is set (api/signing.py): an <img> cannot send the key.
            "thumbnail_url": sign_url(
                f"/media/{chunk_id}/thumbnail?collection={quote(name)}",
                services.settings.api_key,
                services.settings.media_url_ttl_s,
            ),
        }
        out.append(entry)
    return {"collection": name, "people": out}
