"""What a hit shows of itself: a snippet with the query's words marked, from where they matched (the
transcript, with the time they are spoken; the text read on screen; the caption; the tags; the file's
name), and where in a chunk's words a query is spoken.

Words match by the keyword analysis (keywords.py): folded, stemmed in English and Spanish, numbers as
digits, so "running" marks "runs" and "canción" marks "canciones". Every hit gets a snippet: with no
matched word, the first of caption, transcript, tags, text read, file name that it has.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.keywords import query_terms, query_words, stems, tokens

SNIPPET_CHARS = 160
_MIN_SHOWN = 3  # letters or digits a fallback snippet needs
_CONTEXT_WORDS = (8, 12)  # words of transcript shown before / after a spoken match


@dataclass(frozen=True, slots=True)
class Snippet:
    text: str
    highlights: list[tuple[int, int]] = field(default_factory=list)  # [start, end) offsets in text
    source: str = ""  # transcript / ocr / caption / tags / filename / text
    start_s: float | None = None  # where the matched words are spoken (a transcript match)
    end_s: float | None = None

    @property
    def html(self) -> str:
        """The text HTML-escaped, each highlight in <mark>…</mark>: safe to insert as HTML."""
        out, at = [], 0
        for start, end in self.highlights:
            out.append(html.escape(self.text[at:start]))
            out.append(f"<mark>{html.escape(self.text[start:end])}</mark>")
            at = end
        out.append(html.escape(self.text[at:]))
        return "".join(out)


def matches(text: str, terms: set[str]) -> list[tuple[int, int]]:
    """Offsets of the words of `text` that are one of the query's terms."""
    return [(t.start, t.end) for t in tokens(text) if len(t.word) > 1 and stems(t.word) & terms]


def window(text: str, terms: set[str], source: str, width: int = SNIPPET_CHARS) -> Snippet | None:
    """About `width` characters of `text` from a little before its first matched word; None: no match."""
    text = " ".join(text.split())
    found = matches(text, terms)
    if not found:
        return None
    start = 0
    if len(text) > width:
        start = max(0, found[0][0] - width // 3)
        while start > 0 and not text[start - 1].isspace():  # from a word's beginning
            start -= 1
    end = min(len(text), start + width)
    while end < len(text) and not text[end].isspace():
        end += 1
    lead, tail = ("…" if start > 0 else ""), ("…" if end < len(text) else "")
    shift = len(lead) - start
    marks = [(a + shift, b + shift) for a, b in found if a >= start and b <= end]
    return Snippet(lead + text[start:end] + tail, marks, source)


def make_snippet(payload: dict[str, Any], query: str) -> Snippet:
    """The hit's snippet: where the query's words are spoken, else read, captioned, tagged or named;
    else the first text the hit has, unmarked."""
    terms = query_terms(query)
    spoken = locate(payload.get("words") or [], query)
    if spoken is not None:
        return spoken.snippet
    tags = ", ".join(str(t) for t in payload.get("tags") or [])
    names = " ".join(os.path.basename(str(p)) for p in payload.get("paths") or [payload.get("path") or ""])
    fields = [
        ("transcript", str(payload.get("transcript") or "")),
        ("ocr", str(payload.get("ocr_text") or "")),
        ("caption", str(payload.get("caption") or "")),
        ("tags", tags),
        ("text", str(payload.get("text") or "")),
        ("filename", names.strip()),
    ]
    for source, text in fields:
        if terms and text and (found := window(text, terms, source)) is not None:
            return found
    # Nothing matched: what best says what it is. OCR that read a stray letter or two ("K") says nothing.
    for source in ("caption", "transcript", "tags", "ocr", "text", "filename"):
        text = dict(fields)[source]
        if sum(c.isalnum() for c in text) >= _MIN_SHOWN:
            return _plain(text, source)
    return Snippet("", [], "")


def _plain(text: str, source: str, width: int = SNIPPET_CHARS) -> Snippet:
    text = " ".join(text.split())
    if len(text) <= width:
        return Snippet(text, [], source)
    cut = text[:width].rsplit(" ", 1)[0] or text[:width]
    return Snippet(cut + "…", [], source)


# --- where a phrase is spoken -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpokenMatch:
    matched: int  # distinct query terms spoken in the window
    terms: int  # distinct query words (stopwords aside)
    start_s: float
    end_s: float
    snippet: Snippet

    @property
    def coverage(self) -> float:
        return self.matched / self.terms


def locate(words: Sequence[Sequence[Any]], query: str) -> SpokenMatch | None:
    """Where in a chunk's words ([word, start_s, end_s]) the query is spoken: the window of about the
    query's length holding the most distinct query words (the earliest of equals), with a marked snippet
    of the transcript around it; None when no query word is spoken."""
    asked = query_words(query)
    wanted = [stems(w) for w in asked]  # per query word, its terms
    spoken_order = [t.word for t in tokens(query) if len(t.word) > 1]  # stopwords too: they are spoken
    if not wanted or not words:
        return None

    def which(word: object) -> int | None:
        """The index of the first query word this spoken word is (by any of its terms), else None."""
        heard = set().union(*(stems(t.word) for t in tokens(str(word)) if len(t.word) > 1))
        return next((k for k, terms in enumerate(wanted) if terms & heard), None)

    heard = [which(w[0]) for w in words]
    span = len(asked) + 3
    best: tuple[int, int, int] | None = None  # (matched query words, first, last)
    for i in range(len(words)):
        if heard[i] is None:
            continue
        seen: set[int] = set()
        last = i
        for j in range(i, min(len(words), i + span)):
            if (k := heard[j]) is not None:
                seen.add(k)
                last = j
        if best is None or len(seen) > best[0]:
            best = (len(seen), i, last)
    if best is None:
        return None
    matched, first, last = best
    # The phrase's first words may have been misheard: when the first match is the k-th word of the query,
    # the phrase began about k words earlier (not before the previous sentence's end).
    k = spoken_order.index(asked[heard[first] or 0]) if asked[heard[first] or 0] in spoken_order else 0
    begin = first
    while begin > 0 and first - begin < k and not str(words[begin - 1][0]).rstrip().endswith((".", "?", "!")):
        begin -= 1
    lo, hi = max(0, begin - _CONTEXT_WORDS[0]), min(len(words), last + 1 + _CONTEXT_WORDS[1])
    text, marks = ("…" if lo > 0 else ""), []
    for n in range(lo, hi):
        word = str(words[n][0]).strip()
        if text and not text.endswith("…"):
            text += " "
        inside = list(tokens(word))
        if first <= n <= last and heard[n] is not None and inside:  # the word, not its punctuation
            marks.append((len(text) + inside[0].start, len(text) + inside[-1].end))
        text += word
    text += "…" if hi < len(words) else ""
    start_s, end_s = float(words[begin][1]), float(words[last][2])
    snippet = Snippet(text, marks, "transcript", start_s, end_s)
    return SpokenMatch(matched, len(set(map(frozenset, wanted))), start_s, end_s, snippet)
