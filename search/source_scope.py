"""Which files a source holds, so indexing a path never touches another source or the rest of
its own.

A source indexed from folders is known by its *roots*: the folders its documents' ids are
relative to. They are recovered exactly from the index (a document's id is derived from the
source name and its path relative to the root, see `search.loaders.make_doc_id`), so a source
needs no other record, and two folders that only share a basename are never the same source.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from search.errors import SourceError
from search.models import StoredDocument


def norm_path(path: str | os.PathLike | None) -> str | None:
    """An absolute, normalised local path (symbolic links are not followed: a link loop or a
    dangling link must not fail the run), or a URL unchanged."""
    if not path:
        return None
    text = os.fspath(path)
    if "://" in text:
        return text
    return os.path.abspath(text)


def local_path(doc: StoredDocument) -> str | None:
    """The file of a document loaded from a folder; None for web pages and Slack items."""
    if doc.url or not doc.path or "://" in doc.path or not os.path.isabs(doc.path):
        return None
    return os.path.normpath(doc.path)


def under(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` itself or inside it (by path, not by string prefix)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def doc_root(source: str, doc_id: str, path: str) -> str | None:
    """The folder ``doc_id`` was made relative to: the ancestor of ``path`` whose relative path
    gives this id. None when no ancestor does (the id was made another way)."""
    from search.loaders import make_doc_id

    folder = Path(path).parent
    for candidate in (folder, *folder.parents):
        rel = Path(os.path.relpath(path, candidate)).as_posix()
        if make_doc_id(source, rel) == doc_id:
            return str(candidate)
    return None


def source_roots(source: str, stored: Mapping[str, StoredDocument]) -> set[str]:
    """The folders the local documents of ``source`` were indexed from."""
    roots: set[str] = set()
    for doc_id, doc in stored.items():
        path = local_path(doc)
        if path is None:
            continue
        # Documents of one folder share a root: try the known ones first (one hash each).
        known = next((r for r in roots if under(path, r) and _id_from(source, path, r) == doc_id),
                     None)
        root = known or doc_root(source, doc_id, path)
        if root is not None:
            roots.add(root)
    return roots


def _id_from(source: str, path: str, root: str) -> str:
    from search.loaders import make_doc_id

    return make_doc_id(source, Path(os.path.relpath(path, root)).as_posix())


def _overlap(a: str, b: str) -> bool:
    """One inside the other, as written or with symbolic links resolved (a registered folder
    is stored resolved, ``lorebot index ~/kb`` as typed)."""
    if under(a, b) or under(b, a):
        return True
    try:
        ra, rb = os.path.realpath(a), os.path.realpath(b)
    except (OSError, ValueError):  # a link loop on the way: as written is all we can compare
        return False
    return under(ra, rb) or under(rb, ra)


def check_paths(source: str, paths: Sequence[str], by_source: Mapping[str, set[str]]) -> None:
    """Refuse to index ``paths`` as ``source`` when another source holds any of them, or when
    ``source`` holds other folders and none of these (a folder that only shares its name).

    ``by_source`` maps each indexed source to its roots (`source_roots`). Raises `SourceError`
    naming the source and its folder.
    """
    given = [p for p in (norm_path(p) for p in paths) if p]
    for other, roots in sorted(by_source.items()):
        if other == source:
            continue
        for path in given:
            for root in sorted(roots):
                if _overlap(path, root):
                    raise SourceError(
                        f"{path} is already indexed as source '{other}' (folder {root}); "
                        f"reindex it with --source {other}, or remove that source first "
                        "(one folder under two names would duplicate every document)"
                    )
    own = by_source.get(source) or set()
    if own and not any(_overlap(p, r) for p in given for r in own):
        shown = ", ".join(sorted(own))
        raise SourceError(
            f"source '{source}' holds the folder {shown}, and {', '.join(given)} is not in it; "
            "index it under its own name with --source NAME (a source is not any folder with "
            "the same name)"
        )


def rebased_id(source: str, path: str, roots: Iterable[str]) -> str | None:
    """The id a file has in ``source`` whichever of its folders it was indexed from: relative
    to the source's outermost root holding it, so ``index kb/sub/a.md`` updates the document
    ``index kb`` made instead of adding a twin. None when no root holds it."""
    holding = sorted((r for r in roots if under(path, r)), key=len)
    return _id_from(source, path, holding[0]) if holding else None


def in_scope(path: str | None, paths: Sequence[str]) -> bool:
    """Whether a stored document's file lies under one of the indexed ``paths``."""
    return path is not None and any(under(path, p) for p in paths)
