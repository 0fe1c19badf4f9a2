"""Small real documents for the tests and the demo: PDFs written by hand (text pages in a standard font, a
scanned page that is one JPEG) and DOCX files through python-docx."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF file of these objects (numbered from 1; object 1 is the catalog) with a correct xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R /Info 3 0 R >>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, xref)
    )
    return out.getvalue()


def _escape(text: str) -> bytes:
    return text.encode("latin-1").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def text_pdf(pages: list[list[str]], title: str = "Test document") -> bytes:
    """A PDF whose pages hold these lines of text (Helvetica, latin-1), the first line of each in bold."""
    kids = " ".join(f"{5 + 2 * i} 0 R" for i in range(len(pages))).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % len(pages),
        b"<< /Title (" + _escape(title) + b") >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, lines in enumerate(pages):
        stream = (
            b"BT /F1 12 Tf 72 720 Td 14 TL\n"
            + b"".join(b"(" + _escape(line) + b") '\n" for line in lines)
            + b"ET"
        )
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
            b"/Contents %d 0 R >>" % (6 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    return _pdf(objects)


def sign_picture(lines: list[str], size: tuple[int, int] = (1200, 900)) -> Image.Image:
    """Black text on white, large enough for OCR (a scanned page, a poster)."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=64)
    for n, line in enumerate(lines):
        draw.text((60, 80 + n * 110), line, fill="black", font=font)
    return img


def scanned_pdf(lines: list[str]) -> bytes:
    """A one-page PDF without a text layer: the page is one JPEG of these lines."""
    picture = sign_picture(lines)
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=90)
    jpeg = buf.getvalue()
    w, h = picture.size
    content = b"q 612 0 0 459 0 166 cm /Im1 Do Q"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Title (Scanned) >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Im1 5 0 R >> >> "
        b"/Contents 6 0 R >>",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8 "
        b"/Filter /DCTDecode /Length %d >>\nstream\n" % (w, h, len(jpeg)) + jpeg + b"\nendstream",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    return _pdf(objects)


def docx_file(path: Path, sections: list[tuple[str, list[str]]], picture: Image.Image | None = None) -> Path:
    """A DOCX with a heading and paragraphs per section (and a picture after the first section's text)."""
    import docx
    from docx.shared import Inches

    document = docx.Document()
    document.core_properties.title = sections[0][0] if sections else "Document"
    for n, (heading, paragraphs) in enumerate(sections):
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
        if n == 0 and picture is not None:
            buf = io.BytesIO()
            picture.save(buf, format="PNG")
            buf.seek(0)
            document.add_picture(buf, width=Inches(4))
    document.save(str(path))
    return path
