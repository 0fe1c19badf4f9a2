"""Each document format read into `Block`s in reading order: headings, text, the pictures found where they
stand, the page they are on. Runs in a decode worker (documents.py); every parser here is a maintained,
permissively licensed library: PDFium through pypdfium2 (Apache-2.0/BSD-3), python-docx (MIT),
BeautifulSoup with the standard library's HTML parser (MIT), markdown-it-py (MIT)."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from PIL import Image

from orchestrator.media.images import MediaDecodeError

_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")


@dataclass(frozen=True, slots=True)
class Pictures:
    """How pictures are kept: JPEG at most `side` px (encoded as soon as they are read, so a document of a
    thousand scanned pages never holds a thousand decoded bitmaps), `min_side`: smaller ones are left out."""

    side: int
    min_side: int
    quality: int = 85

    def jpeg(self, img: Image.Image, side: int | None = None) -> bytes:
        img = img.convert("RGB")
        longest = side or self.side
        if max(img.size) > longest:
            img.thumbnail((longest, longest))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=self.quality)
        return buf.getvalue()


@dataclass(slots=True)
class Block:
    """A heading (`heading` True: it starts a section) or a run of text, with the pictures that stand there
    (JPEG, `Pictures`) and its 1-based page where the format has pages."""

    text: str
    heading: bool = False
    page: int | None = None
    images: list[bytes] = field(default_factory=list)
    scanned: bool = False  # a page without a text layer: its picture is the page itself (OCR reads it)


@dataclass(slots=True)
class Parsed:
    blocks: list[Block]
    title: str | None = None
    author: str | None = None
    pages: int | None = None
    page_images: dict[int, bytes] = field(default_factory=dict)  # PDF: each page rendered (JPEG, thumbnail)
    page_size: tuple[int, int] = (0, 0)  # PDF: the first page's size in points


def clean(text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\x00", "").splitlines())
    return "\n".join(line for line in lines if line)


# --- PDF ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PdfLimits:
    max_pages: int
    thumb_side: int
    scan_side: int  # a scanned page is rendered this large (longest side) for OCR
    scanned_below_chars: int  # a page with fewer letters and digits in its text layer is read by OCR
    images_per_page: int


def parse_pdf(fh: IO[bytes], limits: PdfLimits, pictures: Pictures) -> Parsed:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        pdf = pdfium.PdfDocument(fh)
    except pdfium.PdfiumError as exc:
        raise MediaDecodeError(f"not a readable PDF: {exc}") from exc
    try:
        count = len(pdf)
        if count == 0:
            raise MediaDecodeError("PDF has no pages")
        if count > limits.max_pages:
            raise MediaDecodeError(f"PDF has {count} pages (DOCUMENT_MAX_PAGES is {limits.max_pages})")
        meta = pdf.get_metadata_dict(skip_empty=True)
        parsed = Parsed([], title=meta.get("Title"), author=meta.get("Author"), pages=count)
        for number in range(1, count + 1):
            page = pdf[number - 1]
            try:
                text = clean(page.get_textpage().get_text_bounded())
                width, height = page.get_size()
                if number == 1:
                    parsed.page_size = (round(width), round(height))
                longest = max(width, height, 1.0)
                thumb = page.render(scale=limits.thumb_side / longest).to_pil()
                parsed.page_images[number] = pictures.jpeg(thumb, limits.thumb_side)
                found = list(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3))
                if found and sum(c.isalnum() for c in text) < limits.scanned_below_chars:
                    # Pictures and (almost) no text layer: a scan. The page itself is read by OCR.
                    rendered = page.render(scale=limits.scan_side / longest).to_pil()
                    scan = pictures.jpeg(rendered, limits.scan_side)
                    parsed.blocks.append(Block(text, page=number, images=[scan], scanned=True))
                    continue
                images: list[bytes] = []
                for obj in found:
                    if len(images) >= limits.images_per_page:
                        break
                    picture = _pdf_image(obj, pictures.min_side)
                    if picture is not None:
                        images.append(pictures.jpeg(picture))
                lines = text.split("\n")
                # PDFs keep no headings: a short first line that is not a sentence stands for one.
                if len(lines) > 1 and len(lines[0]) <= 80 and not lines[0].endswith((".", ",", ";")):
                    parsed.blocks.append(Block(lines[0], heading=True, page=number))
                    lines = lines[1:]
                parsed.blocks.append(Block("\n".join(lines), page=number, images=images))
            finally:
                page.close()
        return parsed
    finally:
        pdf.close()


def _pdf_image(obj: Any, min_side: int) -> Image.Image | None:
    try:
        width, height = obj.get_px_size()
        if min(width, height) < min_side:
            return None  # icons, rules, bullets
        picture: Image.Image = obj.get_bitmap(render=False).to_pil()
        return picture
    except Exception:  # an image PDFium cannot decode is left out, the page is still read
        return None


# --- DOCX -----------------------------------------------------------------------------------------------

_BLIP = "{http://schemas.openxmlformats.org/drawingml/2006/main}blip"
_EMBED = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}embed"


def parse_docx(fh: IO[bytes], pictures: Pictures) -> Parsed:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(fh)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise MediaDecodeError(f"not a readable DOCX document: {exc}") from exc
    except Exception as exc:  # python-docx raises its own PackageNotFoundError and lxml's errors
        raise MediaDecodeError(f"not a readable DOCX document: {type(exc).__name__}: {exc}") from exc
    core = document.core_properties
    parsed = Parsed([], title=core.title or None, author=core.author or None)
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = [" | ".join(clean(cell.text) for cell in row.cells) for row in item.rows]
            parsed.blocks.append(Block("\n".join(r for r in rows if r.strip(" |"))))
            continue
        if not isinstance(item, Paragraph):
            continue
        style = (item.style.name if item.style is not None else "") or ""
        text = clean(item.text)
        images = list(_docx_images(item, pictures))
        is_heading = style.startswith("Heading") or style == "Title"
        if text or images:
            parsed.blocks.append(Block(text, heading=is_heading and bool(text), images=images))
    return parsed


def _docx_images(paragraph: Any, pictures: Pictures) -> Iterator[bytes]:
    part = paragraph.part
    for blip in paragraph._p.iter(_BLIP):
        rel = blip.get(_EMBED)
        target = part.related_parts.get(rel) if rel else None
        blob = getattr(target, "blob", None)
        if not blob:
            continue
        try:
            with Image.open(io.BytesIO(blob)) as img:
                img.load()
                if min(img.size) >= pictures.min_side:
                    yield pictures.jpeg(img)
        except Exception:  # a picture Pillow cannot read (EMF, WMF) is left out
            continue


# --- HTML -----------------------------------------------------------------------------------------------

_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = _HEADINGS | {
    "p", "li", "pre", "blockquote", "td", "th", "dt", "dd", "figcaption", "caption", "div", "section",
    "article", "header", "footer", "main", "aside", "nav", "tr", "br", "hr", "title", "body", "ul", "ol",
}  # fmt: skip
_SKIPPED = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object"}


def parse_html(text: str) -> Parsed:
    from bs4 import BeautifulSoup
    from bs4.element import NavigableString, PreformattedString, Tag

    soup = BeautifulSoup(text, "html.parser")
    title = clean(soup.title.get_text()) if soup.title is not None else None
    blocks: list[Block] = []
    current: list[str] = []
    where: Tag | None = None  # the block element the text in `current` belongs to

    def flush() -> None:
        joined = clean(" ".join(current))
        if joined:
            heading = where is not None and where.name in _HEADINGS
            blocks.append(Block(joined, heading=heading))
        current.clear()

    for node in soup.descendants:
        if not isinstance(node, NavigableString) or isinstance(node, PreformattedString):  # comments, doctype
            continue
        if any(p.name in _SKIPPED for p in node.parents if isinstance(p, Tag)):
            continue
        block = next((p for p in node.parents if isinstance(p, Tag) and p.name in _BLOCKS), None)
        if block is not where:
            flush()
            where = block
        current.append(str(node))
    flush()
    return Parsed(blocks, title=title or None)


# --- Markdown and plain text ----------------------------------------------------------------------------


def parse_markdown(text: str) -> Parsed:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    blocks: list[Block] = []
    heading = False
    for token in tokens:
        if token.type == "heading_open":
            heading = True
        elif token.type == "heading_close":
            heading = False
        elif token.type == "inline":
            words = "".join(
                " " if c.type in ("softbreak", "hardbreak") else c.content
                for c in token.children or []
                if c.type in ("text", "code_inline", "softbreak", "hardbreak")
            )
            if cleaned := clean(words):
                blocks.append(Block(cleaned, heading=heading))
        elif token.type in ("fence", "code_block") and (cleaned := clean(token.content)):
            blocks.append(Block(cleaned))
    title = next((b.text for b in blocks if b.heading), None)
    return Parsed(blocks, title=title)


def parse_text(text: str) -> Parsed:
    """Paragraphs are separated by blank lines; a text has no headings."""
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    return Parsed([Block(c) for p in paragraphs if (c := clean(p))])
