"""Media type from content (magic bytes), never from the file name."""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class Sniffed:
    media_type: str  # image | video | audio | unknown
    mime: str


def sniff(head: bytes) -> Sniffed:
    """Classify the first bytes of a file (at least 16 of them)."""
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
