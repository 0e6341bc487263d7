"""Text formats to Markdown-ish text: strict decoding, headings rewritten, titles found.

Decoding is strict: a wrong guess at an encoding silently indexes mojibake, so anything but UTF-8
(BOM optional) or BOM-marked UTF-16/32 is refused with a reason a user can act on.
"""

from __future__ import annotations

import codecs
import re

from search.chunking import iter_headings
from search.errors import LoadError
from search.file_types import ASCIIDOC_EXTENSIONS, FENCED_EXTENSIONS, RST_EXTENSIONS
from search.text import plain_text

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: the UTF-16-LE BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(data: bytes) -> str:
    """Decode UTF-8 (BOM optional) or BOM-marked UTF-16/32; refuse anything else."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise LoadError(
                    f"the file starts with a {encoding.upper()} byte-order mark but is not valid "
                    f"{encoding.upper()}; re-save it as UTF-8"
                ) from exc
    if b"\x00" in data:
        # UTF-16 without a BOM also lands here; both need the same fix.
        raise LoadError(
            "binary content (NUL bytes) in a text file; check the extension, or re-save the "
            "text as UTF-8"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(
            f"not valid UTF-8 (bad byte at offset {exc.start}); re-save the file as UTF-8"
        ) from exc


def text_to_markdown(ext: str, text: str) -> str:
    """A decoded text file as Markdown: RST and AsciiDoc headings rewritten, data files fenced."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if ext in RST_EXTENSIONS:
        return _rst_headings(text)
    if ext in ASCIIDOC_EXTENSIONS:
        return _asciidoc_headings(text)
    if ext in FENCED_EXTENSIONS:
        longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
        fence = "`" * max(3, longest + 1)
        return f"{fence}{FENCED_EXTENSIONS[ext]}\n{text.strip(chr(10))}\n{fence}"
    return text


_RST_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")


def _rst_headings(text: str) -> str:
    """Rewrite reStructuredText section titles (underlined, optionally overlined) as ATX
    headings; levels follow the order in which adornment styles first appear, as in docutils."""
    lines = text.split("\n")
    styles: list[tuple[str, bool]] = []
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        over = bool(_RST_ADORNMENT.match(line))
        # Overlined title: adornment, title, same adornment.
        if (
            over
            and i + 2 < len(lines)
            and lines[i + 1].strip()
            and lines[i + 2].strip() == line.strip()
        ):
            title, style, step = lines[i + 1].strip(), (line.strip()[0], True), 3
        elif (
            line.strip()
            and not over
            and i + 1 < len(lines)
            and _RST_ADORNMENT.match(lines[i + 1])
            and len(lines[i + 1].rstrip()) >= len(line.rstrip())
            and (i == 0 or not lines[i - 1].strip())
        ):
            title, style, step = line.strip(), (lines[i + 1].strip()[0], False), 2
        else:
            out.append(line)
            i += 1
            continue
        if style not in styles:
            styles.append(style)
        out.append("#" * min(6, styles.index(style) + 1) + " " + title)
        i += step
    return "\n".join(out)


def _asciidoc_headings(text: str) -> str:
    """Rewrite AsciiDoc "== Section" titles as ATX headings, outside ----/.... blocks."""
    out: list[str] = []
    in_block = None
    for line in text.split("\n"):
        stripped = line.rstrip()
        if re.fullmatch(r"(-{4,}|\.{4,})", stripped):
            in_block = None if in_block == stripped else (in_block or stripped)
        elif in_block is None and (m := re.match(r"^(={1,6})\s+(\S.*)$", stripped)):
            line = "#" * len(m.group(1)) + " " + m.group(2)
        out.append(line)
    return "\n".join(out)


def normalize(text: str) -> str:
    """One newline convention, no NUL characters, page breaks as paragraph breaks, no blank ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    # pdfminer separates pages with form feeds: a page break is a paragraph break.
    text = text.replace("\x0c", "\n\n")
    return text.strip("\n").rstrip()


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)


def split_front_matter(text: str) -> tuple[str, str | None]:
    """Strip YAML front matter (metadata, not content) and return its ``title:`` if any."""
    m = _FRONT_MATTER.match(text)
    if not m:
        return text, None
    t = re.search(r"^title:[ \t]*(.+?)[ \t]*$", m.group(1), re.MULTILINE)
    title = t.group(1).strip("'\"") if t else None
    return text[m.end() :].lstrip("\n"), title


def first_h1(text: str) -> str | None:
    """The first level-1 ATX heading outside fenced code, without Markdown decoration."""
    return next((name for level, name, _, _ in iter_headings(text) if level == 1 and name), None)


def clean_title(title: str | None) -> str | None:
    """A title from a file's metadata, fit to show; None when there is none."""
    if not title:
        return None
    # PDFs printed from Office keep the application's window title as their /Title.
    title = re.sub(r"^Microsoft (?:Word|PowerPoint|Excel) - ", "", title.strip())
    title = plain_text(title)
    # Tools fill an unset title with a placeholder; the file's name says more than any of them.
    return None if _PLACEHOLDER_TITLE.fullmatch(title) else title or None


_PLACEHOLDER_TITLE = re.compile(
    r"(?i)(?:untitled|untitled document|no title|title|none|null|\(?anonymous\)?|"
    r"document\s*\d*|presentation\s*\d*|book\s*\d*|untitled[-\s]*\d+|"
    r"(?:powerpoint|excel|word) (?:presentation|document|workbook)|slide\s*\d+|sheet\s*\d+)"
    r"(?:\.(?:docx?|pptx?|xlsx?|pdf|odt|rtf|txt|indd|ai))?"
)


def prettify_stem(stem: str) -> str:
    """``getting-started_guide`` -> ``Getting started guide``; mixed-case names stay as they are."""
    words = re.sub(r"[-_\s]+", " ", stem).strip() or stem
    return words[:1].upper() + words[1:] if words.islower() else words

