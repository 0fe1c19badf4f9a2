"""Which collections a request may touch (tenancy.py): the one place the routes ask.

A tenant reads only collections it owns; any other name answers 404 exactly as a collection that does not
exist (a tenant learns nothing of another's names or data). Writing (a job, an upload, a stream) to a name
nobody owns and that does not exist yet makes it the tenant's; one that exists already and is not the
tenant's is 409. The operator (API_KEY, or no keys at all) may touch every collection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, status
from starlette.requests import HTTPConnection

from orchestrator.jobs import InvalidTransitionError, Job, JobNotFoundError
from orchestrator.people import companions
from orchestrator.services import Services
from orchestrator.tenancy import OPERATOR, Principal

if TYPE_CHECKING:
    from orchestrator.job_manager import JobManager


def principal(conn: HTTPConnection) -> Principal:
    """Who the request is (set by `require_api_key`; the operator where no key is needed)."""
    found = getattr(conn.state, "principal", None)
    return found if isinstance(found, Principal) else OPERATOR


def _request_principal(request: Request) -> Principal:
    return principal(request)


PrincipalDep = Annotated[Principal, Depends(_request_principal)]


def _base(collection: str) -> str:
    """A people companion (`<name>_faces`, `_voices`) belongs to its collection's owner."""
    for base in (collection.removesuffix(suffix) for suffix in ("_faces", "_voices")):
        if base != collection and collection in companions(base):
            return base
    return collection


async def can_read(services: Services, who: Principal, collection: str) -> bool:
    if who.operator:
        return True
    return await services.catalog.owner(_base(collection)) == who.tenant


async def check_read(who: Principal, services: Services, collection: str) -> None:
    """404 unless `who` may read `collection` (as if it did not exist)."""
    if not await can_read(services, who, collection):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no collection {collection}")


async def check_write(who: Principal, services: Services, collection: str) -> None:
    """Claims `collection` for `who`'s tenant when nobody has it yet; 409 when it is another's."""
    if who.operator or who.tenant is None:
        return
    catalog = services.catalog
    exists = await catalog.current(collection) is not None or await services.store.collection_exists(
        collection
    )
    if await catalog.claim(collection, who.tenant, exists) != who.tenant:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"collection name {collection} is taken: choose another name"
        )


async def readable(who: Principal, services: Services, collections: list[str]) -> list[str]:
    """The collections of `collections` that `who` may read (for listings)."""
    if who.operator or who.tenant is None:
        return collections
    owned = await services.catalog.owned(who.tenant)
    return [c for c in collections if _base(c) in owned]


async def readable_job(jobs: JobManager, job_id: str, services: Services, who: Principal) -> Job | None:
    """The job (a stream too), when `who` may read its collection; None when there is none for it."""
    try:
        job = await jobs.get(job_id)
    except JobNotFoundError:
        return None
    return job if await can_read(services, who, job.collection) else None


async def transition(action: Callable[[str], Awaitable[Job]], job_id: str) -> Job:
    """Pause, resume or cancel a job the caller found readable; 409 when its state does not allow it."""
    try:
        return await action(job_id)
    except InvalidTransitionError as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, {"detail": str(exc), "state": exc.current.value}
        ) from exc


def require_operator(request: Request) -> None:
    """Routes about the whole service (metrics) are the operator's."""
    if not principal(request).operator:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only the operator's key (API_KEY) may read this")
