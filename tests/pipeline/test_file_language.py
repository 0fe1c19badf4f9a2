"""A file's language and the chunks transcribed again in it (orchestrator/pipeline/file_language.py)."""

from __future__ import annotations

from orchestrator.pipeline.file_language import (
    SURE,
    Heard,
    file_language,
    prefer_second,
    to_transcribe_again,
    word_confidence,
)


def _asr(language: str | None, probability: float, *spans: tuple[float, float]) -> dict[str, object]:
    segments = [{"start": a, "end": b, "text": "x", "words": []} for a, b in spans]
    return {"language": language, "language_probability": probability, "segments": segments}


def test_heard_sums_the_speech_of_its_segments() -> None:
    heard = Heard.of(3, _asr("es", 0.61, (0.5, 4.0), (5.0, 9.5)))
    assert (heard.index, heard.language, heard.probability, heard.speech_s) == (3, "es", 0.61, 8.0)
    assert Heard.of(0, {"language": None, "language_probability": None, "segments": []}).speech_s == 0.0
    assert Heard.of(0, {"segments": [{"start": "bad"}], "language": 7}).language is None


def test_an_unsure_chunk_in_another_language_takes_the_files() -> None:
    heard = [
        Heard(0, "es", 0.62, 12.0),
        Heard(1, "la", 0.42, 11.0),  # espeak-ng Spanish heard as Latin
        Heard(2, "es", 0.9, 13.0),
        Heard(3, "en", 0.55, 2.0),
    ]
    assert file_language(heard) == "es"
    assert to_transcribe_again(heard, "es") == [1, 3]


def test_a_sure_chunk_keeps_its_own_language_in_a_file_that_switches() -> None:
    heard = [Heard(0, "es", 0.7, 14.0), Heard(1, "es", 0.66, 14.0), Heard(2, "en", SURE, 12.0)]
    assert file_language(heard) == "es"
    assert to_transcribe_again(heard, "es") == []


def test_weights_are_speech_times_probability_and_silence_counts_for_nothing() -> None:
    heard = [Heard(0, "en", 0.95, 6.0), Heard(1, "es", 0.5, 10.0), Heard(2, "fr", 0.3, 0.0)]
    assert file_language(heard) == "en"  # 5.7 against 5.0
    assert to_transcribe_again(heard, "en") == [1]  # the silent chunk is left alone
    assert file_language([Heard(0, None, 0.0, 0.0)]) is None
    assert to_transcribe_again(heard, None) == []


def _words(*probabilities: float) -> dict[str, object]:
    words = [{"word": "w", "start": 0.0, "end": 0.1, "probability": p} for p in probabilities]
    return {
        "language": "xx",
        "language_probability": 0.5,
        "segments": [{"start": 0, "end": 1, "words": words}],
    }


def test_the_transcript_with_surer_words_is_kept() -> None:
    # A Spanish chunk misheard as Latin: the Spanish decode's words are surer, it replaces the first.
    assert word_confidence(_words(0.9, 0.7)) == 0.8
    assert prefer_second(_words(0.3, 0.4), _words(0.8, 0.7))
    # The English part of a Spanish file: decoded as Spanish its words are unsure, the English stays.
    assert not prefer_second(_words(0.85, 0.9), _words(0.4, 0.5))
    assert not prefer_second(_words(0.5), {"segments": []})  # nothing heard the second time
    assert prefer_second({"segments": []}, _words(0.2))
