"""Which files the loaders read, by extension, and the checks made before reading one."""

from __future__ import annotations

from pathlib import Path

from search.errors import LoadError

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
TEXT_EXTENSIONS = SUPPORTED_EXTENSIONS - CONVERTED_EXTENSIONS.keys()

_MB = 1024 * 1024


def is_supported(path: Path) -> bool:
    """Whether `load_file` knows the file's format (by extension)."""
    return path.suffix.lower() in SUPPORTED_EXTENSIONS


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

