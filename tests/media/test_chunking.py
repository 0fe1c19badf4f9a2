"""Chunk planning and shot detection: pure functions, real photographs (scikit-image's bundled data) for the
cut / no-cut fixtures that the default threshold was chosen on."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from skimage import data

from orchestrator.media.av_decode import AVOptions
from orchestrator.media.chunking import (
    DEFAULT_SCENE_THRESHOLD,
    GREY_SIZE,
    ChunkPlanner,
    ChunkSizes,
    detect_cuts,
    grey_difference,
    keyframe_targets,
    plan_chunks,
)

OPTS = ChunkSizes(chunk_s=15.0, min_chunk_s=4.0)


# ---- plan_chunks ----


def test_plain_windows_without_cuts() -> None:
    assert plan_chunks(60.0, [], OPTS) == [(0.0, 15.0), (15.0, 30.0), (30.0, 45.0), (45.0, 60.0)]


def test_a_window_ends_at_its_last_cut_after_min_chunk() -> None:
    chunks = plan_chunks(40.0, [6.0, 13.3, 26.7], OPTS)
    assert chunks == [(0.0, 13.3), (13.3, 26.7), (26.7, 40.0)]


def test_cuts_closer_than_min_chunk_to_the_start_are_ignored() -> None:
    assert plan_chunks(30.0, [1.0, 3.9, 16.0, 17.0], OPTS) == [(0.0, 15.0), (15.0, 30.0)]
    assert plan_chunks(30.0, [2.0, 4.0], OPTS)[0] == (0.0, 4.0)  # exactly min_chunk_s counts


def test_a_short_remainder_joins_the_previous_chunk() -> None:
    assert plan_chunks(33.0, [], OPTS) == [(0.0, 15.0), (15.0, 33.0)]
    assert plan_chunks(34.0, [], OPTS) == [(0.0, 15.0), (15.0, 30.0), (30.0, 34.0)]
    assert plan_chunks(12.0, [10.0], OPTS) == [(0.0, 12.0)]  # the cut would leave 2 s


def test_short_files_are_one_chunk() -> None:
    assert plan_chunks(3.0, [1.0, 2.0], OPTS) == [(0.0, 3.0)]
    assert plan_chunks(0.1, [], OPTS) == [(0.0, 0.1)]
    assert plan_chunks(0.0, [], OPTS) == [(0.0, 0.0)]
    assert plan_chunks(12.0, [6.0], OPTS) == [(0.0, 6.0), (6.0, 12.0)]


def test_boundaries_are_stable_and_rounded_to_milliseconds() -> None:
    noisy = plan_chunks(40.00000001, [13.30000004, 26.6999999], OPTS)
    assert noisy == [(0.0, 13.3), (13.3, 26.7), (26.7, 40.0)]
    assert noisy == plan_chunks(40.0, [26.7, 13.3], OPTS)  # order of cuts does not matter
    assert all(type(b) is float for chunk in noisy for b in chunk)


def test_av_options_are_chunk_options() -> None:
    assert plan_chunks(20.0, [], AVOptions(chunk_s=10.0, min_chunk_s=2.0)) == [(0.0, 10.0), (10.0, 20.0)]


def test_incremental_planner_matches_plan_chunks() -> None:
    rng = random.Random(7)
    for _ in range(300):
        duration = rng.uniform(0, 200)
        cuts = sorted(round(rng.uniform(0, duration), 3) for _ in range(rng.randint(0, 30)))
        expected = plan_chunks(duration, cuts, OPTS)
        planner = ChunkPlanner(OPTS)
        got: list[tuple[float, float]] = []
        pending = list(cuts)
        t = 0.0
        while t < duration:  # a decoder reading the file 0.1 s at a time
            while pending and pending[0] <= t:
                planner.add_cut(pending.pop(0))
            got += planner.ready(t)
            t += 0.1
        for cut in pending:
            planner.add_cut(cut)
        got += planner.finish(duration)
        assert got == expected, (duration, cuts)
        assert got[0][0] == 0.0 and got[-1][1] == round(duration, 3)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(got))


# ---- detect_cuts ----

# Photographs bundled with scikit-image (no download). Cuts between them differ by 35 or more (chelsea ->
# clock is the closest pair); steady pans over them by up to ~34 from frame to frame, but steadily.
PHOTOS = [
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "immunohistochemistry",
    "retina",
    "hubble_deep_field",
    "stereo_motorcycle",
    "coins",
    "clock",
    "page",
]
TEXTURES = ["moon", "brick", "grass", "gravel"]  # pans over these are the hard case for a grey difference


def _photo(name: str) -> NDArray[np.uint8]:
    loaded = getattr(data, name)()
    img = np.asarray(loaded[0] if isinstance(loaded, tuple) else loaded)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def _grey(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """What the decoder hands the detector: a 640x360 frame shrunk (area average) to 64x36 grey."""
    frame = Image.fromarray(rgb).resize((640, 360))
    return np.asarray(frame.convert("L").resize(GREY_SIZE, Image.Resampling.BOX), np.uint8)


def _view(big: NDArray[np.uint8], x: int, y: int, scale: float = 1.0) -> NDArray[np.uint8]:
    w, h = round(640 * scale), round(360 * scale)
    return big[y : y + h, x : x + w]


def _wide(name: str) -> NDArray[np.uint8]:
    return np.asarray(Image.fromarray(_photo(name)).resize((1280, 720)), np.uint8)


def _shots(fps: float = 25.0) -> Iterator[tuple[float, NDArray[np.uint8]]]:
    """Four photos, 2 s each, the camera panning slowly over each: cuts at 2, 4 and 6 s."""
    for shot, name in enumerate(["astronaut", "coffee", "chelsea", "rocket"]):
        big = _wide(name)
        for i in range(round(2 * fps)):
            yield shot * 2 + i / fps, _grey(_view(big, 100 + 2 * i, 100))


def test_cuts_between_real_photos_are_found_at_the_frame() -> None:
    assert detect_cuts(_shots()) == [2.0, 4.0, 6.0]


def test_every_pair_of_different_photos_is_a_cut_at_the_default_threshold() -> None:
    greys = [_grey(_photo(name)) for name in PHOTOS]
    diffs = [grey_difference(a, b) for i, a in enumerate(greys) for b in greys[i + 1 :]]
    assert min(diffs) >= DEFAULT_SCENE_THRESHOLD + 5, sorted(diffs)[:3]
    for i, a in enumerate(greys):
        for b in greys[i + 1 :]:
            assert detect_cuts([(0.0, a), (0.04, a), (0.08, b), (0.12, b)]) == [0.08]


def _fast_pan(name: str, px_per_frame: int, frames: int = 25) -> Iterator[tuple[float, NDArray[np.uint8]]]:
    big = _wide(name)
    for i in range(frames):
        yield i / 25, _grey(_view(big, i * px_per_frame, 180))


@pytest.mark.parametrize("name", PHOTOS + TEXTURES)
def test_a_fast_pan_is_not_a_cut(name: str) -> None:
    # 24 and 32 px a frame at 25 fps: a whole 640 px frame width in about a second
    assert detect_cuts(_fast_pan(name, 24)) == []
    assert detect_cuts(_fast_pan(name, 32, frames=20)) == []


def test_a_cut_inside_a_fast_pan_is_found() -> None:
    first, second = list(_fast_pan("astronaut", 24, 12)), list(_fast_pan("coffee", 24, 12))
    joined = first + [(0.48 + t, grey) for t, grey in second]
    assert detect_cuts(joined) == [0.48]


def test_a_one_frame_flash_is_not_a_cut() -> None:
    base = _grey(_photo("coffee"))
    flash = np.full_like(base, 250)
    frames = [(i / 25, flash if i == 10 else base) for i in range(25)]  # one bright frame
    assert detect_cuts(frames) == []


def test_zoom_and_a_brightness_ramp_are_not_cuts() -> None:
    big = _wide("astronaut")
    zoom = [(i / 25, _grey(_view(big, 200, 100, 1.0 - 0.01 * i))) for i in range(40)]
    assert detect_cuts(zoom) == []
    base = _grey(_photo("coffee")).astype(np.float32)
    ramp = [(i / 25, np.clip(base * (1 + 0.03 * i), 0, 255).astype(np.uint8)) for i in range(30)]
    assert detect_cuts(ramp) == []


def test_minimum_gap_between_cuts() -> None:
    a, b, c, d = (_grey(_photo(name)) for name in ("astronaut", "rocket", "coffee", "camera"))
    shots = [(0.0, a), (0.5, b), (1.0, c), (2.2, d)]
    frames = [(i / 10, next(g for start, g in reversed(shots) if start <= i / 10)) for i in range(30)]
    assert detect_cuts(frames, min_gap_s=1.0) == [0.5, 2.2]
    assert detect_cuts(frames, min_gap_s=0.2) == [0.5, 1.0, 2.2]
    assert detect_cuts(frames, threshold=255.0) == []  # the threshold is configurable


def test_no_samples_or_one_sample_has_no_cuts() -> None:
    assert detect_cuts([]) == []
    assert detect_cuts([(0.0, _grey(_photo("coffee")))]) == []


def test_every_shot_of_a_chunk_gets_a_keyframe() -> None:
    # 11.8-26.6 s with cuts at 18.8 and 24.2: the even targets (14.27, 19.2, 24.13) miss the last shot.
    targets = keyframe_targets((11.8, 26.6), [18.8, 24.2], 3)
    assert [round(t, 2) for t in targets] == [14.27, 19.2, 24.13, 25.4]
    assert keyframe_targets((0.0, 15.0), [], 3) == [2.5, 7.5, 12.5]
    # A shot under a second gets none; at most n more, the longest shots first.
    assert keyframe_targets((0.0, 15.0), [7.9, 8.6], 3) == [2.5, 7.5, 12.5]
    many = keyframe_targets((0.0, 12.0), [1.0, 2.0, 3.0, 5.0, 6.5, 9.0, 10.0, 11.0], 2)
    assert many == [3.0, 5.75, 7.75, 9.0]  # the 2.5 s and 1.5 s shots; the 1 s ones wait
