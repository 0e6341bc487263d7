"""Load local folders and files into `Document`s: discovery with globs, parsing, clear failures.

Text formats are read and decoded here (strictly: a wrong guess at an encoding silently indexes
mojibake). Office formats, PDF and HTML go through markitdown's converters, imported lazily
because markitdown is slow to import. Every failure becomes a `LoadError` whose message a user can
act on; the indexing run skips that file and reports it.
"""

from __future__ import annotations

import codecs
import hashlib
import html
import io
import logging
import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from stat import S_ISREG

from search.chunking import clean_heading, iter_headings
from search.errors import LoadError, SourceError
from search.models import Document, LoadFailure
from search.text import content_hash

log = logging.getLogger(__name__)

# Hidden files and folders (.git, .DS_Store, .venv), dependency and cache folders, Office lock
# files (~$report.docx) and editor backups: never knowledge, and lock files would fail to parse.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".*",
    "node_modules",
    "__pycache__",
    "~$*",
    "*~",
    "Thumbs.db",
    "desktop.ini",
)

MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown", ".mdown", ".mkd", ".mdx"})
PLAIN_EXTENSIONS = frozenset({".txt", ".text", ".org", ".tex"})
# Formats whose own heading syntax we rewrite to Markdown headings, so the chunker sees sections.
RST_EXTENSIONS = frozenset({".rst"})
ASCIIDOC_EXTENSIONS = frozenset({".adoc", ".asciidoc"})
# Data and configuration files are kept verbatim inside a code fence: their '#' comments must not
# turn into headings, and the fence tells a reader (and an LLM) what they are looking at.
FENCED_EXTENSIONS = {
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".ini": "ini",
    ".cfg": "ini",
    ".conf": "",
    ".xml": "xml",
    ".sql": "sql",
}
# Extension -> (markitdown converter class name, format name used in messages).
CONVERTED_EXTENSIONS = {
    ".html": ("HtmlConverter", "HTML"),
    ".htm": ("HtmlConverter", "HTML"),
    ".xhtml": ("HtmlConverter", "HTML"),
    ".pdf": ("PdfConverter", "PDF"),
    ".docx": ("DocxConverter", "DOCX"),
    ".pptx": ("PptxConverter", "PPTX"),
    ".xlsx": ("XlsxConverter", "XLSX"),
    ".csv": ("CsvConverter", "CSV"),
    ".ipynb": ("IpynbConverter", "Jupyter notebook"),
    ".epub": ("EpubConverter", "EPUB"),
}
# Old binary Office formats: the fix is one "Save as" away, so say so instead of "unsupported".
_LEGACY_OFFICE = {".doc": ".docx", ".ppt": ".pptx", ".xls": ".xlsx"}

SUPPORTED_EXTENSIONS = frozenset(
    MARKDOWN_EXTENSIONS
    | PLAIN_EXTENSIONS
    | RST_EXTENSIONS
    | ASCIIDOC_EXTENSIONS
    | FENCED_EXTENSIONS.keys()
    | CONVERTED_EXTENSIONS.keys()
)
_TEXT_EXTENSIONS = SUPPORTED_EXTENSIONS - CONVERTED_EXTENSIONS.keys()
_TEXT_CONVERTED = frozenset({".html", ".htm", ".xhtml", ".csv", ".ipynb"})
_OOXML = {".docx", ".pptx", ".xlsx"}

_MB = 1024 * 1024


def is_supported(path: Path) -> bool:
    """Whether `load_file` knows the file's format (by extension)."""
    return path.suffix.lower() in SUPPORTED_EXTENSIONS


# --------------------------------------------------------------------------- discovery


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a gitignore-like glob, matched against POSIX paths relative to the root.

    ``*`` and ``?`` stay within one path segment, ``**`` crosses segments, ``**/`` also matches
    zero folders. A pattern without a slash ("*.tmp", "node_modules") matches at any depth; one
    with a slash ("drafts/**", "docs/*.md") is anchored at the root.
    """
    p = pattern.strip().replace("\\", "/")
    anchored = p.startswith("/") or "/" in p.strip("/")
    p = p.strip("/")
    suffix = ""
    if p.endswith("/**"):
        # "drafts/**" also matches the folder itself, so discovery can prune it without entering.
        p, suffix = p[:-3], "(?:/.*)?"
    out: list[str] = []
    i = 0
    while i < len(p):
        if p.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif p.startswith("**", i):
            out.append(".*")
            i += 2
        elif p[i] == "*":
            out.append("[^/]*")
            i += 1
        elif p[i] == "?":
            out.append("[^/]")
            i += 1
        elif p[i] == "[" and (end := p.find("]", i + 2)) != -1:
            body = p[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(p[i]))
            i += 1
    regex = "".join(out) + suffix
    if not anchored:
        regex = "(?:.*/)?" + regex
    return re.compile(regex, re.DOTALL)


def _matches(rel: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    """True when a pattern matches the path or one of its folders (a matched folder covers all
    of its contents, as in .gitignore)."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    return any(rx.fullmatch(c) for rx in patterns for c in candidates)


def discover(
    paths: Sequence[Path],
    include: Sequence[str] = ("**/*",),
    exclude: Sequence[str] = DEFAULT_EXCLUDES,
) -> list[tuple[Path, Path]]:
    """List the files of a source as sorted ``(root, file)`` pairs, both absolute.

    A folder is walked recursively and its files filtered by ``include`` and ``exclude`` (globs
    relative to the folder, see `_glob_to_regex`); excluded folders are not entered. A path that
    names a file is taken as is, with its parent as root: the user asked for it explicitly. A file
    reached twice (overlapping folders) is listed once, under the first path given.

    Raises `SourceError` when a path does not exist or nothing at all matched.
    """
    includes = [_glob_to_regex(p) for p in include]
    excludes = [_glob_to_regex(p) for p in exclude]
    found: dict[str, tuple[Path, Path]] = {}
    for given in paths:
        path = Path(os.path.abspath(Path(given).expanduser()))
        if not path.exists():
            raise SourceError(
                f"{given} does not exist (looked at {path}); check the path, or remove it from "
                "the source"
            )
        if path.is_file():
            found.setdefault(os.path.realpath(path), (path.parent, path))
            continue
        for root, file in _walk(path, includes, excludes):
            found.setdefault(os.path.realpath(file), (root, file))
    if not found:
        shown = ", ".join(str(p) for p in paths) or "(no paths)"
        raise SourceError(
            f"{shown} matched no files; check the path and the include/exclude patterns"
        )
    return sorted(found.values(), key=lambda pair: (str(pair[0]), pair[1].as_posix()))


def _walk(
    root: Path, includes: Sequence[re.Pattern[str]], excludes: Sequence[re.Pattern[str]]
) -> Iterator[tuple[Path, Path]]:
    def on_error(exc: OSError) -> None:
        log.warning("skipping unreadable folder %s: %s", exc.filename, exc.strerror)

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        # Pruning in place keeps os.walk out of node_modules/.git instead of filtering later.
        dirnames[:] = sorted(d for d in dirnames if not _matches(prefix + d, excludes))
        for name in sorted(filenames):
            rel = prefix + name
            if _matches(rel, includes) and not _matches(rel, excludes):
                yield root, Path(dirpath) / name


# --------------------------------------------------------------------------- loading


def make_doc_id(source: str, relative_path: str) -> str:
    """A stable id from the source name and the file's POSIX path relative to its root."""
    digest = hashlib.sha256(f"{source}\x00{relative_path}".encode()).hexdigest()
    return digest[:20]


def check_type(path: Path) -> None:
    """Raise `LoadError` when `load_file` cannot read this file's format (by extension), so a
    caller that fetches files (Slack) can skip one before downloading it."""
    ext = Path(path).suffix.lower()
    if ext in _LEGACY_OFFICE:
        raise LoadError(
            f"old binary {ext} format is not supported; save it as {_LEGACY_OFFICE[ext]}"
        )
    if ext not in SUPPORTED_EXTENSIONS:
        kind = f"'{ext}'" if ext else "(no extension)"
        raise LoadError(
            f"unsupported file type {kind}; supported: Markdown, text, HTML, PDF, DOCX, PPTX, "
            "XLSX, CSV, JSON/YAML and similar (exclude it or convert it)"
        )


def check_size(size: int, max_bytes: int) -> None:
    """Raise `LoadError` for an empty file or one over ``max_bytes``."""
    if size == 0:
        raise LoadError("empty file")
    if size > max_bytes:
        raise LoadError(
            f"{size / _MB:.1f} MB is over the {max_bytes / _MB:g} MB limit "
            "(LOREBOT_SEARCH__MAX_FILE_MB)"
        )


def load_file(path: Path, *, root: Path, source: str, max_bytes: int) -> Document:
    """Parse one file into a `Document` with Markdown-ish text.

    ``max_bytes`` is the size limit; messages show it in MiB (``LOREBOT_SEARCH__MAX_FILE_MB``
    times 1024²). Raises `LoadError` with a short reason a user can act on: empty, too large,
    binary, not UTF-8, corrupt, no text, unsupported type, unreadable.
    """
    path = Path(path)
    ext = path.suffix.lower()
    check_type(path)
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        if path.is_symlink():
            raise LoadError("broken symbolic link; fix or delete it") from exc
        raise LoadError("file disappeared while indexing; run the reindex again") from exc
    except OSError as exc:
        raise LoadError(f"cannot read the file ({exc.strerror}); check its permissions") from exc
    if not S_ISREG(stat.st_mode):
        # A named pipe or device would block or never end; only regular files are documents.
        raise LoadError("not a regular file (a pipe, socket or device); exclude it")
    check_size(stat.st_size, max_bytes)
    try:
        data = path.read_bytes()
    except PermissionError as exc:
        raise LoadError(
            "permission denied; make the file readable by the user running lorebot"
        ) from exc
    except OSError as exc:
        raise LoadError(f"cannot read the file ({exc.strerror or exc})") from exc

    if ext in _TEXT_EXTENSIONS:
        text, meta_title = _text_to_markdown(ext, _decode_text(data)), None
    else:
        text, meta_title = _convert(ext, data)
    text = _normalize(text)
    if ext in MARKDOWN_EXTENSIONS:
        text, front_title = _split_front_matter(text)
        meta_title = meta_title or front_title
    if not text.strip():
        if ext == ".pdf":
            raise LoadError("no text found; scanned PDFs need OCR first")
        raise LoadError("empty file" if ext in _TEXT_EXTENSIONS else "no text found")
    title = first_h1(text) or _clean_title(meta_title) or prettify_stem(path.stem)
    rel = Path(os.path.relpath(path, root)).as_posix()
    return Document(
        doc_id=make_doc_id(source, rel),
        source=source,
        title=title,
        text=text,
        content_hash=content_hash(title, text),
        path=os.path.abspath(path),
        url=None,
        modified=stat.st_mtime,
    )


def iter_documents(
    files: Sequence[tuple[Path, Path]], *, source: str, max_bytes: int
) -> Iterator[Document | LoadFailure]:
    """Load ``(root, file)`` pairs one by one, yielding a `Document` or a `LoadFailure` for each,
    so a caller can stream them into the index and show progress."""
    for root, file in files:
        try:
            yield load_file(file, root=root, source=source, max_bytes=max_bytes)
        except LoadError as exc:
            yield LoadFailure(path=str(file), reason=str(exc))
        except Exception as exc:  # a bug here must not abort a whole indexing run
            log.exception("unexpected error loading %s", file)
            yield LoadFailure(path=str(file), reason=f"unexpected error: {exc!r}")


# --------------------------------------------------------------------------- text formats

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: the UTF-16-LE BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _decode_text(data: bytes) -> str:
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


def _text_to_markdown(ext: str, text: str) -> str:
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


def _normalize(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    # pdfminer separates pages with form feeds: a page break is a paragraph break.
    text = text.replace("\x0c", "\n\n")
    return text.strip("\n").rstrip()


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)


def _split_front_matter(text: str) -> tuple[str, str | None]:
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


def _clean_title(title: str | None) -> str | None:
    if not title:
        return None
    # PDFs printed from Office keep the application's window title as their /Title.
    title = re.sub(r"^Microsoft (?:Word|PowerPoint|Excel) - ", "", title.strip())
    return clean_heading(title) or None


def prettify_stem(stem: str) -> str:
    """``getting-started_guide`` -> ``Getting started guide``; mixed-case names stay as they are."""
    words = re.sub(r"[-_\s]+", " ", stem).strip() or stem
    return words[:1].upper() + words[1:] if words.islower() else words


# --------------------------------------------------------------------------- converted formats


def _convert(ext: str, data: bytes) -> tuple[str, str | None]:
    """Convert with the one markitdown converter for this extension (no content sniffing, so a
    corrupt DOCX fails as a DOCX instead of being "rescued" as plain text)."""
    converter_name, fmt = CONVERTED_EXTENSIONS[ext]
    try:
        from markitdown import StreamInfo, converters
    except Exception as exc:  # broken install: still a per-file reason, not a crash
        raise LoadError(f"cannot read {fmt} files: markitdown is not usable ({exc})") from exc

    charset = None
    if ext in _TEXT_CONVERTED:
        # markitdown would guess the encoding (and index binary junk as text); decoding here
        # keeps one strict policy for every text format.
        text = _decode_html(data) if fmt == "HTML" else _decode_text(data)
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


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _decode_html(data: bytes) -> str:
    """Like `_decode_text`, but honour a ``<meta charset>`` declaration: legacy pages in
    windows-1252 or Shift_JIS that say so are common and perfectly readable."""
    try:
        return _decode_text(data)
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
