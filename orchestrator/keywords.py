"""Keyword analysis and BM25 sparse vectors, English and Spanish.

A text becomes terms: words (Unicode letters and digits) case- and accent-folded, the stopwords of its
language dropped (the language whose stopwords it uses more; English when it uses neither), number words
written as digits ("seventeen", "diecisiete" -> "17"), and each word stemmed by the Snowball stemmer of
that language. A query's words are stemmed both ways, so a query in either language meets a text stemmed
in its own.

Sparse vectors: each term hashed to a stable 31-bit index (crc32), the document side weighted by BM25's
term-frequency part (k1, b, a fixed average length, as Qdrant's own BM25 does); the engine applies IDF
over the collection (sparse vectors with Modifier.IDF), so a point's score is BM25. A query's terms weigh
1 each.

`ANALYZER` names this analysis; a collection records the one its points were made with (manifest.py),
and collections from before it ("" in their manifest) keep being queried with `legacy_sparse_vector`.
"""

from __future__ import annotations

import functools
import math
import os
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import snowballstemmer  # type: ignore[import-untyped]  # no stubs, no py.typed

from orchestrator.clients.vectors import SparseVector

ANALYZER = "bm25-en-es@1"
LEGACY_ANALYZER = ""  # hashed raw tokens, log term frequency (before ANALYZER)

# BM25's term-frequency saturation and length normalisation; the average length is fixed (a chunk's
# text: a 30 s transcript is ~40 terms after stopwords, an image's tags and caption ~10).
K1 = 1.2
B = 0.75
AVG_TERMS = 32.0

_WORD = re.compile(r"[^\W_]+", re.UNICODE)  # letters and digits: "evening_news" is two words

# Snowball's stopword lists (snowballstem.org), folded; "no"/"not"/"sin" kept: they change a meaning.
_EN_STOP = frozenset(
    "a about above after again against all am an and any are as at be because been before being below "
    "between both but by can could did do does doing down during each few for from further had has have "
    "having he her here hers herself him himself his how i if in into is it its itself just me more most "
    "my myself nor of off on once only or other our ours ourselves out over own same she should so some "
    "such than that the their theirs them themselves then there these they this those through to too "
    "under until up very was we were what when where which while who whom why will with would you your "
    "yours yourself yourselves".split()
)
_ES_STOP = frozenset(
    "de la que el en y a los del se las por un para con una su al lo como mas pero sus le ya o este si "
    "porque esta entre cuando muy sobre tambien me hasta hay donde quien desde todo nos durante todos uno "
    "les ni contra otros ese eso ante ellos e esto mi antes algunos que unos yo otro otras otra el tanto "
    "esa estos mucho quienes nada muchos cual poco ella estar estas algunas algo nosotros mi mis tu te ti "
    "tu tus ellas nosotras vosotros vosotras os mio mia mios mias tuyo tuya tuyos tuyas suyo suya suyos "
    "suyas nuestro nuestra nuestros nuestras vuestro vuestra vuestros vuestras esos esas estoy estas esta "
    "estamos estais estan es son soy eres somos sois era eran fue fueron ha han he has hemos habia "
    "ser sera seran sido siendo tiene tienen tengo tenia".split()
)
STOPWORDS = {"english": _EN_STOP, "spanish": _ES_STOP}

_EN_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
).split()
_ES_NUMBERS = (
    "cero _ dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince dieciseis "
    "diecisiete dieciocho diecinueve veinte"
).split()  # "uno"/"una" are also articles: left as words
NUMBERS: dict[str, str] = {
    **{w: str(n) for n, w in enumerate(_EN_NUMBERS)},
    **{w: str(n) for n, w in enumerate(_ES_NUMBERS) if w != "_"},
    **{w: str(10 * n) for n, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), 3)},
    **{
        w: str(10 * n)
        for n, w in enumerate("treinta cuarenta cincuenta sesenta setenta ochenta noventa".split(), 3)
    },
    "hundred": "100",
    "cien": "100",
    "thousand": "1000",
    "mil": "1000",
}

LANGUAGES = ("english", "spanish")


@functools.cache
def _stemmer(language: str) -> snowballstemmer.stemmer:
    return snowballstemmer.stemmer(language)


def fold(word: str) -> str:
    """Case- and accent-folded: "Canción" -> "cancion", "Ñandú" -> "nandu"."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclass(frozen=True, slots=True)
class Token:
    start: int  # character offsets in the analysed text
    end: int
    word: str  # folded


def tokens(text: str) -> Iterator[Token]:
    """Every word of `text` with its offsets."""
    for match in _WORD.finditer(text):
        yield Token(match.start(), match.end(), fold(match.group()))


def keeps(word: str, lang: str) -> bool:
    """A word carries keyword signal: two letters or more, not a stopword of `lang`."""
    return len(word) > 1 and word not in STOPWORDS[lang]


def language(words: Iterable[str]) -> str:
    """ "spanish" when more of the (folded) words are Spanish stopwords than English ones, else "english"."""
    en = es = 0
    for word in words:
        en += word in _EN_STOP
        es += word in _ES_STOP
    return "spanish" if es > en else "english"


@functools.lru_cache(maxsize=65536)
def stem(word: str, lang: str) -> str:
    """A folded, non-stop word's term: a number as digits, else its stem in `lang`."""
    if word in NUMBERS:
        return NUMBERS[word]
    if word.isdigit():
        return word.lstrip("0") or "0"
    return str(_stemmer(lang).stemWord(word))


@functools.lru_cache(maxsize=65536)
def stems(word: str) -> frozenset[str]:
    """A (folded) word's terms: its stem in each language (cached: the stemmers are pure Python)."""
    return frozenset(stem(word, lang) for lang in LANGUAGES)


def document_terms(text: str) -> list[str]:
    """A stored text's terms, in order (stopwords out), stemmed in the text's language."""
    words = [t.word for t in tokens(text)]
    lang = language(words)
    return [stem(w, lang) for w in words if keeps(w, lang)]


def query_words(text: str) -> list[str]:
    """A query's words that carry signal (its language's stopwords out; all of them if that is all)."""
    words = [t.word for t in tokens(text)]
    lang = language(words)
    return [w for w in words if keeps(w, lang)] or [w for w in words if len(w) > 1]


def query_terms(text: str) -> set[str]:
    """A query's terms: each word stemmed in both languages."""
    return {term for word in query_words(text) for term in stems(word)}


def filename_words(paths: Iterable[str]) -> str:
    """The words of files' names (without extension; "Evening_News-2024.mp4" -> "Evening News 2024"):
    searched as keywords beside a chunk's text."""
    names = dict.fromkeys(os.path.splitext(os.path.basename(p))[0] for p in paths)
    return " ".join(t.group() for name in names for t in _WORD.finditer(name))


def term_index(term: str) -> int:
    return zlib.crc32(term.encode("utf-8")) & 0x7FFFFFFF


def sparse_vector(text: str) -> SparseVector:
    """A stored text's BM25 document vector (IDF is the engine's)."""
    counts = Counter(term_index(t) for t in document_terms(text))
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / AVG_TERMS)
    indices = sorted(counts)
    return SparseVector(indices=indices, values=[counts[i] * (K1 + 1) / (counts[i] + norm) for i in indices])


def query_vector(text: str) -> SparseVector:
    """A query's sparse vector: weight 1 per term."""
    indices = sorted({term_index(t) for t in query_terms(text)})
    return SparseVector(indices=indices, values=[1.0] * len(indices))


# --- collections made before ANALYZER ------------------------------------------------------------

_LEGACY_TOKEN = re.compile(r"\w+", re.UNICODE)


def legacy_tokenize(text: str) -> list[str]:
    return [t for t in _LEGACY_TOKEN.findall(text.casefold()) if len(t) > 1]


def legacy_sparse_vector(text: str) -> SparseVector:
    """The keyword vector of collections made before ANALYZER: raw tokens, damped counts."""
    counts = Counter(zlib.crc32(t.encode("utf-8")) & 0x7FFFFFFF for t in legacy_tokenize(text))
    indices = sorted(counts)
    return SparseVector(indices=indices, values=[1.0 + math.log(counts[i]) for i in indices])


def keyword_query(text: str, analyzer: str) -> SparseVector:
    """The query vector for a collection whose points were made by `analyzer`."""
    return query_vector(text) if analyzer == ANALYZER else legacy_sparse_vector(text)
