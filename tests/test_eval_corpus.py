"""The evaluation's labels agree with its corpus (scripts/eval_corpus.py); rank_of's rules."""

from __future__ import annotations

from pathlib import Path

from orchestrator.search import Hit, SearchResult
from scripts.eval_corpus import PHOTOS, PRINTED, SPOKEN, TALK, Query, distractors, queries
from scripts.eval_search import rank_of
from scripts.talk_video import Phrase, TalkManifest


def test_every_label_names_a_corpus_file_and_the_set_covers_each_kind() -> None:
    talk = TalkManifest(
        "x.mp4", 60.0, [Phrase(f"Sentence {n}.", "a", 3.0 * n, 3.0 * n + 2, "") for n in range(16)]
    )
    files = {*PHOTOS, *PRINTED, *SPOKEN, *distractors(), TALK}
    asked = queries(talk)
    assert len(asked) >= 40
    assert {q.kind for q in asked} >= {
        "exact",
        "paraphrase",
        "spanish",
        "misspelling",
        "person",
        "spoken",
        "none",
    }
    assert sum(1 for q in asked if q.kind == "none") >= 8
    for query in asked:
        assert set(query.expected) <= files, query
    assert len({q.text for q in asked}) == len(asked)


def _hit(path: str, start_s: float | None = None) -> Hit:
    return Hit("id", 1.0, path, [path], "image", start_s, None, "", "")


def test_rank_counts_the_first_answering_hit_and_the_time_of_a_spoken_one() -> None:
    root = Path("/c")
    result = SearchResult([_hit("/c/a.png"), _hit("/c/tv.mp4", 40.0), _hit("/c/tv.mp4", 11.0)], False, None)
    assert rank_of(result, Query("q", "exact", ("a.png",)), root) == 1
    assert rank_of(result, Query("q", "spoken", ("tv.mp4",), 10.0), root) == 3  # 40 s is too far
    assert rank_of(result, Query("q", "exact", ("b.png",)), root) is None
