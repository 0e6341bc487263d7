"""Evaluation data: BEIR datasets, and the team's own question files.

BEIR layout (https://github.com/beir-cellar/beir), one directory per dataset::

    corpus.jsonl        {"_id": ..., "title": ..., "text": ...} per line
    queries.jsonl       {"_id": ..., "text": ...} per line
    qrels/<split>.tsv   query-id <TAB> corpus-id <TAB> score, after a header line

Team question files (``lorebot eval --questions FILE``), one JSON object per line::

    {"question": "How do I set up the VPN?", "answers": ["docs/vpn.md", "https://wiki/x"], "id": "vpn"}

``answers`` name the documents that answer the question, by URL or by file path; ``id`` is
optional (default ``line-N``). How an answer is matched to a retrieved hit is described in
``LocationMatcher``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from search.errors import SourceError
from search.models import Document, Hit
from search.text import content_hash, plain_text


class DatasetError(SourceError):
    """An evaluation dataset or question file is missing or malformed."""


# ---------------------------------------------------------------------------------------------
# BEIR


class BeirCorpus:
    """The documents of ``corpus.jsonl``, streamed as ``(doc_id, title, text)`` tuples.

    Re-iterable (every iteration reads the file again) and never held in memory, so corpora of
    millions of documents can be indexed. A malformed line raises ``DatasetError`` when reached.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        for line_no, obj in _read_jsonl(self.path):
            doc_id = _id_field(obj, self.path, line_no)
            title = _str_field(obj, "title", self.path, line_no, default="")
            text = _str_field(obj, "text", self.path, line_no)
            yield doc_id, title, text

    def __repr__(self) -> str:
        return f"BeirCorpus({str(self.path)!r})"


@dataclass(frozen=True)
class BeirDataset:
    """One split of a BEIR dataset: the corpus, and the queries judged in that split."""

    name: str
    split: str
    corpus: Iterable[tuple[str, str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(directory: str | os.PathLike[str], split: str = "test") -> BeirDataset:
    """Load a BEIR dataset directory; keep only the queries that have judgements in ``split``.

    Queries and judgements are read now (they are small); the corpus is streamed on iteration.
    Raises ``DatasetError`` naming the missing file, or the file and line that cannot be parsed.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"dataset directory {str(root)!r} does not exist; pass a BEIR dataset "
                           "directory holding corpus.jsonl, queries.jsonl and qrels/")
    corpus_path = root / "corpus.jsonl"
    queries_path = root / "queries.jsonl"
    qrels_path = root / "qrels" / f"{split}.tsv"
    for path in (corpus_path, queries_path):
        if not path.is_file():
            raise DatasetError(f"{str(path)!r} is missing; a BEIR dataset needs corpus.jsonl, "
                               "queries.jsonl and qrels/<split>.tsv")
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise DatasetError(f"{str(qrels_path)!r} is missing; splits available in "
                           f"{str(root)!r}: {', '.join(splits) or 'none'}")

    qrels = _read_qrels(qrels_path)
    all_queries: dict[str, str] = {}
    for line_no, obj in _read_jsonl(queries_path):
        qid = _id_field(obj, queries_path, line_no)
        if qid in qrels:
            all_queries[qid] = _str_field(obj, "text", queries_path, line_no)
    unknown = [qid for qid in qrels if qid not in all_queries]
    if unknown:
        raise DatasetError(f"{str(qrels_path)!r} judges {len(unknown)} queries that are not in "
                           f"{str(queries_path)!r}, e.g. {unknown[:3]}")
    # Keep the order of the qrels file, which is the order BEIR and trec_eval report queries in.
    queries = {qid: all_queries[qid] for qid in qrels}
    return BeirDataset(root.name, split, BeirCorpus(corpus_path), queries, qrels)


def beir_documents(
    corpus: BeirDataset | Iterable[tuple[str, str, str]], source: str
) -> Iterator[Document]:
    """The corpus (or a whole ``BeirDataset``'s corpus) as ``Document``s of ``source``.

    BEIR's ids are kept as ``doc_id``, so the qrels match hits without a mapping. Titles are
    made plain text as every loader's are (a corpus exported from docs may keep their markup).
    """
    if isinstance(corpus, BeirDataset):
        corpus = corpus.corpus
    for doc_id, raw_title, text in corpus:
        title = plain_text(raw_title)
        yield Document(
            doc_id=doc_id,
            source=source,
            title=title,
            text=text,
            content_hash=content_hash(title, text),
        )


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                raise DatasetError(f"{str(path)}:{line_no}: expected 3 tab-separated fields "
                                   f"(query-id, corpus-id, score), got {len(fields)}: {line!r}")
            qid, doc_id, grade = (x.strip() for x in fields)
            try:
                score = int(grade)
            except ValueError:
                if line_no == 1:  # the header line ("query-id corpus-id score")
                    continue
                raise DatasetError(f"{str(path)}:{line_no}: score {grade!r} is not an integer")
            # A repeated pair keeps its last grade, as BEIR's loader does.
            qrels.setdefault(qid, {})[doc_id] = score
    if not qrels:
        raise DatasetError(f"{str(path)!r} holds no judgements")
    return qrels


# ---------------------------------------------------------------------------------------------
# JSONL helpers


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Objects of a JSONL file with their 1-based line numbers; blank lines are skipped.
    UTF-8 (a UTF-8 or UTF-16 byte-order mark is honoured); anything else is a DatasetError
    naming the line, never a traceback."""
    try:
        f = path.open("rb")
    except OSError as exc:
        raise DatasetError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    with f:
        head = f.read(4)
        f.seek(0)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 (Windows editors save it)
            try:
                text = f.read().decode("utf-16")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{str(path)}: not valid UTF-16 (byte {exc.start + 1}); "
                                   "save the file as UTF-8") from exc
            lines = (line.encode("utf-8") for line in text.splitlines(keepends=True))
        else:
            lines = iter(f)
        for line_no, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{str(path)}:{line_no}: not valid UTF-8 (byte {exc.start + 1}); "
                                   "save the file as UTF-8") from exc
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{str(path)}:{line_no}: not valid JSON ({exc.msg})") from exc
            except RecursionError as exc:
                raise DatasetError(f"{str(path)}:{line_no}: JSON nested too deeply") from exc
            if not isinstance(obj, dict):
                raise DatasetError(f"{str(path)}:{line_no}: expected a JSON object, "
                                   f"got {type(obj).__name__}")
            yield line_no, obj


def _id_field(obj: dict, path: Path, line_no: int) -> str:
    value = obj.get("_id")
    # Some BEIR exports write numeric ids; the qrels always hold them as text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise DatasetError(f"{str(path)}:{line_no}: missing or empty \"_id\"")
    return value


def _str_field(obj: dict, key: str, path: Path, line_no: int, default: str | None = None) -> str:
    value = obj.get(key, default)
    if value is None:
        raise DatasetError(f"{str(path)}:{line_no}: missing \"{key}\"")
    if not isinstance(value, str):
        raise DatasetError(f"{str(path)}:{line_no}: \"{key}\" must be a string, "
                           f"got {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------------------------
# Team question files

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(location: str) -> bool:
    """Whether a location is a URL (has a ``scheme://``) rather than a file path."""
    return _URL.match(location) is not None


def normalize_url(url: str) -> str:
    """URLs compare exactly, except that a trailing slash does not matter."""
    return url.strip().rstrip("/")


def normalize_path(path: str) -> str:
    """Collapse ``.``, ``..`` and doubled separators, without touching the file system.

    Symlinks are not resolved: the indexed paths may come from another machine.
    """
    return os.path.normpath(os.path.expanduser(path.strip()))


class LocationMatcher:
    """Maps a hit to the answer entry it satisfies, so qrels keyed by entry can be looked up.

    Matching rules, in order:

    1. URL entries match a hit whose ``url`` is equal, ignoring one trailing slash.
    2. Absolute path entries match a hit whose ``path`` is equal after normalisation.
    3. Relative path entries, when ``base_dir`` is given, are resolved against it and then
       match like absolute entries (rule 2).
    4. Relative path entries, without ``base_dir``, match a hit whose path ends with the
       entry's components: ``docs/setup.md`` matches ``/srv/kb/docs/setup.md`` but not
       ``/srv/kb/mydocs/setup.md``. When several entries match, the longest one (the most
       specific) wins.

    A hit that matches no entry keys on its own normalised location (or ``doc_id`` when it has
    none), so it still takes a rank position as a non-relevant document.
    """

    def __init__(self, entries: Iterable[str], base_dir: str | os.PathLike[str] | None = None):
        self.base_dir = os.path.abspath(base_dir) if base_dir is not None else None
        self._urls: set[str] = set()
        self._exact_paths: set[str] = set()
        self._suffixes: set[str] = set()
        for entry in entries:
            key = self.entry_key(entry)
            if is_url(entry):
                self._urls.add(key)
            elif os.path.isabs(key):
                self._exact_paths.add(key)
            else:
                self._suffixes.add(key)

    def entry_key(self, entry: str) -> str:
        """The qrels key an answer entry is stored under."""
        if is_url(entry):
            return normalize_url(entry)
        path = normalize_path(entry)
        if self.base_dir is not None and not os.path.isabs(path):
            path = os.path.normpath(os.path.join(self.base_dir, path))
        return path

    def key(self, hit: Hit) -> str:
        """The entry ``hit`` satisfies, else the hit's own location (see the class docstring)."""
        if hit.url:
            url = normalize_url(hit.url)
            if url in self._urls:
                return url
        if hit.path:
            path = normalize_path(hit.path)
            if path in self._exact_paths:
                return path
            parts = path.split(os.sep)
            # Longest suffix first: the most specific entry wins.
            for start in range(len(parts)):
                suffix = os.sep.join(parts[start:])
                if suffix in self._suffixes:
                    return suffix
            return path
        if hit.url:
            return normalize_url(hit.url)
        return hit.doc_id


@dataclass(frozen=True)
class QuestionSet:
    """Questions with the locations that answer them; ``key`` turns hits into qrels keys."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    matcher: LocationMatcher = field(repr=False)

    def key(self, hit: Hit) -> str:
        """Pass as ``evaluate(..., key=questions.key)``."""
        return self.matcher.key(hit)


def load_questions(
    path: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None = None
) -> QuestionSet:
    """Load a team question file (see the module docstring).

    ``base_dir`` resolves relative answer paths; without it they match by path suffix (see
    ``LocationMatcher``). Raises ``DatasetError`` naming the file and line of any bad entry.
    """
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"question file {str(file)!r} does not exist")
    raw: list[tuple[str, str, list[str]]] = []
    seen: dict[str, int] = {}
    for line_no, obj in _read_jsonl(file):
        where = f"{str(file)}:{line_no}"
        question = obj.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DatasetError(f"{where}: \"question\" must be a non-empty string")
        answers = obj.get("answers")
        if (not isinstance(answers, list) or not answers
                or not all(isinstance(a, str) and a.strip() for a in answers)):
            raise DatasetError(f"{where}: \"answers\" must be a non-empty list of paths or URLs")
        qid = obj.get("id", f"line-{line_no}")
        if isinstance(qid, int) and not isinstance(qid, bool):
            qid = str(qid)
        if not isinstance(qid, str) or not qid:
            raise DatasetError(f"{where}: \"id\" must be a non-empty string")
        if qid in seen:
            raise DatasetError(f"{where}: id {qid!r} already used on line {seen[qid]}")
        seen[qid] = line_no
        raw.append((qid, question.strip(), answers))
    if not raw:
        raise DatasetError(f"question file {str(file)!r} holds no questions")

    matcher = LocationMatcher((a for _, _, answers in raw for a in answers), base_dir)
    queries = {qid: question for qid, question, _ in raw}
    # Team answers are binary: every listed location is relevant with grade 1.
    qrels = {qid: {matcher.entry_key(a): 1 for a in answers} for qid, _, answers in raw}
    return QuestionSet(queries, qrels, matcher)

