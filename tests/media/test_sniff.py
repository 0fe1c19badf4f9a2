from pathlib import Path

import pytest

from orchestrator.media.sniff import Sniffed, describe_unknown, sniff


@pytest.mark.parametrize(
    ("head", "media_type", "mime"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", "image", "image/png"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00\x00", "image", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image", "image/webp"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00", "video", "video/mp4"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "image", "image/heif"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio", "audio/wav"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "audio", "audio/mpeg"),
        (b"hello world, just text here", "unknown", "application/octet-stream"),
    ],
)
def test_sniff(head: bytes, media_type: str, mime: str) -> None:
    kind = sniff(head)
    assert (kind.media_type, kind.mime) == (media_type, mime)


def test_describe_unknown() -> None:
    assert describe_unknown(b"plain words") == "text"
    assert describe_unknown(b"%PDF-1.7") == "a PDF document"
    assert describe_unknown(b"\x00\xff\xfe\x80\x81") == "unrecognised binary data"


@pytest.mark.parametrize(
    ("suffix", "mime"), [(".ts", "video/mp2t"), (".mpg", "video/mpeg"), (".flv", "video/x-flv")]
)
def test_broadcast_containers_are_video(tmp_path: Path, suffix: str, mime: str) -> None:
    """Real files written by PyAV in the containers a TV archive holds."""
    from scripts.av_write import textured, write_video

    path = tmp_path / f"clip{suffix}"
    codec = {".mpg": "mpeg2video", ".flv": "flv"}.get(suffix)
    write_video(path, [(textured(64, 96, 1), 0.5)], fps=10, codec=codec)
    assert sniff(path.read_bytes()[:256]) == Sniffed("video", mime)
