"""How infer cuts a batch of files into rounds (stages/infer.py `_rounds`): a file's chunks share a round
whatever other files arrived with it, so its language is settled over the same chunks every run."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from orchestrator.pipeline.stages.infer import _rounds


def _file(name: str, chunks: int) -> Any:
    return SimpleNamespace(name=name, prepared=SimpleNamespace(chunks=[f"{name}{i}" for i in range(chunks)]))


def _names(rounds: list[list[tuple[Any, Any]]]) -> list[str]:
    return [" ".join(chunk for _, chunk in r) for r in rounds]


def test_files_that_fit_a_round_are_never_split() -> None:
    a, b, c = _file("a", 3), _file("b", 4), _file("c", 2)
    assert _names(_rounds([a, b, c], 8)) == ["a0 a1 a2 b0 b1 b2 b3", "c0 c1"]
    # The same file arriving after another one is still whole.
    assert _names(_rounds([c, b, a], 8)) == ["c0 c1 b0 b1 b2 b3", "a0 a1 a2"]


def test_a_long_file_is_cut_at_the_same_offsets_whatever_came_before() -> None:
    long = _file("L", 10)
    alone = _names(_rounds([long], 4))
    after = _names(_rounds([_file("x", 3), long, _file("y", 1)], 4))
    assert alone == ["L0 L1 L2 L3", "L4 L5 L6 L7", "L8 L9"]
    assert after == ["x0 x1 x2", "L0 L1 L2 L3", "L4 L5 L6 L7", "L8 L9 y0"]
    assert all(len(r.split()) <= 4 for r in after)
