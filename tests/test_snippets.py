from orchestrator.keywords import query_terms
from orchestrator.snippets import Snippet, locate, make_snippet, window


def spoken(text: str, start: float, step: float = 0.4) -> list[list[object]]:
    return [
        [w, round(start + i * step, 2), round(start + i * step + 0.3, 2)] for i, w in enumerate(text.split())
    ]


def marked(snippet: Snippet) -> list[str]:
    return [snippet.text[a:b] for a, b in snippet.highlights]


def test_short_text_is_returned_whole_with_its_matches_marked() -> None:
    found = window("Text:  BREAKING   NEWS", query_terms("news"), "ocr")
    assert found is not None and found.text == "Text: BREAKING NEWS" and marked(found) == ["NEWS"]
    assert found.html == "Text: BREAKING <mark>NEWS</mark>"


def test_window_around_first_matching_word() -> None:
    text = "Shows: " + "lorem ipsum " * 30 + "Text: FLOOD IN VALENCIA " + "dolor sit " * 30
    found = window(text, query_terms("valencia floods"), "text")
    assert found is not None
    assert "FLOOD IN VALENCIA" in found.text and marked(found) == ["FLOOD", "VALENCIA"]
    assert found.text.startswith("…") and found.text.endswith("…") and len(found.text) <= 175
    assert window("alpha " * 60, query_terms("zebra"), "text") is None


def test_words_match_by_stem_accent_and_language() -> None:
    assert marked(window("Las canciones de los niños", query_terms("canción nino"), "ocr")) == [  # type: ignore[arg-type]
        "canciones",
        "niños",
    ]
    assert marked(window("She was running home", query_terms("runs"), "caption")) == ["running"]  # type: ignore[arg-type]


def test_html_is_escaped_around_the_marks() -> None:
    found = window("<b>budget</b> & <script>", query_terms("budget"), "ocr")
    assert found is not None
    assert found.html == "&lt;b&gt;<mark>budget</mark>&lt;/b&gt; &amp; &lt;script&gt;"


def test_every_hit_gets_a_snippet_from_where_it_matched_else_what_it_has() -> None:
    payload = {
        "ocr_text": "QUARTERLY BUDGET",
        "caption": "a man at a desk",
        "tags": ["desk", "monitor"],
        "paths": ["/m/Board_Meeting.jpg"],
    }
    assert make_snippet(payload, "budget").source == "ocr"
    assert marked(make_snippet(payload, "monitors")) == ["monitor"]
    assert make_snippet(payload, "board meeting").source == "filename"
    nothing = make_snippet(payload, "zebra")
    assert (nothing.text, nothing.source, nothing.highlights) == ("a man at a desk", "caption", [])
    only_tags = make_snippet({"tags": ["dog", "beach"]}, "zebra")
    assert (only_tags.text, only_tags.source) == ("dog, beach", "tags")
    # Tags say more than a stray letter OCR read; a file name is the last resort.
    stray = make_snippet({"ocr_text": "K", "tags": ["person", "helmet"], "paths": ["/a/x.jpg"]}, "zebra")
    assert (stray.text, stray.source) == ("person, helmet", "tags")
    assert make_snippet({"ocr_text": "K", "paths": ["/a/launch.jpg"]}, "zebra").source == "filename"


def test_a_spoken_match_gives_the_time_and_marks_the_words() -> None:
    payload = {"words": spoken("Good evening. Heavy rain caused a flood in Valencia.", 10.0)}
    found = make_snippet(payload, "flood valencia")
    assert found.source == "transcript" and found.start_s == 12.4
    assert marked(found) == ["flood", "Valencia"]


def test_locate_finds_where_the_phrase_is_spoken() -> None:
    words = spoken(
        "Good evening. The harbour authority reported a flood near the old bridge on Monday.", 30.0
    )
    words += spoken("In other news the orchestra launched an electric ferry.", 36.0)
    found = locate(words, "orchestra electric ferry")
    assert found is not None
    assert (found.matched, found.terms) == (3, 3)
    assert found.start_s == 37.6  # "orchestra" is the 5th word of the second sentence
    assert found.end_s >= found.start_s and "electric ferry." in found.snippet.text


def test_locate_prefers_the_window_with_most_query_words() -> None:
    words = spoken("a flood here and then much later a flood near the old bridge", 0.0)
    found = locate(words, "flood near the old bridge")
    assert found is not None and found.start_s == 3.2  # the second "flood", followed by near/old/bridge


def test_locate_ignores_case_punctuation_and_needs_a_spoken_word() -> None:
    words = spoken("Breaking NEWS, Valencia!", 5.0)
    found = locate(words, "valencia")
    assert found is not None
    assert (found.start_s, found.end_s, found.snippet.text) == (5.8, 6.1, "Breaking NEWS, Valencia!")
    assert locate(words, "zebra crossing") is None
    assert locate([], "valencia") is None


def test_locate_matches_numbers_written_as_digits_or_words() -> None:
    found = locate(spoken("The weather service released 50 rescued owls", 10.0), "fifty rescued owls")
    assert found is not None and (found.matched, found.start_s) == (3, 11.6)
    found = locate(spoken("seventeen seagulls", 0.0), "17 seagulls")
    assert found is not None and found.matched == 2
    found = locate(spoken("llegaron diecisiete gaviotas", 0.0), "17 gaviotas")
    assert found is not None and found.matched == 2


def test_locate_steps_back_over_misheard_first_words() -> None:
    words = spoken("Last night it rained. Be keepin in the village recorded a song about volcanoes.", 0.0)
    found = locate(words, "Beekeepers in the village recorded a song about volcanoes")
    assert found is not None
    # "village" is the 4th query word, so the phrase began 3 words earlier: "keepin" (the true start, "Be",
    # is 0.4 s before: one misheard word became two).
    assert found.start_s == 2.0
    found = locate(spoken("It rained. Village fete.", 0.0), "Beekeepers in the village")
    assert found is not None and found.start_s == 0.8  # never back into the previous sentence
