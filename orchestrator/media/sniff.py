"""Media type from content (magic bytes). Documents: a PDF by its magic; DOCX, HTML, Markdown and plain text
by content that agrees with the file's name (a zip named .docx, UTF-8 text named .txt/.md/.html)."""

from __future__ import annotations

import os
from dataclasses import dataclass

# Extensions whose owners expect them to be ingested: a file with one of these that turns out not to be
# media is an error worth reporting; any other non-media file (a README, a sidecar) is simply skipped.
MEDIA_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".gif",
        ".webp",
        ".bmp",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".avif",
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".mts",
        ".m2ts",
        ".mpg",
        ".mpeg",
        ".wav",
        ".mp3",
        ".m4a",
        ".aac",
        ".flac",
        ".ogg",
        ".opus",
        ".wma",
        ".wmv",
        ".ts",
        ".vob",
        ".flv",
    }
)


# Documents (media_type "document"): a failure of one of these is reported; text-like names whose file is
# empty are skipped like any empty note (`TEXT_EXTENSIONS`).
PDF_MIME = "application/pdf"
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
HTML_MIME = "text/html"
MARKDOWN_MIME = "text/markdown"
TEXT_MIME = "text/plain"
TEXT_EXTENSIONS = {".txt": TEXT_MIME, ".md": MARKDOWN_MIME, ".markdown": MARKDOWN_MIME}
HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
DOCUMENT_EXTENSIONS = frozenset({".pdf", ".docx", *TEXT_EXTENSIONS, *HTML_EXTENSIONS})


@dataclass(frozen=True, slots=True)
class Sniffed:
    media_type: str  # image | video | audio | document | unknown
    mime: str


def sniff(head: bytes, name: str = "") -> Sniffed:
    """Classify the first bytes of a file (at least 16 of them; 256 tell text from binary). `name`, the file's
    name, only tells documents apart whose bytes alone do not say what they are (a zip, some text)."""
    kind = _sniff_media(head)
    if kind.media_type == "unknown":
        return _sniff_document(head, os.path.splitext(name)[1].lower()) or kind
    return kind


def _sniff_document(head: bytes, extension: str) -> Sniffed | None:
    if head.startswith(b"%PDF-"):
        return Sniffed("document", PDF_MIME)
    if head.startswith(b"PK\x03\x04"):
        return Sniffed("document", DOCX_MIME) if extension == ".docx" else None
    if not _is_text(head):
        return None
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if extension in HTML_EXTENSIONS or start.startswith((b"<!doctype html", b"<html")):
        return Sniffed("document", HTML_MIME)
    if extension in TEXT_EXTENSIONS:
        return Sniffed("document", TEXT_EXTENSIONS[extension])
    return None


def _is_text(head: bytes) -> bool:
    """UTF-8 without NUL bytes (a character cut at the end of the head does not count against it)."""
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True


def _sniff_media(head: bytes) -> Sniffed:
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("image", "image/jpeg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image", "image/png")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Sniffed("image", "image/gif")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("image", "image/webp")
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Sniffed("image", "image/tiff")
    if head[:2] == b"BM" and len(head) >= 14:
        return Sniffed("image", "image/bmp")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"heim", b"heis"):
            return Sniffed("image", "image/heif")
        if brand in (b"M4A ", b"M4B "):
            return Sniffed("audio", "audio/mp4")
        return Sniffed("video", "video/mp4" if brand != b"qt  " else "video/quicktime")
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return Sniffed("video", "video/x-matroska")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return Sniffed("video", "video/x-msvideo")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Sniffed("audio", "audio/wav")
    if head[:3] == b"ID3" or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return Sniffed("audio", "audio/mpeg")
    if head[:4] == b"fLaC":
        return Sniffed("audio", "audio/flac")
    if head[:4] == b"OggS":
        return Sniffed("audio", "audio/ogg")  # Ogg video (Theora) is told apart by the probe
    if head[:4] == b"\x00\x00\x01\xba":
        return Sniffed("video", "video/mpeg")  # MPEG program stream (.mpg, DVD .vob)
    if head[:1] == b"\x47" and len(head) > 188 and head[188:189] == b"\x47":
        return Sniffed("video", "video/mp2t")  # MPEG transport stream (.ts, broadcast recordings)
    if head[4:5] == b"\x47" and len(head) > 196 and head[196:197] == b"\x47":
        return Sniffed("video", "video/mp2t")  # M2TS (.mts, .m2ts): 4-byte timestamp + 188-byte packets
    if head[:3] == b"FLV":
        return Sniffed("video", "video/x-flv")
    if head[:4] == b"\x30\x26\xb2\x75":
        return Sniffed("video", "video/x-ms-asf")  # ASF: .wmv/.wma (the probe tells which)
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return Sniffed("audio", "audio/aac")  # ADTS AAC
    return Sniffed("unknown", "application/octet-stream")


def describe_unknown(head: bytes) -> str:
    """A human hint at what a non-media file is, for the error message."""
    if not head:
        return "empty"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary data"
    return "text"
