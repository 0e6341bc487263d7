"""Load local folders and files into `Document`s: discovery with globs, parsing, clear failures.

Text formats are read and decoded strictly (``search.text_formats``: a wrong guess at an encoding
silently indexes mojibake). Office formats, PDF and HTML go through markitdown's converters
(``search.converted_formats``), imported lazily because markitdown is slow to import. Which
files are read at all, and how large they may be: ``search.file_types``; finding them:
``search.discovery``. Every failure becomes a `LoadError` whose message a user can act on; the
indexing run skips that file and reports it.

The names of those modules that callers use are importable from here too, as before the split.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from stat import S_ISREG

from search.convert_worker import DEFAULT_TIME_BUDGET_S, convert_bounded
from search.discovery import DEFAULT_EXCLUDES, discover
from search.errors import LoadError
from search.file_types import (
    ASCIIDOC_EXTENSIONS,
    CONVERTED_EXTENSIONS,
    FENCED_EXTENSIONS,
    MARKDOWN_EXTENSIONS,
    PLAIN_EXTENSIONS,
    RST_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    TEXT_EXTENSIONS,
    check_size,
    check_type,
    is_supported,
)
from search.models import Document, LoadFailure
from search.text import content_hash
from search.text_formats import (
    clean_title,
    decode_text,
    first_h1,
    normalize,
    prettify_stem,
    split_front_matter,
    text_to_markdown,
)

__all__ = [
    "ASCIIDOC_EXTENSIONS",
    "CONVERTED_EXTENSIONS",
    "DEFAULT_EXCLUDES",
    "FENCED_EXTENSIONS",
    "MARKDOWN_EXTENSIONS",
    "PLAIN_EXTENSIONS",
    "RST_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "check_size",
    "check_type",
    "discover",
    "first_h1",
    "is_supported",
    "iter_documents",
    "load_file",
    "make_doc_id",
    "prettify_stem",
]

log = logging.getLogger(__name__)


def make_doc_id(source: str, relative_path: str) -> str:
    """A stable id from the source name and the file's POSIX path relative to its root."""
    digest = hashlib.sha256(f"{source}\x00{relative_path}".encode()).hexdigest()
    return digest[:20]


def load_file(path: Path, *, root: Path, source: str, max_bytes: int,
              time_budget_s: float = DEFAULT_TIME_BUDGET_S) -> Document:
    """Parse one file into a `Document` with Markdown-ish text.

    ``max_bytes`` is the size limit; messages show it in MiB (``LOREBOT_SEARCH__MAX_FILE_MB``
    times 1024²). It also bounds the text a converted format (PDF, Office) may yield, in
    characters, and ``time_budget_s`` the seconds its parsing may take (in a child process,
    see `search.convert_worker`). Raises `LoadError` with a short reason a user can act on:
    empty, too large, too slow, binary, not UTF-8, corrupt, no text, unsupported type,
    unreadable.
    """
    path = Path(path)
    ext = path.suffix.lower()
    check_name(path)
    check_type(path)
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        if path.is_symlink():
            raise LoadError("broken symbolic link; fix or delete it") from exc
        raise LoadError("file disappeared while indexing; run the reindex again") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LoadError("symbolic link loop (the link points back at itself); fix or "
                            "delete it") from exc
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

    if ext in TEXT_EXTENSIONS:
        text, meta_title = text_to_markdown(ext, decode_text(data)), None
    else:
        text, meta_title = convert_bounded(ext, data, max_chars=max_bytes,
                                           budget_s=time_budget_s)
    text = normalize(text)
    if ext in MARKDOWN_EXTENSIONS:
        text, front_title = split_front_matter(text)
        meta_title = meta_title or front_title
    if not text.strip():
        if ext == ".pdf":
            raise LoadError("no text found; scanned PDFs need OCR first")
        raise LoadError("empty file" if ext in TEXT_EXTENSIONS else "no text found")
    title = first_h1(text) or clean_title(meta_title) or prettify_stem(path.stem)
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
    files: Sequence[tuple[Path, Path]], *, source: str, max_bytes: int,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
) -> Iterator[Document | LoadFailure]:
    """Load ``(root, file)`` pairs one by one, yielding a `Document` or a `LoadFailure` for each,
    so a caller can stream them into the index and show progress."""
    for root, file in files:
        try:
            yield load_file(file, root=root, source=source, max_bytes=max_bytes,
                            time_budget_s=time_budget_s)
        except LoadError as exc:
            yield LoadFailure(path=shown_path(file), reason=str(exc))
        except Exception as exc:  # a bug here must not abort a whole indexing run
            log.exception("unexpected error loading %s", shown_path(file))
            yield LoadFailure(path=shown_path(file), reason=f"unexpected error: {exc!r}")


def check_name(path: Path) -> None:
    """Refuse a file whose name is not valid UTF-8: it could be neither stored nor shown (Python
    keeps the bad bytes as lone surrogates, which no UTF-8 writer accepts)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LoadError(
            f"the file name is not valid UTF-8 (shown as {shown_path(path.name)!r}); rename it"
        ) from exc


def shown_path(path: Path | str) -> str:
    """A path fit to print and store: bytes of a name that are not UTF-8 become U+FFFD."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "replace")

