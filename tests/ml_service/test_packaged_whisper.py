"""The multilingual whisper base joined from its two packages into the model cache, once."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ml_service.models.asr import _is_multilingual
from ml_service.models.packaged_whisper import _parts, multilingual_base_model

# The joined CTranslate2 file (MODELS.md: 145,217,532 bytes).
BASE_SIZE = 145_217_532


def test_joined_once_and_reused(tmp_path: Path) -> None:
    folder = multilingual_base_model(tmp_path)
    model = folder / "model.bin"
    assert model.stat().st_size == BASE_SIZE
    first, second = _parts()
    with model.open("rb") as joined, (second / "model.bin.part2").open("rb") as tail:
        joined.seek((first / "model.bin.part1").stat().st_size)
        assert joined.read(1 << 16) == tail.read(1 << 16)  # the second part follows the first
    assert _is_multilingual(folder)
    written = model.stat().st_mtime_ns
    assert multilingual_base_model(tmp_path) == folder
    assert model.stat().st_mtime_ns == written  # not joined again
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging copy left behind


def test_processes_starting_together_get_one_complete_copy(tmp_path: Path) -> None:
    with ThreadPoolExecutor(3) as pool:
        folders = list(pool.map(lambda _: multilingual_base_model(tmp_path), range(3)))
    assert len(set(folders)) == 1
    assert folders[0].joinpath("model.bin").stat().st_size == BASE_SIZE
    assert [p.name for p in tmp_path.iterdir()] == [folders[0].name]


def test_a_copy_cut_short_is_joined_again(tmp_path: Path) -> None:
    folder = multilingual_base_model(tmp_path)
    with (folder / "model.bin").open("r+b") as model:
        model.truncate(1000)  # as if a crash had cut the copy of an older version
    os.sync()
    assert multilingual_base_model(tmp_path) == folder
    assert (folder / "model.bin").stat().st_size == BASE_SIZE
