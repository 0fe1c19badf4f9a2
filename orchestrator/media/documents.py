"""Documents (PDF, DOCX, HTML, Markdown, plain text) cut into passages: the chunks of a document.

A passage is at most `passage_words` words of one section (text under one heading) of one page: never
across a page or a heading, so a hit names its page and its heading. The pictures of a passage (a scanned
page rendered for OCR, the pictures a page or paragraph holds) are its frames: the image models read them
like a video's keyframes. Every passage has a thumbnail: its page rendered (PDF), else a card with its
heading and first lines. Runs in a decode worker (decode_pool.py: time and memory limits, a crash costs
that file only), like video decoding.
"""

from __future__ import annotations

import io
import os
import textwrap
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from orchestrator.media.document_formats import (
    Parsed,
    PdfLimits,
    Pictures,
    parse_docx,
    parse_html,
    parse_markdown,
    parse_pdf,
    parse_text,
)
from orchestrator.media.images import MediaDecodeError
from orchestrator.media.probe import open_regular
from orchestrator.media.sniff import DOCX_MIME, HTML_MIME, MARKDOWN_MIME, PDF_MIME, TEXT_MIME

# What reading documents does (the parsers, scanned-page detection, passage cutting, pictures kept): part of
# the "document" chunk plan (manifest.py), so a change here rebuilds collections' documents.
READER = "documents@1"
# Text files larger than this are not read as documents (a log file of gigabytes is not a document).
MAX_TEXT_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class DocumentOptions:
    passage_words: int = 150
    max_pages: int = 2000
    max_passages: int = 20000
    ml_max_side: int = 1024  # a picture's longest side for the image models
    scan_side: int = 1600  # a scanned page is rendered this large for OCR
    thumb_side: int = 256
    scanned_below_chars: int = 32  # a page of pictures with fewer letters and digits than this is a scan
    images_per_page: int = 4
    min_image_side: int = 96  # smaller pictures are icons, bullets and rules
    jpeg_quality: int = 85
    mime: str = ""  # the sniffed type of the file at hand (sniff.py)

    def __post_init__(self) -> None:
        if self.passage_words < 10 or self.max_pages < 1 or self.max_passages < 1:
            raise ValueError("need passage_words >= 10, max_pages >= 1 and max_passages >= 1")


@dataclass(frozen=True, slots=True)
class Passage:
    index: int
    text: str
    heading: str  # the heading it stands under ("" before the first, or in a plain text)
    section: int  # 1-based; 0 before the first heading
    page: int | None  # 1-based; None for formats without pages
    images: tuple[bytes, ...]  # JPEG, at most ml_max_side
    thumbnail_jpeg: bytes


@dataclass(frozen=True, slots=True)
class DecodedDocument:
    passages: list[Passage]
    facts: dict[str, Any] = field(default_factory=dict)  # format, title, author, pages, sections
    width: int = 0  # the first page's size (PDF points), 0 for formats without pages
    height: int = 0


def decode_document(path: str, options: DocumentOptions) -> DecodedDocument:
    """Read ``path`` (opened the way prepare opens files) and cut it into passages. ``MediaDecodeError``
    with the reason when it cannot be read."""
    try:
        fh = open(path, "rb", opener=open_regular)
    except MediaDecodeError:
        raise
    except OSError as exc:
        raise MediaDecodeError(f"cannot open document: {exc.strerror or exc}") from exc
    with fh:
        parsed = _parse(fh, options)
    fmt = _FORMATS.get(options.mime, "text")
    passages = _passages(parsed, options)
    if not passages:
        raise MediaDecodeError(f"no text or pictures in this {fmt.upper()} document")
    facts = {
        "format": fmt,
        "title": parsed.title,
        "author": parsed.author,
        "pages": parsed.pages,
        "sections": max(p.section for p in passages),
    }
    width, height = parsed.page_size
    return DecodedDocument(passages, {k: v for k, v in facts.items() if v is not None}, width, height)


_FORMATS = {
    PDF_MIME: "pdf",
    DOCX_MIME: "docx",
    HTML_MIME: "html",
    MARKDOWN_MIME: "markdown",
    TEXT_MIME: "text",
}


def _parse(fh: io.BufferedReader, options: DocumentOptions) -> Parsed:
    pictures = Pictures(options.ml_max_side, options.min_image_side, options.jpeg_quality)
    if options.mime == PDF_MIME:
        limits = PdfLimits(
            options.max_pages,
            options.thumb_side,
            options.scan_side,
            options.scanned_below_chars,
            options.images_per_page,
        )
        return parse_pdf(fh, limits, pictures)
    if options.mime == DOCX_MIME:
        return parse_docx(fh, pictures)
    size = os.fstat(fh.fileno()).st_size
    if size > MAX_TEXT_BYTES:
        raise MediaDecodeError(f"text document too large: {size} bytes (limit {MAX_TEXT_BYTES})")
    text = fh.read().decode("utf-8", errors="replace").lstrip("\ufeff")
    if options.mime == HTML_MIME:
        return parse_html(text)
    if options.mime == MARKDOWN_MIME:
        return parse_markdown(text)
    return parse_text(text)


@dataclass(slots=True)
class _Open:
    """The passage being filled."""

    heading: str = ""
    section: int = 0
    page: int | None = None
    words: list[str] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)


def _passages(parsed: Parsed, options: DocumentOptions) -> list[Passage]:
    out: list[Passage] = []
    current = _Open()

    def close() -> None:
        if current.words or current.images:
            if len(out) >= options.max_passages:
                raise MediaDecodeError(f"more than {options.max_passages} passages (a document too long)")
            out.append(_passage(len(out), current, parsed, options))
        current.words, current.images = [], []

    for block in parsed.blocks:
        if block.page != current.page:
            close()
            current.page = block.page
        if block.heading:
            close()
            current.heading = block.text.replace("\n", " ")
            current.section += 1
            continue
        current.images.extend(block.images)
        for word in block.text.split():
            current.words.append(word)
            if len(current.words) >= options.passage_words:
                close()
        if block.scanned:
            close()
    close()
    return out


def _passage(index: int, current: _Open, parsed: Parsed, options: DocumentOptions) -> Passage:
    text = " ".join(current.words)
    page_image = parsed.page_images.get(current.page) if current.page is not None else None
    if page_image is None:
        card = _card(current.heading, text, options.thumb_side)
        page_image = Pictures(options.thumb_side, 0, options.jpeg_quality).jpeg(card)
    return Passage(
        index=index,
        text=text,
        heading=current.heading,
        section=current.section,
        page=current.page,
        images=tuple(current.images),
        thumbnail_jpeg=page_image,
    )


def _card(heading: str, text: str, side: int) -> Image.Image:
    """A page-like picture of a passage of a format without pages: its heading and first lines."""
    width, height = side, int(side * 1.3)
    card = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(card)
    margin = max(6, side // 20)
    big_size, small_size = max(10, side // 14), max(8, side // 20)
    big = ImageFont.load_default(size=big_size)
    small = ImageFont.load_default(size=small_size)
    y = margin
    columns = max(10, (width - 2 * margin) // max(4, side // 40))
    for line in textwrap.wrap(heading, max(8, int(columns / 1.4)))[:2]:
        draw.text((margin, y), line, fill="black", font=big)
        y += int(big_size * 1.3)
    for line in textwrap.wrap(text, columns):
        if y > height - margin - small_size:
            break
        draw.text((margin, y), line, fill=(60, 60, 60), font=small)
        y += int(small_size * 1.35)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(200, 200, 200))
    return card
