"""Path policy: ingest only under allowed roots; no `..`, symlink or encoding trick escapes them."""

from __future__ import annotations

import os
from pathlib import Path


class PathNotAllowedError(Exception):
    """The requested path is outside every allowed root (HTTP 403)."""


class PathInvalidError(Exception):
    """The requested path does not exist or is not a directory (HTTP 400/404)."""


def is_within(path: Path, root: Path) -> bool:
    """True when `path` equals `root` or lies below it (both already resolved)."""
    return path == root or root in path.parents


def resolve_ingest_root(requested: str, allowed_roots: list[Path]) -> Path:
    """Resolve a requested directory (following symlinks) and check it lies under an allowed root."""
    if not requested or "\x00" in requested:
        raise PathInvalidError("path must be a non-empty string without NUL bytes")
    raw = Path(os.path.expanduser(requested))
    if not raw.is_absolute():
        raise PathInvalidError(f"path must be absolute: {requested!r}")
    if not allowed_roots:
        raise PathNotAllowedError("no ALLOWED_ROOTS configured: ingestion is refused until one is set")
    resolved = raw.resolve()
    if not any(is_within(resolved, root) for root in allowed_roots):
        raise PathNotAllowedError(f"{requested!r} is outside the allowed roots")
    if not resolved.exists():
        raise PathInvalidError(f"no such directory: {requested!r}")
    if not resolved.is_dir():
        raise PathInvalidError(f"not a directory: {requested!r}")
    return resolved
