"""Discovery: the files of a source, from its paths and include/exclude globs.

Folders are walked recursively; excluded folders are pruned, never entered.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from search.errors import SourceError

# The name discovery logged under while it lived in search.loaders, so log settings still apply.
log = logging.getLogger("search.loaders")

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

