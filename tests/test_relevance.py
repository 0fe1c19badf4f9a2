from orchestrator.clients.vectors import ScoredPoint
from orchestrator.relevance import Evidence, Floors, evidence, keyword_share, relevant


def _point(
    text: str = "", vectors: dict[str, list[float]] | None = None, paths: list[str] | None = None
) -> ScoredPoint:
    return ScoredPoint("id", 0.01, {"text": text, "paths": paths or []}, vectors or {})


def test_evidence_is_each_branchs_own_similarity() -> None:
    proof = evidence(
        _point("Floods in Valencia", {"text": [1.0, 0.0], "image": [0.6, 0.8]}), {"text": [1.0, 0.0]}, "flood"
    )
    assert proof.text == 1.0 and proof.image is None and proof.keywords == 1.0
    assert evidence(_point(), {}, "flood") == Evidence(None, None, 0.0)


def test_keyword_share_counts_query_words_by_stem_in_text_and_file_names() -> None:
    assert keyword_share(_point("Heavy floods hit the city"), "flooding in Valencia") == 0.5
    assert keyword_share(_point("", paths=["/tv/Valencia_floods.mp4"]), "valencia flood") == 1.0
    assert keyword_share(_point("anything"), "the of and") == 0.0  # only stopwords: nothing to count


def test_any_branch_over_its_floor_makes_a_good_match() -> None:
    floors = Floors(text=0.4, image=0.27, keywords=0.67)
    assert relevant(Evidence(0.41, None, 0.0), floors)
    assert relevant(Evidence(0.1, 0.3, 0.0), floors)
    assert relevant(Evidence(None, None, 0.67), floors)
    assert not relevant(Evidence(0.39, 0.2, 0.5), floors)


def test_the_text_floor_is_the_collections_text_models_own() -> None:
    from orchestrator.relevance import DEFAULT_TEXT_FLOOR, TEXT_FLOORS, text_floor

    assert text_floor("multilingual-e5-small-q4", None) == TEXT_FLOORS["multilingual-e5-small-q4"] > 0.8
    assert text_floor("all-MiniLM-L6-v2", None) == 0.25
    assert text_floor("a-model-of-the-users", None) == DEFAULT_TEXT_FLOOR
    assert text_floor(None, None) == DEFAULT_TEXT_FLOOR
    assert text_floor("multilingual-e5-small-q4", 0.5) == 0.5  # SEARCH_TEXT_FLOOR wins
