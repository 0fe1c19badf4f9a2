"""The switch check of scripts/bench_reanalyze.py: which search answers count as mixed."""

from __future__ import annotations

from typing import Any

from scripts.bench_reanalyze import Answer, mixed, text_versions

COLLECTION: dict[str, Any] = {
    "versions": [
        {"version": 1, "state": "retired", "models": {"text": "all-MiniLM-L6-v2@old-p1", "ocr": "r@1"}},
        {"version": 2, "state": "current", "models": {"text": "all-MiniLM-L6-v2@new-p1", "ocr": "r@1"}},
    ]
}


def _answer(status: int, version: int | None, text: str | None) -> Answer:
    return Answer(status=status, version=version, text_model=text, seconds=0.01, after_job=False)


def test_each_version_is_known_by_the_text_model_it_was_built_with() -> None:
    assert text_versions(COLLECTION) == {1: "old-p1", 2: "new-p1"}


def test_an_answer_is_mixed_when_its_query_model_is_not_its_versions() -> None:
    texts = text_versions(COLLECTION)
    right = [_answer(200, 1, "old-p1"), _answer(200, 2, "new-p1")]
    crossed = [_answer(200, 1, "new-p1"), _answer(200, 2, "old-p1")]
    elsewhere = [_answer(200, 3, "new-p1"), _answer(200, None, None)]
    failed = [_answer(503, None, None), _answer(0, None, None)]  # errors are counted apart, not as mixed
    assert mixed(right + crossed + elsewhere + failed, 1, 2, texts) == crossed + elsewhere
