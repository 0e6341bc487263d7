"""Office formats, PDF, HTML, CSV, notebooks and EPUB converted by markitdown.

markitdown is imported lazily, on the first file that needs it, because it is slow to import.
"""

from __future__ import annotations

import codecs
import html
import io
import re
import zipfile

from search.errors import LoadError
from search.file_types import CONVERTED_EXTENSIONS
from search.text_formats import decode_text

_TEXT_CONVERTED = frozenset({".html", ".htm", ".xhtml", ".csv", ".ipynb"})
_OOXML = {".docx", ".pptx", ".xlsx"}


def convert(ext: str, data: bytes, *, charset: str | None = None) -> tuple[str, str | None]:
    """Convert with the one markitdown converter for this extension (no content sniffing, so a
    corrupt DOCX fails as a DOCX instead of being "rescued" as plain text). ``charset``: the
    encoding a web server declared for an HTML page."""
    converter_name, fmt = CONVERTED_EXTENSIONS[ext]
    if ext in _ZIPPED:
        check_inflated(data, fmt)
    try:
        from markitdown import StreamInfo, converters
    except Exception as exc:  # broken install: still a per-file reason, not a crash
        raise LoadError(f"cannot read {fmt} files: markitdown is not usable ({exc})") from exc

    if ext in _TEXT_CONVERTED:
        # markitdown would guess the encoding (and index binary junk as text); decoding here
        # keeps one strict policy for every text format.
        text = _decode_html(data, charset) if fmt == "HTML" else decode_text(data)
        data, charset = text.encode("utf-8"), "utf-8"
    converter = getattr(converters, converter_name)()
    info = StreamInfo(extension=ext, filename=f"document{ext}", charset=charset)
    try:
        result = converter.convert(io.BytesIO(data), info)
    except Exception as exc:
        raise LoadError(_conversion_reason(fmt, exc)) from exc
    title = result.title
    if not title and ext in _OOXML:
        title = _ooxml_title(data)
    elif not title and ext == ".pdf":
        title = _pdf_title(data)
    text = result.markdown or ""
    if ext == ".pptx":
        # Slide markers are noise in a passage; the slide titles (headings) mark the slides.
        text = re.sub(r"^<!-- Slide number: \d+ -->\n", "", text, flags=re.MULTILINE)
    return text, title if isinstance(title, str) else None


# Zip-based formats are checked before parsing: a 51 KB DOCX can inflate to 50 MB of XML, which
# the parsers hold in memory several times over. The limits are far above real documents (a
# 1,000-page report has a few MB of XML; images do not count towards the XML limit).
_ZIPPED = frozenset({".docx", ".pptx", ".xlsx", ".epub"})
MAX_INFLATED_XML = 32 * 1024 * 1024
MAX_INFLATED_TOTAL = 512 * 1024 * 1024
MAX_ZIP_MEMBERS = 10_000
_MARKUP = (".xml", ".rels", ".xhtml", ".html", ".htm", ".opf", ".ncx", ".vml")


def check_inflated(data: bytes, fmt: str) -> None:
    """Refuse a zip whose members would inflate past the limits, from its directory alone."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise LoadError(_conversion_reason(fmt, exc)) from exc
    if len(members) > MAX_ZIP_MEMBERS:
        raise LoadError(f"this {fmt} file holds {len(members):,} parts, over the "
                        f"{MAX_ZIP_MEMBERS:,} limit; it is not an ordinary document")
    markup = sum(m.file_size for m in members if m.filename.lower().endswith(_MARKUP))
    total = sum(m.file_size for m in members)
    mb = 1024 * 1024
    if markup > MAX_INFLATED_XML:
        raise LoadError(
            f"this {len(data) / 1024:.0f} KB {fmt} file inflates to {markup / mb:.0f} MB of XML, "
            f"over the {MAX_INFLATED_XML // mb} MB limit (a zip bomb, or too large to index); "
            "split it")
    if total > MAX_INFLATED_TOTAL:
        raise LoadError(
            f"this {fmt} file inflates to {total / mb:.0f} MB, over the "
            f"{MAX_INFLATED_TOTAL // mb} MB limit; split it or remove large embedded files")


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _decode_html(data: bytes, header_charset: str | None = None) -> str:
    """Like `decode_text`, but honour the server's Content-Type charset, else a ``<meta
    charset>`` declaration: legacy pages in windows-1252 or Shift_JIS that say so are common and
    perfectly readable. A byte-order mark wins over both, as in browsers."""
    if header_charset and not data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE,
                                               codecs.BOM_UTF16_BE)):
        try:
            return data.decode(header_charset)
        except (LookupError, UnicodeDecodeError) as exc:
            raise LoadError(
                f"not valid {header_charset} as the server declares (Content-Type charset); "
                "fix the page's encoding or the server's header"
            ) from exc
    try:
        return decode_text(data)
    except LoadError as exc:
        declared = _META_CHARSET.search(data[:4096])
        if b"\x00" in data or declared is None:
            raise
        try:
            return data.decode(declared.group(1).decode("ascii"))
        except (LookupError, UnicodeDecodeError):
            raise LoadError(
                f"not valid {declared.group(1).decode('ascii')} as the page declares, nor UTF-8; "
                "re-save the file as UTF-8"
            ) from exc


def _conversion_reason(fmt: str, exc: Exception) -> str:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    detail = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    if len(detail) > 120:
        detail = detail[:117] + "..."
    hint = "it may be corrupt, truncated or password-protected; open and re-save it"
    return f"could not read this {fmt} file ({detail}); {hint}"


def _ooxml_title(data: bytes) -> str | None:
    """The title in an Office Open XML file's core properties (docProps/core.xml), if set."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            xml = zf.read("docProps/core.xml").decode("utf-8", "replace")
    except Exception:  # metadata is optional; the text was already extracted
        return None
    m = re.search(r"<(?:\w+:)?title\b[^>]*>([^<]*)</(?:\w+:)?title>", xml)
    if not m:
        return None
    return html.unescape(m.group(1)).strip() or None


def _pdf_title(data: bytes) -> str | None:
    """The /Title of a PDF's document information dictionary, if set."""
    try:
        from pdfminer.pdfdocument import PDFDocument
        from pdfminer.pdfparser import PDFParser
        from pdfminer.pdftypes import resolve1
        from pdfminer.utils import decode_text

        doc = PDFDocument(PDFParser(io.BytesIO(data)))
        for info in doc.info:
            raw = resolve1(info.get("Title"))
            if isinstance(raw, bytes):
                return decode_text(raw).strip() or None
            if isinstance(raw, str):
                return raw.strip() or None
    except Exception:  # metadata is optional; the text was already extracted
        return None
    return None
