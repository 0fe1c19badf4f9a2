"""File names that come from a client (an upload's file name, a URL's last segment, a text's title): made
into ONE safe path component. Nothing a client sends becomes part of a path any other way."""

from __future__ import annotations

import re
import unicodedata

# Longest name in UTF-8 bytes: below NAME_MAX (255) with room for a suffix (".part").
MAX_NAME_BYTES = 200
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_SPACES = re.compile(r"\s+")


def safe_name(raw: str, fallback: str = "upload") -> str:
    """The last component of `raw` (either slash), NFC, control and reserved characters replaced by "_",
    no leading dot (a hidden file would not be ingested) or space, at most MAX_NAME_BYTES bytes (the
    extension kept); `fallback` when nothing is left."""
    name = unicodedata.normalize("NFC", raw.replace("\x00", ""))
    parts = [part for part in re.split(r"[/\\]", name) if part.strip(" .")]
    name = parts[-1] if parts else ""
    name = "".join("_" if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c for c in name)
    name = _SPACES.sub(" ", _FORBIDDEN.sub("_", name)).strip(" .")
    if not name or set(name) <= {"_", "."}:
        name = fallback
    return _truncate(name)


def with_extension(name: str, extension: str) -> str:
    """`name` ending in `extension` (e.g. ".txt") unless it already does, still within MAX_NAME_BYTES."""
    if name.lower().endswith(extension.lower()):
        return _truncate(name)
    stem = _cut(name, MAX_NAME_BYTES - len(extension.encode()))
    return stem.rstrip(" .") + extension


def _truncate(name: str) -> str:
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext.encode()) > 16:  # no extension worth keeping
        return _cut(name, MAX_NAME_BYTES).rstrip(" .")
    return _cut(stem, MAX_NAME_BYTES - len(ext.encode()) - 1).rstrip(" .") + "." + ext


def _cut(text: str, limit: int) -> str:
    """The longest prefix of `text` within `limit` UTF-8 bytes (whole characters)."""
    return text.encode()[: max(0, limit)].decode("utf-8", errors="ignore")
