"""probe(): real files written with PyAV by scripts/av_write.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.media.images import MediaDecodeError
from orchestrator.media.probe import probe
from scripts.av_write import jpeg_bytes, textured, tone, truncate, write_audio, write_video


def _clip(path: Path, *, width: int = 320, height: int = 180, seconds: float = 2.0, **kwargs: object) -> str:
    frame = textured(height, width, seed=1)
    write_video(path, [(frame, seconds)], fps=10, **kwargs)  # type: ignore[arg-type]
    return str(path)


def test_video_with_audio(tmp_path: Path) -> None:
    path = _clip(
        tmp_path / "clip.mp4",
        audio=tone(2.0),
        sample_rate=16000,
        creation_time="2024-05-01T12:30:00.000000Z",
    )
    info = probe(path)
    assert "mp4" in info.container
    assert info.duration_s == pytest.approx(2.0, abs=0.1)
    assert info.has_video and info.has_audio
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert (info.width, info.height, info.rotation) == (320, 180, 0)
    assert info.fps == pytest.approx(10.0)
    assert info.frame_count == 20
    assert (info.sample_rate, info.channels) == (16000, 1)
    assert info.creation_time == "2024-05-01T12:30:00+00:00"


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_from_the_display_matrix_gives_the_displayed_size(tmp_path: Path, rotation: int) -> None:
    # frames are given upright (portrait for 90/270); the writer stores them sideways, as a phone does
    upright = (320, 180) if rotation in (90, 270) else (180, 320)
    path = _clip(tmp_path / "phone.mp4", width=upright[1], height=upright[0], rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation
    assert (info.height, info.width) == upright


def test_rotation_from_a_rotate_tag(tmp_path: Path) -> None:
    path = _clip(tmp_path / "tagged.mkv", width=180, height=320, rotation=90, rotate_tag=True)
    info = probe(path)
    assert info.rotation == 90
    assert (info.width, info.height) == (180, 320)


def test_video_without_audio(tmp_path: Path) -> None:
    info = probe(_clip(tmp_path / "silent.mp4"))
    assert info.has_video and not info.has_audio
    assert info.audio_codec is None and info.sample_rate is None and info.channels is None
    assert info.creation_time is None


@pytest.mark.parametrize(("fmt", "codec"), [("wav", "pcm_s16le"), ("mp3", "mp3"), ("m4a", "aac")])
def test_audio_files(tmp_path: Path, fmt: str, codec: str) -> None:
    path = tmp_path / f"tone.{fmt}"
    write_audio(path, tone(3.0, 16000), 16000, fmt)
    info = probe(str(path))
    assert info.has_audio and not info.has_video
    assert info.audio_codec is not None and info.audio_codec.startswith(codec)
    assert info.duration_s == pytest.approx(3.0, abs=0.1)
    assert (info.width, info.height) == (0, 0) and info.fps is None and info.rotation == 0


def test_cover_art_does_not_make_an_audio_file_a_video(tmp_path: Path) -> None:
    path = tmp_path / "song.mp3"
    cover = jpeg_bytes(textured(64, 64, seed=3))
    write_audio(path, tone(2.0), 16000, "mp3", cover_jpeg=cover)
    info = probe(str(path))
    assert info.has_audio and not info.has_video
    assert info.video_codec is None and info.width == 0


@pytest.mark.parametrize(
    "content",
    [b"", b"just some text\nin a file\n" * 20, np.random.default_rng(0).bytes(50_000)],
    ids=["empty", "text", "random"],
)
def test_not_media_raises_media_decode_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaDecodeError, match=r"\w"):
        probe(str(path))


def test_missing_file_raises_media_decode_error(tmp_path: Path) -> None:
    with pytest.raises(MediaDecodeError):
        probe(str(tmp_path / "nope.mp4"))


def test_truncated_mp4_without_its_index_is_an_error(tmp_path: Path) -> None:
    path = _clip(tmp_path / "cut.mp4", audio=tone(2.0))
    truncate(path, 0.5)  # the moov box is at the end: gone
    with pytest.raises(MediaDecodeError, match=r"invalid data|cannot open"):
        probe(path)
