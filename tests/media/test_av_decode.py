"""decode_av(): real decoding of files written by the tests (scripts/av_write.py), small and short."""

from __future__ import annotations

import io
import itertools
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from orchestrator.media.av_decode import AVOptions, DecodedAV, decode_av
from orchestrator.media.images import MediaDecodeError
from scripts.av_write import pan, textured, tone, truncate, write_audio, write_video

FPS = 10
W, H = 320, 180
CUTS = (13.3, 26.7)  # shot changes of the 40 s video
SHOT_A = textured(H, W, seed=1)
PAN_SOURCE = textured(H, 2 * W, seed=2)
SHOT_C = textured(H, W, seed=3)


def _shots() -> Iterator[tuple[NDArray[np.uint8], float]]:
    yield SHOT_A, CUTS[0]  # a still shot
    yield from pan(PAN_SOURCE, W, CUTS[1] - CUTS[0], FPS, px_per_s=20)  # the camera moves
    yield SHOT_C, 40.0 - CUTS[1]  # still again


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("av")


@pytest.fixture(scope="module")
def three_shots(media: Path) -> str:
    path = media / "three_shots.mp4"
    write_video(path, _shots(), fps=FPS, audio=tone(40.0), sample_rate=16000)
    return str(path)


@pytest.fixture(scope="module")
def decoded(three_shots: str) -> DecodedAV:
    return decode_av(three_shots, AVOptions())


def _image(jpeg: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(jpeg))
    img.load()
    return img


def _pcm(data: bytes | None) -> NDArray[np.int16]:
    assert data is not None
    return np.frombuffer(data, dtype="<i2")


# ---- the three-shot video ----


def test_chunks_end_at_the_shot_changes(decoded: DecodedAV) -> None:
    assert decoded.media_type == "video"
    bounds = [(c.start_s, c.end_s) for c in decoded.chunks]
    assert len(bounds) == 3, bounds
    assert bounds[0][0] == 0.0
    assert abs(bounds[0][1] - CUTS[0]) <= 0.5 and abs(bounds[1][1] - CUTS[1]) <= 0.5
    assert bounds[2][1] == pytest.approx(40.0, abs=0.1)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert [c.index for c in decoded.chunks] == [0, 1, 2]


def test_each_chunk_names_the_shot_changes_inside_it(decoded: DecodedAV, three_shots: str) -> None:
    # 15 s chunks end at the cuts: none falls inside one. One chunk that may not end before 30 s holds both.
    assert all(c.cuts == () for c in decoded.chunks)
    [whole] = decode_av(three_shots, AVOptions(chunk_s=60.0, min_chunk_s=30.0)).chunks
    assert len(whole.cuts) == 2 and all(abs(a - b) <= 0.5 for a, b in zip(whole.cuts, CUTS, strict=True))


def test_probe_of_the_decoded_file(decoded: DecodedAV) -> None:
    info = decoded.probe
    assert info.has_video and info.has_audio
    assert (info.width, info.height, info.rotation) == (W, H, 0)
    assert info.duration_s == pytest.approx(40.0, abs=0.1)


def test_keyframes_are_inside_their_chunk_and_show_the_shot(decoded: DecodedAV) -> None:
    for chunk, source in zip(decoded.chunks, (SHOT_A, None, SHOT_C), strict=True):
        assert chunk.keyframes
        for kf in chunk.keyframes:
            assert chunk.start_s <= kf.t_s < chunk.end_s
            img = _image(kf.jpeg)
            assert img.mode == "RGB" and img.size == (kf.width, kf.height) == (W, H)  # never upscaled
            if source is not None:  # same picture, same colours, same way round
                diff = np.abs(np.asarray(img, np.float32) - source.astype(np.float32)).mean()
                assert diff < 12, diff
        times = [kf.t_s for kf in chunk.keyframes]
        assert times == sorted(times)


def test_near_duplicate_keyframes_are_skipped(decoded: DecodedAV, three_shots: str) -> None:
    # still shots keep one keyframe, the moving one keeps all three
    assert [len(c.keyframes) for c in decoded.chunks] == [1, 3, 1]
    every = decode_av(three_shots, AVOptions(near_duplicate_threshold=0.0))
    assert [len(c.keyframes) for c in every.chunks] == [3, 3, 3]


def test_keyframes_and_thumbnails_are_downscaled(three_shots: str) -> None:
    small = decode_av(three_shots, AVOptions(ml_max_side=160, thumb_side=64, keyframes_per_chunk=2))
    for chunk in small.chunks:
        assert 1 <= len(chunk.keyframes) <= 2
        for kf in chunk.keyframes:
            assert (kf.width, kf.height) == (160, 90) == _image(kf.jpeg).size
        assert chunk.thumbnail_jpeg is not None
        assert _image(chunk.thumbnail_jpeg).size == (64, 36)


def test_thumbnail_is_the_middle_keyframe(decoded: DecodedAV) -> None:
    chunk = decoded.chunks[1]
    assert chunk.thumbnail_jpeg is not None
    thumb = np.asarray(_image(chunk.thumbnail_jpeg), np.float32)
    middle = _image(chunk.keyframes[1].jpeg).resize((thumb.shape[1], thumb.shape[0]))
    assert np.abs(thumb - np.asarray(middle, np.float32)).mean() < 8


def test_audio_covers_the_chunk_with_overlaps(decoded: DecodedAV) -> None:
    chunks = decoded.chunks
    end = chunks[-1].end_s
    for chunk in chunks:
        assert chunk.audio_start_s == pytest.approx(max(0.0, chunk.start_s - 0.5), abs=0.001)
        assert chunk.audio_end_s == pytest.approx(min(end, chunk.end_s + 0.5), abs=0.001)
        pcm = _pcm(chunk.audio_pcm)
        span = chunk.audio_end_s - chunk.audio_start_s
        assert abs(pcm.size / 16000 - span) < 0.005
    pcm = _pcm(chunks[1].audio_pcm).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm))
    peak_hz = np.argmax(spectrum) * 16000 / pcm.size
    assert peak_hz == pytest.approx(440, abs=5)  # the tone, resampled and placed right
    assert 4000 < np.sqrt(np.mean(pcm**2)) < 8000  # 8000-amplitude sine: RMS ~5660


def test_the_result_pickles(decoded: DecodedAV) -> None:
    assert pickle.loads(pickle.dumps(decoded)) == decoded


def test_longer_than_the_limit_fails_with_a_reason(three_shots: str) -> None:
    with pytest.raises(MediaDecodeError, match="too long"):
        decode_av(three_shots, AVOptions(max_duration_s=10.0))


# ---- other shapes of input ----


def _quadrants(height: int, width: int) -> NDArray[np.uint8]:
    img = np.zeros((height, width, 3), np.uint8)
    img[: height // 2, : width // 2] = (255, 0, 0)  # top left red
    img[: height // 2, width // 2 :] = (0, 255, 0)  # top right green
    img[height // 2 :, : width // 2] = (0, 0, 255)  # bottom left blue
    img[height // 2 :, width // 2 :] = (255, 255, 255)  # bottom right white
    return img


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_video_gives_upright_keyframes(media: Path, rotation: int) -> None:
    portrait = rotation in (90, 270)
    upright = _quadrants(320, 180) if portrait else _quadrants(180, 320)
    path = media / f"phone{rotation}.mp4"
    write_video(path, [(upright, 2.0)], fps=FPS, audio=tone(2.0), rotation=rotation)
    result = decode_av(str(path), AVOptions())
    info = result.probe
    assert info.rotation == rotation
    assert (info.width < info.height) if portrait else (info.width > info.height)
    kf = result.chunks[0].keyframes[0]
    img = np.asarray(_image(kf.jpeg), np.int16)
    assert img.shape[:2] == upright.shape[:2]
    h, w = img.shape[:2]
    for (y, x), colour in {
        (h // 4, w // 4): (255, 0, 0),
        (h // 4, 3 * w // 4): (0, 255, 0),
        (3 * h // 4, w // 4): (0, 0, 255),
        (3 * h // 4, 3 * w // 4): (255, 255, 255),
    }.items():
        assert np.abs(img[y, x] - np.array(colour)).max() < 40, (rotation, (y, x), img[y, x])


def test_one_frame_video(media: Path) -> None:
    path = media / "one_frame.mp4"
    write_video(path, [(SHOT_A, 0.1)], fps=FPS)
    result = decode_av(str(path), AVOptions())
    assert result.media_type == "video"
    assert len(result.chunks) == 1
    chunk = result.chunks[0]
    assert len(chunk.keyframes) == 1 and chunk.thumbnail_jpeg is not None
    assert chunk.start_s == 0.0 and 0 < chunk.end_s <= 0.2
    assert chunk.audio_pcm is None


def test_video_without_audio(media: Path) -> None:
    path = media / "silent_video.mp4"
    write_video(path, [(SHOT_A, 6.0), (SHOT_C, 6.0)], fps=FPS)
    result = decode_av(str(path), AVOptions())
    assert not result.probe.has_audio
    assert [(c.start_s, c.end_s) for c in result.chunks] == [(0.0, 6.0), (6.0, 12.0)]
    assert all(c.audio_pcm is None and c.keyframes for c in result.chunks)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "m4a"])
def test_audio_files_are_chunked_audio(media: Path, fmt: str) -> None:
    path = media / f"talk.{fmt}"
    write_audio(path, tone(20.0, hz=300.0), 16000, fmt)
    result = decode_av(str(path), AVOptions())
    assert result.media_type == "audio"
    bounds = [(c.start_s, c.end_s) for c in result.chunks]
    assert bounds[0] == (0.0, 15.0) and len(bounds) == 2
    assert bounds[1][1] == pytest.approx(20.0, abs=0.1)
    for chunk in result.chunks:
        assert chunk.keyframes == [] and chunk.thumbnail_jpeg is None
        pcm = _pcm(chunk.audio_pcm)
        assert abs(pcm.size / 16000 - (chunk.audio_end_s - chunk.audio_start_s)) < 0.005
        assert np.abs(pcm).max() > 4000


def test_audio_with_cover_art_is_audio(media: Path) -> None:
    path = media / "song.mp3"
    cover = io.BytesIO()
    Image.fromarray(SHOT_A).save(cover, format="JPEG")
    write_audio(path, tone(5.0), 16000, "mp3", cover_jpeg=cover.getvalue())
    result = decode_av(str(path), AVOptions())
    assert result.media_type == "audio" and not result.probe.has_video
    assert result.chunks[0].keyframes == []


def test_silence_is_zeros(media: Path) -> None:
    path = media / "silence.wav"
    write_audio(path, np.zeros(16000 * 3, np.int16), 16000, "wav")
    result = decode_av(str(path), AVOptions())
    pcm = _pcm(result.chunks[0].audio_pcm)
    assert pcm.size == 3 * 16000 and not pcm.any()


@pytest.mark.timeout(60)
def test_truncated_mp4_decodes_what_is_there(media: Path) -> None:
    path = media / "truncated.mp4"
    write_video(path, _shots(), fps=FPS, audio=tone(40.0), faststart=True)  # index first: it still opens
    truncate(path, 0.6)
    try:
        result = decode_av(str(path), AVOptions())
    except MediaDecodeError as exc:  # acceptable, with a reason
        assert str(exc)
        return
    bounds = [(c.start_s, c.end_s) for c in result.chunks]
    assert bounds[0][0] == 0.0 and 5.0 < bounds[-1][1] < 39.0, bounds
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert all(c.keyframes for c in result.chunks)


def test_truncated_mp4_without_its_index_fails_with_a_reason(media: Path, three_shots: str) -> None:
    path = media / "no_index.mp4"
    path.write_bytes(Path(three_shots).read_bytes())
    truncate(path, 0.5)
    with pytest.raises(MediaDecodeError, match=r"\w"):
        decode_av(str(path), AVOptions())


@pytest.mark.parametrize(
    "content",
    [b"hello, this is a text file\n" * 100, np.random.default_rng(1).bytes(200_000)],
    ids=["text", "random"],
)
def test_not_media_fails_with_a_reason(media: Path, content: bytes) -> None:
    path = media / "bogus.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaDecodeError, match=r"\w"):
        decode_av(str(path), AVOptions())


def test_options_are_validated() -> None:
    with pytest.raises(ValueError):
        AVOptions(min_chunk_s=20.0)
    with pytest.raises(ValueError):
        AVOptions(keyframes_per_chunk=0)
