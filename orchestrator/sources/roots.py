"""A job's root: a local directory (a `Path`, as it always was) or an object-store prefix (`S3Prefix`).

Persisted (job rows, the catalog's roots) as its string: a local root as its absolute path, an object-store
one as its URI `s3://bucket/prefix`; `parse_root` reads either back. The scanner lists an s3 prefix like a
tree of directories: the keys' `/` separate the parts, the "directory" of a key is `s3://bucket/<key's
parent>` and its name the key's last part, exactly as the file index stores a local file. So a key must
have no empty part (`a//b`), no `.` or `..` part (the paths would not map back to one key): such keys are
reported, never ingested. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

S3_SCHEME = "s3://"
# Bucket names as S3 allows them today (3-63 lowercase letters, digits, dots and hyphens, a letter or
# digit at both ends); older buckets with capitals or underscores are refused rather than half-supported.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MAX_KEY_BYTES = 1024  # S3's limit on a key


@dataclass(frozen=True, slots=True)
class S3Prefix:
    """`s3://bucket/prefix`: every object whose key starts with `prefix/` (the whole bucket when `prefix`
    is empty). `prefix` has no leading or trailing slash."""

    bucket: str
    prefix: str = ""

    @property
    def uri(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{S3_SCHEME}{self.bucket}"

    @property
    def key_prefix(self) -> str:
        """The keys' common start: "" or "prefix/"."""
        return f"{self.prefix}/" if self.prefix else ""

    def directory_uri(self, key_prefix: str) -> str:
        """The "directory" of the keys under `key_prefix` ("" or ending in "/") as the file index keeps it."""
        return f"{S3_SCHEME}{self.bucket}/{key_prefix}".rstrip("/")

    def key_uri(self, key: str) -> str:
        return f"{S3_SCHEME}{self.bucket}/{key}"

    def __str__(self) -> str:
        return self.uri


Root = Path | S3Prefix


def is_s3_uri(text: str) -> bool:
    return text[: len(S3_SCHEME)].lower() == S3_SCHEME


def key_problem(key: str) -> str | None:
    """Why a key (or a key prefix ending in "/") cannot be a path of the index, or None when it can."""
    parts = key.removesuffix("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "its key has an empty, '.' or '..' part (it would not map back to one object)"
    if "\x00" in key:
        return "its key holds a NUL character"
    return None


def parse_s3_uri(text: str) -> S3Prefix:
    """`s3://bucket[/prefix[/]]` → S3Prefix. ValueError says what is wrong with it."""
    if not is_s3_uri(text):
        raise ValueError(f"not an s3:// URI: {text[:200]!r}")
    rest = text[len(S3_SCHEME) :]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"not a bucket name: {bucket[:100]!r} (3-63 of a-z, 0-9, '.', '-')")
    prefix = prefix.rstrip("/")
    if prefix:
        if "?" in prefix or "#" in prefix:
            raise ValueError("an s3:// root is a bucket and a key prefix, without query or fragment")
        problem = key_problem(prefix)
        if problem is not None:
            raise ValueError(f"prefix {prefix[:200]!r} cannot be a root: {problem}")
        if len(prefix.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise ValueError(f"prefix longer than {MAX_KEY_BYTES} bytes")
        try:
            prefix.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("prefix is not valid UTF-8") from exc
    return S3Prefix(bucket, prefix)


def split_s3_path(path: str) -> tuple[str, str] | None:
    """An indexed object's path `s3://bucket/key` → (bucket, key); None when it is not one."""
    if not is_s3_uri(path):
        return None
    bucket, _, key = path[len(S3_SCHEME) :].partition("/")
    if not _BUCKET.fullmatch(bucket) or not key or key_problem(key) is not None:
        return None
    return bucket, key


def parse_root(text: str) -> Root:
    """A root as persisted (`str(root)`) → the root: an s3:// URI or a local path."""
    return parse_s3_uri(text) if is_s3_uri(text) else Path(text)
