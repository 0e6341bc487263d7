"""Build real test files, good and broken, in a folder: PDF by hand, DOCX with python-docx.

Real bytes rather than mocks, so the loader's error mapping is exercised against the exceptions
the parsers really raise.
"""

from __future__ import annotations

from pathlib import Path


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def pdf_bytes(lines: list[str], *, title: str | None = None) -> bytes:
    """A minimal valid one-page PDF showing ``lines`` in Helvetica (no lines: a page without
    text, like a scanned page without OCR). The xref table has correct byte offsets."""
    content = ""
    if lines:
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            ops += [f"{_pdf_string(line)} Tj", "T*"]
        ops.append("ET")
        content = "\n".join(ops)
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(content.encode('latin-1'))} >>\nstream\n{content}\nendstream",
    ]
    if title is not None:
        objects.append(f"<< /Title {_pdf_string(title)} >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    info = f" /Info {len(objects)} 0 R" if title is not None else ""
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def write_pdf(path: Path, lines: list[str], *, title: str | None = None) -> Path:
    path.write_bytes(pdf_bytes(lines, title=title))
    return path


def write_docx(
    path: Path,
    sections: list[tuple[str, list[str]]],
    *,
    core_title: str | None = None,
) -> Path:
    """A real DOCX: each section is a Heading 1 (none if empty) and its paragraphs."""
    import docx

    document = docx.Document()
    if core_title is not None:
        document.core_properties.title = core_title
    for heading, paragraphs in sections:
        if heading:
            document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    document.save(str(path))
    return path


def write_xlsx(path: Path, rows: list[list[str]], *, sheet: str, core_title: str) -> Path:
    """A real one-sheet XLSX (openpyxl comes with markitdown's xlsx extra)."""
    import openpyxl

    workbook = openpyxl.Workbook()
    worksheet = workbook.active
    worksheet.title = sheet
    for row in rows:
        worksheet.append(row)
    workbook.properties.title = core_title
    workbook.save(str(path))
    return path


def write_pptx(path: Path, slides: list[tuple[str, str]]) -> Path:
    """A real PPTX with one title-and-content slide per ``(title, body)``."""
    import pptx

    presentation = pptx.Presentation()
    for title, body in slides:
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    presentation.save(str(path))
    return path


def write_truncated(path: Path, good: bytes, keep: float = 0.5) -> Path:
    """The first part of a good file, as left by an interrupted download or copy."""
    path.write_bytes(good[: int(len(good) * keep)])
    return path


def write_garbage_pdf(path: Path) -> Path:
    """Starts like a PDF, then nothing a PDF parser can use."""
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    return path


def write_binary(path: Path) -> Path:
    """Binary bytes (NUL included) under a text extension."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    return path


def write_latin1(path: Path, text: str = "Café crème, à la façon de Zoë.\n") -> Path:
    path.write_bytes(text.encode("latin-1"))
    return path


def write_utf16_bom(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-16"))  # Python writes the BOM for "utf-16"
    return path


def write_sized(path: Path, size: int) -> Path:
    """A valid text file of exactly ``size`` bytes."""
    line = b"lorem ipsum dolor sit amet\n"
    path.write_bytes((line * (size // len(line) + 1))[:size])
    return path


def write_docx_bomb(path: Path, inflated_mb: int = 50) -> Path:
    """A real DOCX whose document.xml is ``inflated_mb`` MB of repeated paragraphs: a few tens
    of KB on disk (deflate loves repetition), a parser's minutes and gigabytes once inflated."""
    import zipfile

    good = write_docx(path.with_name(path.name + ".seed.docx"), [("Bomb", ["x"])])
    paragraph = b"<w:p><w:r><w:t>lorem ipsum dolor sit amet</w:t></w:r></w:p>"
    head = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            b"<w:body>")
    body = paragraph * (inflated_mb * 1024 * 1024 // len(paragraph))
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "word/document.xml":
                data = head + body + b"</w:body></w:document>"
            out.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    good.unlink()
    return path


def write_pdf_runs(path: Path, runs: int) -> Path:
    """A valid one-page PDF made of ``runs`` separate text-showing operations (each placed on
    its own): small on disk, and a layout analysis of every run for a PDF parser."""
    ops = ["BT", "/F1 1 Tf"]
    for i in range(runs):
        ops.append(f"1 0 0 1 {i % 600} {i // 600 % 780} Tm (r{i % 10}) Tj")
    ops.append("ET")
    content = "\n".join(ops)
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(content.encode('latin-1'))} >>\nstream\n{content}\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path
