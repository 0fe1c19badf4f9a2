"""Uploads: POST /uploads (one multipart file, streamed to disk) and resumable uploads (tus 1.0: core,
creation, termination; state in `sources/tus.py`). Either way the file is sniffed (415 when it is neither
media nor a document), checksummed (blake3, the pipeline's content hash, and sha256), kept under
UPLOAD_DIR/<collection>/<id>/ and ingested by a job over that directory.

These routes are exempt from MAX_REQUEST_BYTES (app.py gives them MAX_UPLOAD_BYTES) and read their bodies
themselves (declared in `openapi_extra`, which `api/strict.py` honours).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response, status
from starlette.requests import ClientDisconnect

from orchestrator.api.access import PrincipalDep, check_write
from orchestrator.api.deps import DeletionsDep, JobsDep, ServicesDep
from orchestrator.api.jobs import accepted
from orchestrator.api.schemas import COLLECTION_NAME, UploadAccepted
from orchestrator.logs import get_logger
from orchestrator.media.sniff import Sniffed
from orchestrator.sources.intake import Intake
from orchestrator.sources.managed import new_id
from orchestrator.sources.multipart import FormError, receive_form
from orchestrator.sources.names import safe_name
from orchestrator.sources.sink import Checksums, FileSink, NotAcceptedError, TooLargeError, file_facts
from orchestrator.sources.tus import TUS_EXTENSIONS, TUS_VERSION, MetadataError, TusUpload, parse_metadata
from orchestrator.tenancy import Principal

log = get_logger(__name__)
router = APIRouter(tags=["uploads"])

FORM_OVERHEAD = 1 << 20  # multipart headers, boundaries and fields around the file, at most
# After a refusal (413, 415) this much more of the body is read and dropped, so that a client still sending
# reads the answer instead of a reset connection; a larger rest is cut off.
DRAIN_BYTES = 16 << 20
_COLLECTION = re.compile(COLLECTION_NAME)
_TUS = {"Tus-Resumable": TUS_VERSION}
_OFFSET_STREAM = "application/offset+octet-stream"


def get_intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


IntakeDep = Annotated[Intake, Depends(get_intake)]

_MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "collection": {"type": "string", "pattern": COLLECTION_NAME},
                    },
                }
            }
        },
    }
}
_OFFSET_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {_OFFSET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
    }
}


async def _collection(
    value: str | None, services: ServicesDep, deletions: DeletionsDep, who: Principal
) -> str:
    """The collection an upload goes to, when `who` may write to it (tenancy: api/access.py)."""
    name = value or services.settings.default_collection
    if _COLLECTION.fullmatch(name) is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"not a collection name: {name!r}")
    if deletions.blocks(name):
        raise HTTPException(status.HTTP_409_CONFLICT, f"collection {name} is being deleted")
    await check_write(who, services, name)
    return name


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read and drop up to DRAIN_BYTES more of a refused body (see DRAIN_BYTES)."""
    dropped = 0
    try:
        async for chunk in chunks:
            dropped += len(chunk)
            if dropped > DRAIN_BYTES:
                return
    except ClientDisconnect:
        return


async def _ingest(
    request: Request,
    intake: Intake,
    jobs: JobsDep,
    staged: Path,
    collection: str,
    upload_id: str,
    name: str,
    kind: Sniffed,
    sums: Checksums,
) -> UploadAccepted:
    """Move the received file to its place and start the job that ingests its directory."""
    path = await asyncio.to_thread(intake.area.place, staged, collection, upload_id, name)
    try:
        job = await jobs.submit(path.parent, collection, {"source": "upload"})
    except BaseException:
        await asyncio.to_thread(intake.area.remove, path.parent)
        raise
    log.info("upload_stored", upload_id=upload_id, job_id=job.id, path=str(path), mime=kind.mime)
    job_fields = accepted(job, request).model_dump()
    return UploadAccepted(
        **job_fields,
        upload_id=upload_id,
        path=str(path),
        size=(await asyncio.to_thread(path.stat)).st_size,
        media_type=kind.media_type,
        mime=kind.mime,
        blake3=sums.blake3,
        sha256=sums.sha256,
    )


@router.post(
    "/uploads",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadAccepted,
    openapi_extra=_MULTIPART_BODY,
    responses={413: {"description": "larger than MAX_UPLOAD_BYTES"}, 415: {"description": "not media"}},
)
async def upload(
    request: Request,
    services: ServicesDep,
    jobs: JobsDep,
    deletions: DeletionsDep,
    intake: IntakeDep,
    who: PrincipalDep,
) -> UploadAccepted:
    """One file (`file`) into a collection (`collection`, else DEFAULT_COLLECTION), streamed to disk."""
    limit = services.settings.max_upload_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + FORM_OVERHEAD:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"larger than MAX_UPLOAD_BYTES ({limit} bytes)"
        )
    upload_id = new_id()
    staged = intake.area.staging("posts") / upload_id
    names: list[str] = []

    def open_sink(filename: str) -> FileSink:
        names.append(safe_name(filename))
        return FileSink(staged, names[0], limit, "MAX_UPLOAD_BYTES")

    chunks = request.stream()
    try:
        form = await receive_form(chunks, request.headers.get("content-type", ""), "file", open_sink)
    except TooLargeError as exc:
        await _drain(chunks)
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from exc
    except NotAcceptedError as exc:
        await _drain(chunks)
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc)) from exc
    except FormError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except ClientDisconnect as exc:  # nothing of it is kept (receive_form removed the file)
        log.info("upload_cut_off", upload_id=upload_id)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the upload was cut off") from exc
    if form.sink is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "no file: send it in the form field 'file'"
        )
    try:
        unknown = sorted(set(form.fields) - {"collection"})
        if unknown:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown form fields: {unknown}")
        collection = await _collection(form.fields.get("collection"), services, deletions, who)
        received = await form.sink.finish()
    except NotAcceptedError as exc:
        await form.sink.abort()
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc)) from exc
    except BaseException:
        await form.sink.abort()
        raise
    if received.checksums is None:  # a new file's sink hashes it (only an appending one does not)
        raise RuntimeError("an upload's sink returned no checksums")
    return await _ingest(
        request, intake, jobs, staged, collection, upload_id, names[0], received.kind, received.checksums
    )


# --- tus 1.0 -----------------------------------------------------------------------------------------------


def _tus_version(tus_resumable: str | None) -> None:
    if tus_resumable != TUS_VERSION:
        raise HTTPException(
            status.HTTP_412_PRECONDITION_FAILED,
            f"Tus-Resumable {TUS_VERSION} is required",
            headers={**_TUS, "Tus-Version": TUS_VERSION},
        )


async def _get_upload(intake: Intake, upload_id: str, who: Principal) -> TusUpload:
    """The upload, when `who` created it (a tenant) or is the operator; else 404 as if there were none."""
    upload = await intake.tus.get(upload_id)
    if upload is None or not (who.operator or upload.tenant == who.tenant):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no upload {upload_id}", headers=_TUS)
    return upload


@router.options("/uploads/tus")
async def tus_options(services: ServicesDep) -> Response:
    """What this server speaks (tus discovery)."""
    headers = {
        **_TUS,
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": TUS_EXTENSIONS,
        "Tus-Max-Size": str(services.settings.max_upload_bytes),
    }
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=headers)


@router.post("/uploads/tus", status_code=status.HTTP_201_CREATED)
async def tus_create(
    request: Request,
    services: ServicesDep,
    deletions: DeletionsDep,
    intake: IntakeDep,
    who: PrincipalDep,
    tus_resumable: str | None = Header(default=None),
    upload_length: str | None = Header(default=None),
    upload_defer_length: str | None = Header(default=None),
    upload_metadata: str = Header(default=""),
) -> Response:
    """Create an upload: Upload-Length (bytes) and Upload-Metadata (`filename`, `collection`, base64)."""
    _tus_version(tus_resumable)
    if upload_defer_length is not None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Upload-Defer-Length is not supported", headers=_TUS)
    if upload_length is None or not upload_length.isdigit() or int(upload_length) == 0:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "Upload-Length must be a positive integer", headers=_TUS
        )
    limit = services.settings.max_upload_bytes
    if int(upload_length) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"larger than MAX_UPLOAD_BYTES ({limit} bytes)", headers=_TUS
        )
    try:
        metadata = parse_metadata(upload_metadata)
    except MetadataError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc), headers=_TUS) from exc
    collection = await _collection(metadata.get("collection"), services, deletions, who)
    name = safe_name(metadata.get("filename", ""))
    upload = await intake.tus.create(int(upload_length), name, collection, who.tenant)
    log.info("tus_created", upload_id=upload.id, length=upload.length, collection=collection)
    location = str(request.url_for("tus_upload", upload_id=upload.id))
    return Response(status_code=status.HTTP_201_CREATED, headers={**_TUS, "Location": location})


@router.head("/uploads/tus/{upload_id}")
async def tus_head(
    upload_id: str,
    request: Request,
    jobs: JobsDep,
    intake: IntakeDep,
    who: PrincipalDep,
    tus_resumable: str | None = Header(default=None),
) -> Response:
    """Upload-Offset: the bytes stored (where the next PATCH starts)."""
    _tus_version(tus_resumable)
    upload = await _get_upload(intake, upload_id, who)
    if upload.complete and upload.result is None:  # its completion was cut off (a crash): redo it
        async with intake.tus.lock(upload_id):
            upload = await _complete(request, intake, jobs, await _get_upload(intake, upload_id, who))
    headers = {
        **_TUS,
        "Upload-Offset": str(upload.offset),
        "Upload-Length": str(upload.length),
        "Cache-Control": "no-store",
    }
    return Response(status_code=status.HTTP_200_OK, headers=headers)


@router.get("/uploads/tus/{upload_id}", name="tus_upload")
async def tus_status(
    upload_id: str, request: Request, jobs: JobsDep, intake: IntakeDep, who: PrincipalDep
) -> dict[str, Any]:
    """The upload as JSON; once complete, `result` is what POST /uploads answers (job, path, checksums)."""
    upload = await _get_upload(intake, upload_id, who)
    if upload.complete and upload.result is None:
        async with intake.tus.lock(upload_id):
            upload = await _complete(request, intake, jobs, await _get_upload(intake, upload_id, who))
    return {
        "upload_id": upload.id,
        "length": upload.length,
        "offset": upload.offset,
        "name": upload.name,
        "collection": upload.collection,
        "complete": upload.complete,
        "result": upload.result,
    }


@router.patch("/uploads/tus/{upload_id}", openapi_extra=_OFFSET_BODY)
async def tus_patch(
    upload_id: str,
    request: Request,
    jobs: JobsDep,
    intake: IntakeDep,
    who: PrincipalDep,
    tus_resumable: str | None = Header(default=None),
    upload_offset: str | None = Header(default=None),
    content_type: str | None = Header(default=None),
) -> Response:
    """Append the body at Upload-Offset (409 when that is not the stored offset). The last bytes complete
    the upload: sniffed (415: not media, the upload removed), checksummed, stored and ingested."""
    _tus_version(tus_resumable)
    if (content_type or "").split(";")[0].strip().lower() != _OFFSET_STREAM:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"Content-Type must be {_OFFSET_STREAM}", headers=_TUS
        )
    if upload_offset is None or not upload_offset.isdigit():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Upload-Offset must be an integer", headers=_TUS)
    await _get_upload(intake, upload_id, who)
    lock = intake.tus.lock(upload_id)
    try:
        async with asyncio.timeout(10.0):  # a PATCH cut off a moment ago is still saving what it got
            await lock.acquire()
    except TimeoutError as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "another PATCH of this upload runs", headers=_TUS
        ) from exc
    try:
        upload = await _get_upload(intake, upload_id, who)
        if int(upload_offset) != upload.offset:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"Upload-Offset {upload_offset} is not the upload's offset {upload.offset}",
                headers={**_TUS, "Upload-Offset": str(upload.offset)},
            )
        if not upload.complete:
            await _append(request, intake, upload)
        if upload.complete and upload.result is None:
            upload = await _complete(request, intake, jobs, upload)
    finally:
        lock.release()
    return Response(
        status_code=status.HTTP_204_NO_CONTENT, headers={**_TUS, "Upload-Offset": str(upload.offset)}
    )


async def _append(request: Request, intake: Intake, upload: TusUpload) -> None:
    """Stream the body onto the upload's bytes; what came is kept (and its offset recorded) however the
    body ends: complete, cut off, or longer than Upload-Length (400)."""
    sink = FileSink(
        intake.tus.data_path(upload.id),
        upload.name,
        upload.length - upload.offset,
        "Upload-Length",
        append_at=upload.offset,
    )
    try:
        await sink.open()
    except BaseException:
        await sink.abort()  # appending: the upload's bytes stay
        raise
    too_long = False
    try:
        async for chunk in request.stream():
            await sink.write(chunk)
    except TooLargeError:
        too_long = True
    except ClientDisconnect:
        log.info("tus_patch_cut_off", upload_id=upload.id, received=sink.received)
    finally:
        upload.offset = await sink.save_partial()
        await intake.tus.save(upload)
    if too_long:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "more bytes than Upload-Length", headers=_TUS)


async def _complete(request: Request, intake: Intake, jobs: JobsDep, upload: TusUpload) -> TusUpload:
    """Sniff, checksum, place and ingest a complete upload (again after a crash: every step is
    idempotent); its result is recorded. Holds the upload's lock."""
    data = intake.tus.data_path(upload.id)
    placed = intake.area.directory(upload.collection, upload.id) / upload.name
    source = data if await asyncio.to_thread(data.exists) else placed
    try:
        kind, sums = await asyncio.to_thread(file_facts, source, upload.name)
    except NotAcceptedError as exc:
        await intake.tus.delete(upload.id)
        await asyncio.to_thread(intake.area.remove, placed.parent)
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc), headers=_TUS) from exc
    except FileNotFoundError as exc:
        raise HTTPException(status.HTTP_410_GONE, f"the bytes of upload {upload.id} are gone") from exc
    result = await _ingest(request, intake, jobs, data, upload.collection, upload.id, upload.name, kind, sums)
    upload.result = result.model_dump()
    await intake.tus.save(upload)
    return upload


@router.delete("/uploads/tus/{upload_id}", status_code=status.HTTP_204_NO_CONTENT)
async def tus_delete(
    upload_id: str, intake: IntakeDep, who: PrincipalDep, tus_resumable: str | None = Header(default=None)
) -> Response:
    """Termination: an upload's bytes and state go (a completed upload's stored file and points stay)."""
    _tus_version(tus_resumable)
    await _get_upload(intake, upload_id, who)
    async with intake.tus.lock(upload_id):
        await intake.tus.delete(upload_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=_TUS)
