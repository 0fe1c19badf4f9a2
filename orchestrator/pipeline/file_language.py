"""A file's spoken language, and which of its chunks to transcribe again in it (pure).

Whisper detects each chunk's language from that chunk alone. Over a chunk of clear speech it is right; over a
few words, noise or synthetic speech it can name a language nobody speaks in the file (espeak-ng's Spanish was
heard as Latin and as Thai at 0.4-0.7). The file's language is the one with the most speech, each chunk's
speech weighted by its detection's probability; a chunk detected in another language with a probability below
`SURE` is transcribed again in the file's language, and the transcript whose words the decoder was surer of
(mean word probability) is kept: a chunk misheard as Latin reads better as Spanish, while the English part of
a file that switches from Spanish stays English (decoded as Spanish, its words come out unsure). A chunk
detected in another language at `SURE` or above is not asked again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator import answers

# At or above this probability a chunk's own language stands even against its file's. Whisper base on this
# project's speech: right detections of clear English 0.9-1.0, of espeak-ng Spanish 0.5-0.9; the wrong
# ones 0.4-0.7.
SURE = 0.8


@dataclass(frozen=True, slots=True)
class Heard:
    """What the ASR said of one chunk."""

    index: int
    language: str | None
    probability: float
    speech_s: float

    @classmethod
    def of(cls, index: int, asr: Mapping[str, Any]) -> Heard:
        """From an ASR answer's fields (language, language_probability, segments)."""
        language = asr.get("language")
        probability = answers.number(asr.get("language_probability")) or 0.0
        speech = 0.0
        for segment in answers.items(asr.get("segments")):
            start, end = answers.number(segment.get("start")), answers.number(segment.get("end"))
            if start is not None and end is not None and end > start:
                speech += end - start
        return cls(index, language if isinstance(language, str) else None, probability, speech)


def file_language(heard: Iterable[Heard]) -> str | None:
    """The language with the most speech × probability (None: nothing was said)."""
    weight: dict[str, float] = {}
    for h in heard:
        if h.language is not None and h.speech_s > 0:
            weight[h.language] = weight.get(h.language, 0.0) + h.speech_s * h.probability
    if not weight:
        return None
    return max(sorted(weight), key=lambda language: weight[language])


def to_transcribe_again(heard: Iterable[Heard], language: str | None) -> list[int]:
    """The chunks whose unsure language is not the file's."""
    if language is None:
        return []
    return [
        h.index
        for h in heard
        if h.language is not None and h.language != language and h.probability < SURE and h.speech_s > 0
    ]


def word_confidence(asr: Mapping[str, Any]) -> float | None:
    """The mean probability of an ASR answer's words (None: no words)."""
    probabilities = [
        p
        for segment in answers.items(asr.get("segments"))
        for word in answers.items(segment.get("words"))
        if (p := answers.number(word.get("probability"))) is not None
    ]
    return sum(probabilities) / len(probabilities) if probabilities else None


def prefer_second(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """Whether the transcript in the file's language (``second``) reads better than the chunk's own."""
    own, other = word_confidence(first), word_confidence(second)
    if other is None:
        return False
    return own is None or other > own
