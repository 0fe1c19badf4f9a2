from orchestrator.search import snippet


def test_short_text_is_returned_whole() -> None:
    assert snippet("Text:  BREAKING   NEWS", "news") == "Text: BREAKING NEWS"


def test_window_around_first_matching_word() -> None:
    text = "Shows: " + "lorem ipsum " * 30 + "Text: FLOOD IN VALENCIA " + "dolor sit " * 30
    out = snippet(text, "valencia flood")
    assert "FLOOD IN VALENCIA" in out
    assert out.startswith("…") and out.endswith("…")
    assert len(out) <= 162


def test_no_match_gives_the_beginning() -> None:
    text = "alpha " * 60
    assert snippet(text, "zebra").startswith("alpha alpha")
