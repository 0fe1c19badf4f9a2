"""Path policy: ingest and serve only under allowed roots; no `..`, symlink or encoding trick escapes them."""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from orchestrator.sources.roots import S3Prefix, parse_s3_uri

# A content hash as the pipeline writes it (blake3 hex digest): the only form that may become a file name.
_CONTENT_HASH = re.compile(r"[0-9a-f]{64}")


class PathNotAllowedError(Exception):
    """The requested path is outside every allowed root (HTTP 403)."""


class PathInvalidError(Exception):
    """The requested path does not exist or is not a directory (HTTP 400/404)."""


def is_within(path: Path, root: Path) -> bool:
    """True when `path` equals `root` or lies below it (both already resolved)."""
    return path == root or root in path.parents


def resolve_ingest_root(
    requested: str, allowed_roots: Sequence[Path], managed_roots: Sequence[Path] = ()
) -> Path:
    """Resolve a requested directory (following symlinks) and check it lies under an allowed root, or under
    a root the orchestrator fills itself (`managed_roots`: UPLOAD_DIR), which ALLOWED_ROOTS do not gate."""
    if not requested or "\x00" in requested:
        raise PathInvalidError("path must be a non-empty string without NUL bytes")
    raw = Path(os.path.expanduser(requested))
    if not raw.is_absolute():
        raise PathInvalidError(f"path must be absolute: {requested!r}")
    if not allowed_roots and not managed_roots:
        raise PathNotAllowedError("no ALLOWED_ROOTS configured: ingestion is refused until one is set")
    resolved = raw.resolve()
    if not any(is_within(resolved, root) for root in managed_roots):
        if not allowed_roots:
            raise PathNotAllowedError("no ALLOWED_ROOTS configured: ingestion is refused until one is set")
        if not any(is_within(resolved, root) for root in allowed_roots):
            raise PathNotAllowedError(f"{requested!r} is outside the allowed roots")
    if not resolved.exists():
        raise PathInvalidError(f"no such directory: {requested!r}")
    if not resolved.is_dir():
        raise PathInvalidError(f"not a directory: {requested!r}")
    return resolved


def resolve_s3_root(requested: str, allowed_buckets: Collection[str]) -> S3Prefix:
    """An object-store root `s3://bucket/prefix`: well-formed (else PathInvalidError) and its bucket named
    in S3_ALLOWED_BUCKETS (else PathNotAllowedError). Asks the store nothing: a missing bucket fails the
    job."""
    try:
        prefix = parse_s3_uri(requested)
    except ValueError as exc:
        raise PathInvalidError(str(exc)) from exc
    if not allowed_buckets:
        raise PathNotAllowedError(
            "no S3_ALLOWED_BUCKETS configured: object storage is refused until one is set"
        )
    if prefix.bucket not in allowed_buckets:
        raise PathNotAllowedError(f"bucket {prefix.bucket!r} is not in S3_ALLOWED_BUCKETS")
    return prefix


def is_content_hash(value: object) -> TypeGuard[str]:
    """True for a blake3 hex digest: what a payload's `content_hash` must be before it names a file."""
    return isinstance(value, str) and _CONTENT_HASH.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class OpenedFile:
    """A regular file opened for reading whose descriptor was checked to lie under an allowed root."""

    fd: int
    real_path: Path
    stat: os.stat_result

    @property
    def fd_path(self) -> str:
        """A path that reopens exactly this file (the descriptor's inode), whatever its name points to now."""
        return f"/proc/self/fd/{self.fd}"


def open_within(path: str | Path, roots: Sequence[Path]) -> OpenedFile:
    """Open `path` for reading and keep it only if the OPENED file is a regular file under a root.

    Blocking (run it in a thread). A symlink as the last component is refused (O_NOFOLLOW); a symlinked
    parent directory is followed by open() but caught by the check, which reads the descriptor's own path
    (/proc/self/fd/N), not the name asked for: a name swapped after the check cannot change what is read.
    O_NONBLOCK keeps a FIFO swapped in from blocking the open. The caller closes `fd`.
    Raises PathNotAllowedError (outside every root, or a symlink) or PathInvalidError (missing, unreadable,
    not a regular file)."""
    name = os.fspath(path)
    if not name or "\x00" in name or not os.path.isabs(name):
        raise PathInvalidError("path must be absolute, without NUL bytes")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW: the last component is a symlink
            raise PathNotAllowedError(f"{name!r} is a symlink") from exc
        raise PathInvalidError(f"cannot open {name!r}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PathInvalidError(f"{name!r} is not a regular file")
        real = Path(_descriptor_path(fd))
        if not any(is_within(real, root) for root in roots):
            raise PathNotAllowedError(f"{name!r} is {real}, outside the allowed roots")
    except BaseException:
        os.close(fd)
        raise
    return OpenedFile(fd=fd, real_path=real, stat=st)


def open_first_within(paths: Iterable[object], roots: Sequence[Path]) -> OpenedFile | None:
    """The first of `paths` that `open_within` accepts (non-strings are skipped), or None. Blocking."""
    for candidate in paths:
        if not isinstance(candidate, str):
            continue
        try:
            return open_within(candidate, roots)
        except (PathNotAllowedError, PathInvalidError):
            continue
    return None


def _descriptor_path(fd: int) -> str:
    """The path the kernel holds for an open descriptor (symlinks resolved); fails closed without /proc."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError as exc:
        raise PathNotAllowedError("cannot read the opened file's path (/proc is needed)") from exc
