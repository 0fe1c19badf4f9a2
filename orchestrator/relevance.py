"""The relevance floor: whether a hit is a good match on its own evidence, not on its fused rank.

Fusion (RRF) ranks; it cannot say "nothing here is relevant": the first of a list of unrelated chunks
still ranks first. A hit's evidence is what each branch saw: the cosine of the query's text vector with
the chunk's (the vectors come back with the fused query), the same for the image–text vector, and the
share of the query's words the chunk holds (its text or its file's name, by the keyword analysis). A
hit clears the floor when any of them reaches its threshold; `no_good_match` says that none of the
first hits does. The thresholds depend on the models: the text floor is calibrated per text model by
scripts/eval_search.py and scripts/bench_languages.py (README, "Search quality"), the others for the
defaults; all are settings (SEARCH_*_FLOOR; an unset text floor is the model's own).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from orchestrator.clients.vectors import ScoredPoint
from orchestrator.keywords import query_words, stems, tokens

# The text-vector floor of each text model (its name in the manifest), from the cosines of first hits of
# answerable and unanswerable queries (scripts/eval_search.py): multilingual-e5 puts unrelated sentences at
# 0.70-0.80, MiniLM and USE near 0.1.
TEXT_FLOORS: dict[str, float] = {
    "all-MiniLM-L6-v2": 0.25,
    "multilingual-e5-small-q4": 0.84,
    "use-multilingual-v3": 0.30,
}
# A model not calibrated here (a sentence-transformers directory of the user's): MiniLM's.
DEFAULT_TEXT_FLOOR = 0.25


def text_floor(model: str | None, configured: float | None) -> float:
    """The text floor for a collection embedded by ``model``: the configured one when set."""
    if configured is not None:
        return configured
    return TEXT_FLOORS.get(model or "", DEFAULT_TEXT_FLOOR)


@dataclass(frozen=True, slots=True)
class Floors:
    text: float = 0.25  # cosine, text vectors (all-MiniLM-L6-v2)
    image: float = 0.27  # cosine, image–text vectors (CLIP ViT-B/32 scale; unmeasured: no CLIP here)
    keywords: float = 0.5  # share of the query's words present (one of two, two of three or four, …)


@dataclass(frozen=True, slots=True)
class Evidence:
    text: float | None  # cosine of the query's and the chunk's text vectors (None: not returned)
    image: float | None
    keywords: float  # share of the query's words the chunk holds

    def to_json(self) -> dict[str, float | None]:
        def rounded(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {"text": rounded(self.text), "image": rounded(self.image), "keywords": round(self.keywords, 4)}


def evidence(
    point: ScoredPoint, query: dict[str, list[float]], text: str, share: float | None = None
) -> Evidence:
    """What each branch saw of this hit; `query`: the query's dense vectors by name; `share`: its
    keyword_share when already computed."""
    return Evidence(
        _cosine(query.get("text"), point.vectors.get("text")),
        _cosine(query.get("image"), point.vectors.get("image")),
        keyword_share(point, text) if share is None else share,
    )


def relevant(proof: Evidence, floors: Floors) -> bool:
    return (
        (proof.text is not None and proof.text >= floors.text)
        or (proof.image is not None and proof.image >= floors.image)
        or proof.keywords >= floors.keywords
    )


def keyword_share(point: ScoredPoint, text: str) -> float:
    """The share of the query's words (stopwords aside) found in the chunk's text or its file names."""
    words = set(query_words(text))
    if not words:
        return 0.0
    names = " ".join(os.path.basename(str(p)) for p in point.payload.get("paths") or [])
    held: set[str] = set()
    for token in tokens(f"{point.payload.get('text') or ''} {names}"):
        if len(token.word) > 1:
            held |= stems(token.word)
    return sum(1 for w in words if stems(w) & held) / len(words)


def _cosine(a: list[float] | None, b: list[float] | None) -> float | None:
    if not a or not b or len(a) != len(b):
        return None
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else None
