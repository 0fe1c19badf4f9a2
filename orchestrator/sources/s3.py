"""Object storage (AWS S3 or an S3-compatible store: MinIO, Ceph, R2) as a source of files.

`ObjectStorage` is the one client of a process (built in `services.py`): endpoint, region and credentials
come from the settings (S3_*), never from a request; callers read only buckets named in
S3_ALLOWED_BUCKETS (`security.resolve_s3_root`, the object-store twin of ALLOWED_ROOTS). boto3 is imported
when the first s3 root or object is used (its import costs ~1.5 s: a deployment without object storage
never pays it). Every method that talks to the store blocks: call it from a thread.

Errors are said plainly and split by whom they concern: `ObjectStoreError` (unreachable endpoint, refused
or expired credentials, a missing or forbidden bucket: the job fails with it) and `ObjectError` (one
object changed while it was read, vanished, or may not be read: that file fails, the job goes on).

Change detection without reading: an object is unchanged when its size, LastModified (`mtime_ns`) and
ETag are the ones indexed; the ETag is kept in the index's inode column as a stable 63-bit number
(`etag_inode`). A download asks for exactly the listed version (If-Match with the listed ETag) and checks
the answer's ETag and length, so an object overwritten between listing and download fails with "file
changed while it was being read" (the wording of a local file's, and its metrics class) instead of being
indexed under the old listing's stat. Per-object reasons start like a local file's ("cannot read: ...").
"""

from __future__ import annotations

import calendar
import hashlib
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.config import Settings
from orchestrator.sources.roots import S3Prefix
from orchestrator.sources.spool import Spool

# How an object overwritten between its listing and its download fails (the wording of a local file's).
_CHANGED = "file changed while it was being read: the object was overwritten after it was listed"
_BLOCK = 1 << 20  # bytes per read of an object's body: memory per download stays at one block
# A Range header passed through to the store: one range (S3 answers several with the whole object).
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# Store error codes that concern the job's access as a whole, not one object.
_ACCESS_CODES = {
    "InvalidAccessKeyId": "the store does not know the access key (S3_ACCESS_KEY_ID)",
    "SignatureDoesNotMatch": "the secret key does not match the access key (S3_SECRET_ACCESS_KEY)",
    "ExpiredToken": "the credentials have expired",
    "TokenRefreshRequired": "the credentials have expired",
    "RequestExpired": "the request expired (is this machine's clock right?)",
    "RequestTimeTooSkewed": "this machine's clock differs too much from the store's",
    "InvalidToken": "the session token is not valid",
}


class ObjectStoreError(Exception):
    """The store cannot be used for this root: the job fails with this reason."""


class ObjectError(Exception):
    """One object could not be read: that file fails with this reason; the job goes on."""


class RangeNotSatisfiableError(ObjectError):
    """A Range outside the object (HTTP 416)."""

    def __init__(self, size: int | None) -> None:
        super().__init__("range not satisfiable")
        self.size = size


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    size: int
    mtime_ns: int  # LastModified
    etag: str  # as the store sends it, quotes included


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a "directory" listing (ListObjectsV2 with Delimiter "/"): at most 1000 entries."""

    objects: list[ListedObject]
    prefixes: list[str]  # the "subdirectories": key prefixes ending in "/"
    next_token: str | None


@dataclass(frozen=True, slots=True)
class LocalCopy:
    """An object downloaded to a local file (its size and mtime are the object's)."""

    path: Path
    device: int
    inode: int


@dataclass(slots=True)
class ObjectStream:
    """An object (or one range of it) being read for an HTTP answer; `close` it when done."""

    status: int  # 200, or 206 for a range
    headers: dict[str, str]
    body: Any  # botocore StreamingBody

    def read(self) -> bytes:
        """The next block (b"" at the end). Blocking."""
        data: bytes = self.body.read(_BLOCK)
        return data

    def close(self) -> None:
        self.body.close()


@dataclass(frozen=True, slots=True)
class ObjectScan:
    """What an object-store pass gives its scanner (pipeline/stages/scan_s3.py)."""

    prefix: S3Prefix
    storage: ObjectStorage
    spool: Spool  # where changed objects are downloaded for prepare, bounded (S3_SPOOL_BYTES)
    downloads: int  # downloads in flight at most (S3_DOWNLOAD_WORKERS)


def etag_inode(etag: str) -> int:
    """A stable 63-bit number for an ETag (the file index's inode column of an object)."""
    return int.from_bytes(hashlib.blake2b(etag.encode(), digest_size=8).digest(), "big") >> 1


def _ns(when: datetime) -> int:
    return calendar.timegm(when.utctimetuple()) * 1_000_000_000 + when.microsecond * 1000


def _code(exc: Exception) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


class ObjectStorage:
    """The process's S3 client (see the module)."""

    def __init__(self, settings: Settings) -> None:
        self._endpoint = settings.s3_endpoint_url or None
        self._region = settings.s3_region or None
        self._key_id = settings.s3_access_key_id or None
        self._secret = settings.s3_secret_access_key or None
        self._pool = settings.s3_download_workers + 4
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return self._endpoint or "AWS S3"

    def client(self) -> Any:
        """The boto3 client, built on first use (blocking: imports boto3, reads its service models)."""
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client

    def _build(self) -> Any:
        import boto3  # here, not at the top: see the module's docstring
        from botocore.config import Config

        if (self._key_id is None) != (self._secret is None):
            raise ObjectStoreError("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are set together or not at all")
        config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=self._pool,
            # An S3-compatible server is addressed by path: its buckets have no DNS names of their own.
            s3={"addressing_style": "path" if self._endpoint else "auto"},
        )
        session = boto3.session.Session()  # not boto3's module-level default session: nothing shared
        return session.client(
            "s3",
            endpoint_url=self._endpoint,
            region_name=self._region,
            aws_access_key_id=self._key_id,
            aws_secret_access_key=self._secret,
            config=config,
        )

    def _store_error(self, exc: Exception, what: str) -> ObjectStoreError:
        """The job's reason for an error of the store as a whole."""
        from botocore import exceptions as bex

        if isinstance(exc, bex.NoCredentialsError):
            return ObjectStoreError(f"{what}: no credentials (set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY)")
        if isinstance(exc, bex.EndpointConnectionError | bex.ConnectTimeoutError):
            return ObjectStoreError(f"{what}: unreachable: cannot connect to {self.where}")
        if isinstance(exc, bex.ReadTimeoutError):
            return ObjectStoreError(f"{what}: unreachable: {self.where} did not answer in time")
        if isinstance(exc, bex.ClientError):
            code, status = _code(exc)
            if code in _ACCESS_CODES:
                return ObjectStoreError(f"{what}: credentials refused: {_ACCESS_CODES[code]} ({code})")
            if code == "NoSuchBucket":
                return ObjectStoreError(f"{what}: the bucket does not exist ({code})")
            if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
                return ObjectStoreError(f"{what}: access denied: the credentials may not list it ({code})")
            message = str(exc.response.get("Error", {}).get("Message", ""))[:300]
            return ObjectStoreError(f"{what}: the store answered {code or status}: {message}")
        return ObjectStoreError(f"{what}: {type(exc).__name__}: {exc}")

    def list_page(self, prefix: S3Prefix, key_prefix: str, token: str | None, limit: int = 1000) -> ListPage:
        """One page of the keys directly under `key_prefix` (and its "subdirectories"). ObjectStoreError."""
        from botocore import exceptions as bex

        args: dict[str, Any] = {
            "Bucket": prefix.bucket,
            "Prefix": key_prefix,
            "Delimiter": "/",
            "MaxKeys": limit,
        }
        if token is not None:
            args["ContinuationToken"] = token
        try:
            answer = self.client().list_objects_v2(**args)
        except (bex.BotoCoreError, bex.ClientError) as exc:
            raise self._store_error(exc, f"cannot list {prefix.directory_uri(key_prefix)}") from exc
        objects = [
            ListedObject(str(o["Key"]), int(o["Size"]), _ns(o["LastModified"]), str(o.get("ETag", "")))
            for o in answer.get("Contents", ())
        ]
        prefixes = [str(p["Prefix"]) for p in answer.get("CommonPrefixes", ())]
        token = answer.get("NextContinuationToken") if answer.get("IsTruncated") else None
        return ListPage(objects, prefixes, token)

    def refusal(self, prefix: S3Prefix) -> str | None:
        """Why the prefix cannot be listed now (one small request: unreachable, credentials, bucket), or
        None. A re-analysis skips such a root as it skips a local one that is gone."""
        try:
            self.list_page(prefix, prefix.key_prefix, None, limit=1)
        except ObjectStoreError as exc:
            return str(exc)
        return None

    def download(self, bucket: str, listed: ListedObject, dest: Path, stop: Callable[[], bool]) -> LocalCopy:
        """Stream the listed version of an object into `dest` (a new file), a block at a time; the copy
        gets the object's mtime. ObjectError for this object, ObjectStoreError for the store; `stop()`
        true between two blocks abandons it. Nothing is left at `dest` unless it succeeds."""
        from botocore import exceptions as bex

        uri = f"s3://{bucket}/{listed.key}"
        try:
            try:
                answer = self.client().get_object(Bucket=bucket, Key=listed.key, IfMatch=listed.etag)
            except bex.ClientError as exc:
                raise self._object_error(exc, uri) from exc
            body = answer["Body"]
            try:
                if str(answer.get("ETag", "")) != listed.etag or int(answer["ContentLength"]) != listed.size:
                    raise ObjectError(f"{_CHANGED} (its ETag or size is no longer the listing's)")
                written = 0
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    for block in iter(lambda: body.read(_BLOCK), b""):
                        if stop():
                            raise ObjectError("download stopped")
                        out.write(block)
                        written += len(block)
                    out.flush()
                    os.utime(out.fileno(), ns=(listed.mtime_ns, listed.mtime_ns))
                    st = os.fstat(out.fileno())
            finally:
                body.close()
            if written != listed.size:
                raise ObjectError(f"{_CHANGED} ({written} of {listed.size} bytes)")
            return LocalCopy(dest, st.st_dev, st.st_ino)
        except (bex.BotoCoreError, bex.ClientError) as exc:
            dest.unlink(missing_ok=True)
            if isinstance(exc, bex.EndpointConnectionError | bex.NoCredentialsError):
                raise self._store_error(exc, f"cannot read {uri}") from exc
            raise ObjectError(f"cannot read: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def _object_error(self, exc: Exception, uri: str) -> Exception:
        """An error of a GET: this object's (changed, gone, denied, archived) or the store's (credentials)."""
        code, status = _code(exc)
        if code in _ACCESS_CODES:
            return self._store_error(exc, f"cannot read {uri}")
        if code == "PreconditionFailed" or status == 412:
            return ObjectError(f"{_CHANGED} (its ETag is no longer the listing's)")
        if code in ("NoSuchKey", "NoSuchVersion") or status == 404:
            return ObjectError("cannot read: the object is gone (deleted after it was listed)")
        if code == "InvalidRange" or status == 416:
            return RangeNotSatisfiableError(None)
        if code == "InvalidObjectState":
            return ObjectError(
                "cannot read: the object is archived (restore it from its storage class first)"
            )
        if code == "AccessDenied" or status == 403:
            return ObjectError(f"cannot read: access denied to this object ({code})")
        return ObjectError(f"cannot read: the store answered {code or status}")

    def open_object(self, bucket: str, key: str, byte_range: str | None) -> ObjectStream:
        """An object for an HTTP answer: a single `bytes=a-b` Range is passed to the store (others are
        ignored: the whole object). ObjectError (RangeNotSatisfiableError) or ObjectStoreError."""
        from botocore import exceptions as bex

        args: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if (
            byte_range is not None
            and _RANGE.fullmatch(byte_range.strip())
            and byte_range.strip() != "bytes=-"
        ):
            args["Range"] = byte_range.strip()
        uri = f"s3://{bucket}/{key}"
        try:
            answer = self.client().get_object(**args)
        except bex.ClientError as exc:
            error = self._object_error(exc, uri)
            if isinstance(error, RangeNotSatisfiableError):
                size = exc.response.get("Error", {}).get("ActualObjectSize")
                error = RangeNotSatisfiableError(int(size) if str(size or "").isdigit() else None)
            raise error from exc
        except bex.BotoCoreError as exc:
            raise self._store_error(exc, f"cannot read {uri}") from exc
        headers = {"accept-ranges": "bytes", "content-length": str(answer["ContentLength"])}
        if answer.get("ETag"):
            headers["etag"] = str(answer["ETag"])
        if answer.get("LastModified"):
            headers["last-modified"] = answer["LastModified"].strftime("%a, %d %b %Y %H:%M:%S GMT")
        status = 200
        if answer.get("ContentRange"):
            headers["content-range"] = str(answer["ContentRange"])
            status = 206
        return ObjectStream(status, headers, answer["Body"])
