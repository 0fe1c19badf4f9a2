"""Reading documents into passages (in-process; the pipeline runs them in a decode worker): pages, sections,
headings, word limits, scanned pages, pictures, and clear errors for what cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.media.documents import DocumentOptions, decode_document
from orchestrator.media.images import MediaDecodeError
from orchestrator.media.sniff import DOCX_MIME, HTML_MIME, MARKDOWN_MIME, PDF_MIME, TEXT_MIME, sniff
from scripts.sample_documents import docx_file, scanned_pdf, sign_picture, text_pdf


def _read(path: Path, **options: object) -> list[tuple[int | None, int, str, str, int]]:
    mime = sniff(path.read_bytes()[:256], path.name).mime
    decoded = decode_document(str(path), DocumentOptions(mime=mime, **options))  # type: ignore[arg-type]
    for passage in decoded.passages:
        assert passage.thumbnail_jpeg[:3] == b"\xff\xd8\xff"
    return [(p.page, p.section, p.heading, p.text, len(p.images)) for p in decoded.passages]


def test_pdf_pages_keep_their_numbers_and_first_line_headings(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(
        text_pdf([["Harbour", "The ferry leaves at nine."], ["Budget", "A new bridge."]], title="T")
    )
    assert _read(path) == [
        (1, 1, "Harbour", "The ferry leaves at nine.", 0),
        (2, 2, "Budget", "A new bridge.", 0),
    ]
    decoded = decode_document(str(path), DocumentOptions(mime=PDF_MIME))
    assert decoded.facts == {"format": "pdf", "title": "T", "pages": 2, "sections": 2}
    assert (decoded.width, decoded.height) == (612, 792)


def test_a_page_without_a_text_layer_is_its_own_picture_for_ocr(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(scanned_pdf(["ROAD CLOSED"]))
    assert _read(path) == [(1, 0, "", "", 1)]


def test_passages_never_exceed_the_word_limit_nor_cross_a_page_or_heading(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(95)]
    lines = [" ".join(words[i : i + 10]) for i in range(0, 95, 10)]
    path = tmp_path / "long.pdf"
    path.write_bytes(text_pdf([["Long", *lines], ["Next", "short page"]]))
    read = _read(path, passage_words=40)
    assert [(p, s, h, len(t.split())) for p, s, h, t, _ in read] == [
        (1, 1, "Long", 40),
        (1, 1, "Long", 40),
        (1, 1, "Long", 15),
        (2, 2, "Next", 2),
    ]
    assert " ".join(t for _, _, h, t, _ in read if h == "Long").split() == words


def test_docx_headings_paragraphs_tables_and_pictures(tmp_path: Path) -> None:
    path = docx_file(
        tmp_path / "bees.docx",
        [("Pollination", ["Bees visit almond flowers."]), ("Methods", ["We counted hives."])],
        picture=sign_picture(["HIVE"], (600, 300)),
    )
    assert _read(path) == [
        (None, 1, "Pollination", "Bees visit almond flowers.", 1),
        (None, 2, "Methods", "We counted hives.", 0),
    ]
    assert sniff(path.read_bytes()[:256], path.name).mime == DOCX_MIME


def test_html_reads_text_under_headings_and_never_scripts(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<!doctype html><html><head><title>Eruption</title><style>p{}</style>"
        "<script>var lava=1</script></head><body><p>Intro text.</p><h1>Volcano</h1>"
        "<p>Lava <b>reached</b> the sea.</p><ul><li>one</li><li>two</li></ul><!-- a comment -->"
        "<h2>Flights</h2><p>Grounded.</p></body></html>"
    )
    assert _read(path) == [
        (None, 0, "", "Intro text.", 0),
        (None, 1, "Volcano", "Lava reached the sea. one two", 0),
        (None, 2, "Flights", "Grounded.", 0),
    ]
    assert sniff(path.read_bytes()[:256], "no-extension").mime == HTML_MIME


def test_markdown_and_plain_text(tmp_path: Path) -> None:
    md = tmp_path / "bread.md"
    md.write_text(
        "# Recipes\n\nMix *flour* and water.\n\n## Bread\n\nBake `40` minutes.\n\n```\nx = 1\n```\n"
    )
    assert _read(md) == [
        (None, 1, "Recipes", "Mix flour and water.", 0),
        (None, 2, "Bread", "Bake 40 minutes. x = 1", 0),
    ]
    assert sniff(md.read_bytes(), md.name).mime == MARKDOWN_MIME
    txt = tmp_path / "notes.txt"
    txt.write_bytes("\ufeffFirst note.\r\n\r\nSecond, with an accent: café.".encode())
    assert _read(txt) == [(None, 0, "", "First note. Second, with an accent: café.", 0)]
    assert sniff(txt.read_bytes(), txt.name).mime == TEXT_MIME


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("broken.pdf", b"%PDF-1.4\nnot a pdf at all\n", "not a readable PDF"),
        ("fake.docx", b"PK\x03\x04" + b"\x00" * 64, "not a readable DOCX document"),
        ("blank.md", b"\n\n   \n", "no text or pictures"),
    ],
)
def test_what_cannot_be_read_fails_with_a_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    mime = sniff(content[:256] or b" ", name).mime
    with pytest.raises(MediaDecodeError, match=reason):
        decode_document(str(path), DocumentOptions(mime=mime))


def test_too_many_pages_fails_before_reading_them(tmp_path: Path) -> None:
    path = tmp_path / "big.pdf"
    path.write_bytes(text_pdf([["page"]] * 5))
    with pytest.raises(MediaDecodeError, match="5 pages"):
        decode_document(str(path), DocumentOptions(mime=PDF_MIME, max_pages=4))


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_text("secret")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with pytest.raises(MediaDecodeError, match=r"symlink|cannot open"):
        decode_document(str(link), DocumentOptions(mime=TEXT_MIME))


def test_sniffing_documents_needs_agreeing_content_and_name() -> None:
    assert sniff(b"%PDF-1.7 ...", "whatever.bin").media_type == "document"
    assert sniff(b"PK\x03\x04rest", "archive.zip").media_type == "unknown"
    assert sniff(b"plain words", "notes").media_type == "unknown"  # text without a document name
    assert sniff(b"\x00\x01binary", "notes.txt").media_type == "unknown"
    assert sniff("caf\u00e9".encode()[:4], "a.txt").media_type == "document"  # a character cut at the end
    assert sniff(b"\xff\xd8\xff\xe0", "photo.txt").media_type == "image"  # content wins over the name
