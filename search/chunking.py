"""Heading-aware chunking in the embedding model's own tokens.

A document is cut into sections at its Markdown headings; each section is tokenized once with
offsets, and cut into windows of at most ``chunk_tokens`` tokens that share ``overlap`` tokens.
Windows end at a paragraph or sentence boundary when one is near the end, so chunks read well,
and map back to exact character spans of the document, so a chunk's text is the document's text
(except that a table cut into several chunks repeats its header row in each; see `_pieces`).
Measuring in tokens (not words) keeps Chinese or Japanese text from becoming one giant chunk.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.chunk_tables import Table, find_tables
from search.errors import ModelError
from search.models import Chunk, Document
from search.text import CJK_RUN, plain_text

# Part of every index fingerprint (`search.indexer`): bump it whenever the same text and settings
# would be cut differently, so an existing index re-chunks on its next run instead of mixing
# chunks of two chunkers. 2: tables repeat their header row, windows end at a sentence in reach.
CHUNKING_VERSION = 2

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)[ \t]*(.*?)(?:[ \t]+#+)?[ \t]*$")
_SENTENCE_END = frozenset(".!?。！？…‼⁇⁈⁉")
_FULL_WIDTH_END = frozenset("。！？")  # CJK sentences end without a following space
# CJK clause punctuation has no space after it either; a cut there beats one inside a word.
_FULL_WIDTH_PAUSE = frozenset("，、；：")
_CLOSERS = frozenset("\"')]}»”’」』】）")
_WORD_CHAR = re.compile(r"\w")

# Offsets cost ~100 bytes a token in Python: sections longer than _BLOCK_CHARS are tokenized in
# pieces cut at paragraph breaks, and one tokenizer call sees about _BATCH_CHARS characters, so a
# 20 MB file never holds millions of offsets at once.
_BLOCK_CHARS = 100_000
_BATCH_CHARS = 500_000

# Boundary preference, best first: where a window may end, as found between two tokens.
_PARAGRAPH, _SENTENCE, _LINE, _WORD = range(4)


@dataclass(frozen=True)
class Section:
    """A run of body text under one heading path; ``start``/``end`` index the document text."""

    headings: tuple[str, ...]
    start: int
    end: int


def iter_headings(text: str) -> Iterator[tuple[int, str, int, int]]:
    """Yield ``(level, clean text, line start, line end)`` for each ATX heading of Markdown
    text, skipping fenced code blocks (where '#' starts shell and Python comments)."""
    fence: str | None = None
    pos = 0
    for line in text.splitlines(keepends=True):
        line_start, pos = pos, pos + len(line)
        stripped = line.rstrip("\r\n")
        fence_match = _FENCE.match(stripped)
        if fence is not None:
            # Only a bare fence of the same kind, at least as long, closes the block.
            if (
                fence_match
                and fence_match.group(1)[0] == fence[0]
                and len(fence_match.group(1)) >= len(fence)
                and not fence_match.group(2).strip()
            ):
                fence = None
            continue
        if fence_match and not (fence_match.group(1)[0] == "`" and "`" in fence_match.group(2)):
            fence = fence_match.group(1)
            continue
        heading = _ATX.match(stripped)
        if heading is not None:
            yield len(heading.group(1)), plain_text(heading.group(2)), line_start, pos


def split_sections(text: str, title: str = "") -> list[Section]:
    """Split Markdown at ATX headings (``#`` .. ``######``) outside fenced code blocks.

    Heading lines themselves are left out of the sections: the heading path travels with each
    chunk and `Chunk.embedding_text` puts it back. A level-1 heading equal to the document title
    is not part of any path (it would only repeat the title). Blank sections are dropped.
    """
    title_key = plain_text(title).casefold()
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    body_start = 0
    for level, name, line_start, line_end in iter_headings(text):
        sections.append(Section(_path(stack), body_start, line_start))
        while stack and stack[-1][0] >= level:
            stack.pop()
        if not (level == 1 and title_key and name.casefold() == title_key):
            stack.append((level, name))
        body_start = line_end
    sections.append(Section(_path(stack), body_start, len(text)))
    return [s for s in sections if text[s.start : s.end].strip()]


def _path(stack: list[tuple[int, str]]) -> tuple[str, ...]:
    return tuple(name for _, name in stack if name)


def _blocks(text: str, start: int, end: int, limit: int) -> Iterator[tuple[int, int]]:
    """Cut ``text[start:end]`` into pieces of at most ``limit`` characters at a paragraph (else
    line, else space) break in the second half of each piece."""
    while end - start > limit:
        for sep in ("\n\n", "\n", " "):
            cut = text.rfind(sep, start + limit // 2, start + limit)
            if cut >= 0:
                cut += len(sep)
                break
        else:
            cut = start + limit
        yield start, cut
        start = cut
    yield start, end


class Chunker:
    """Cut documents into heading-aware token windows.

    ``tokenizer`` is a HuggingFace *fast* tokenizer (it must return offset mappings), normally
    the embedding model's, so ``chunk_tokens`` is what the model really sees. The heading path
    and title are added by `Chunk.embedding_text`, so leave room for them below the model's limit.
    """

    def __init__(self, tokenizer: Any, chunk_tokens: int = 220, overlap: int = 32) -> None:
        if chunk_tokens < 8:
            raise ValueError(f"chunk_tokens={chunk_tokens} is too small; use at least 8")
        if not 0 <= overlap <= chunk_tokens // 2:
            raise ValueError(
                f"overlap={overlap} must be between 0 and half of chunk_tokens ({chunk_tokens})"
            )
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("the chunker needs a fast tokenizer (one that returns offsets)")
        self.tokenizer = tokenizer
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap

    def chunk(self, document: Document) -> list[Chunk]:
        """The chunks of one document, in document order, ids ``f"{doc_id}:{ordinal}"``."""
        return self.chunk_many([document])[0]

    def chunk_many(self, documents: Sequence[Document]) -> list[list[Chunk]]:
        """Chunk several documents with one tokenizer call (the tokenizer may use several cores).

        Same result as `chunk` on each document.
        """
        results: list[list[Chunk]] = [[] for _ in documents]
        batch: list[tuple[int, tuple[str, ...], str]] = []
        batch_chars = 0
        for doc_index, doc in enumerate(documents):
            for section in split_sections(doc.text, doc.title):
                for start, end in _blocks(doc.text, section.start, section.end, _BLOCK_CHARS):
                    batch.append((doc_index, section.headings, doc.text[start:end]))
                    batch_chars += end - start
                    if batch_chars >= _BATCH_CHARS:
                        self._chunk_batch(batch, documents, results)
                        batch, batch_chars = [], 0
        self._chunk_batch(batch, documents, results)
        return results

    def _chunk_batch(
        self,
        batch: list[tuple[int, tuple[str, ...], str]],
        documents: Sequence[Document],
        results: list[list[Chunk]],
    ) -> None:
        """Tokenize a batch of section bodies in one call and append their windows as chunks."""
        offsets = self._offsets([body for _, _, body in batch])
        for (doc_index, headings, body), offs in zip(batch, offsets):
            doc, out = documents[doc_index], results[doc_index]
            for piece in self._pieces(body, offs):
                text = piece.strip()
                if text:
                    out.append(
                        Chunk(
                            chunk_id=f"{doc.doc_id}:{len(out)}",
                            doc_id=doc.doc_id,
                            ordinal=len(out),
                            text=text,
                            title=doc.title,
                            headings=headings,
                        )
                    )

    def _pieces(self, text: str, offs: list[tuple[int, int]]) -> list[str]:
        """The chunk texts of one section body: token windows over its prose, and each table
        that needs more than one window cut between rows with its header row repeated."""
        size = self.chunk_tokens
        tables = find_tables(text) if len(offs) > size else []
        if not tables:
            return [text[a:b] for a, b in self._windows(text, offs, size, self.overlap)]
        starts = [start for start, _ in offs]
        pieces: list[str] = []
        i = 0  # the first token not yet in a piece
        for table in tables:
            t0, t1 = bisect_left(starts, table.start), bisect_left(starts, table.end)
            header_tokens = bisect_left(starts, table.header[1]) - t0
            if header_tokens > size // 2:
                continue  # a header this long would crowd out the rows: cut it as prose
            # A table is a chunk (or several) of its own, so no prose window ends inside it. A
            # short lead-in ("The table lists each class.") opens its first chunk rather than
            # being a chunk of a few tokens on its own.
            lead = offs[i][0] if 0 < t0 - i <= size // 4 else None
            if lead is None:
                pieces += [text[a:b] for a, b in self._windows(text, offs[i:t0], size,
                                                               self.overlap)]
            pieces += self._table_pieces(text, offs, starts, table, size - header_tokens,
                                         lead, t0 - i if lead is not None else 0)
            i = t1
        pieces += [text[a:b] for a, b in self._windows(text, offs[i:], size, self.overlap)]
        return pieces

    def _table_pieces(self, text: str, offs: list[tuple[int, int]], starts: list[int],
                      table: Table, budget: int, lead: int | None, lead_tokens: int) -> list[str]:
        """A table's rows in groups of at most ``budget`` tokens, each group after the header
        (so a piece is at most ``chunk_tokens``); groups are balanced, and a row too long for
        a group on its own is cut into windows, each again after the header. ``lead``: where a
        lead-in of ``lead_tokens`` starts that opens the first piece, before the header."""
        header = text[table.header[0] : table.header[1]]
        rows = [(bisect_left(starts, a), bisect_left(starts, b), a, b) for a, b in table.rows]
        total = rows[-1][1] - rows[0][0] + lead_tokens
        target = math.ceil(total / math.ceil(total / budget))
        pieces: list[str] = []
        group: list[tuple[int, int, int, int]] = []

        def flush() -> None:
            if group:
                first = lead is not None and not pieces
                head = text[lead : table.header[1]] if first else header
                pieces.append(f"{head}\n{text[group[0][2] : group[-1][3]]}")
                group.clear()

        for row in rows:
            n = row[1] - row[0]
            extra = lead_tokens if lead is not None and not pieces else 0
            if n > budget - extra:
                flush()
                if lead is not None and not pieces:  # the lead-in alone, then the long row
                    pieces.append(text[lead : table.start])
                for a, b in self._windows(text, offs[row[0] : row[1]], budget, 0):
                    pieces.append(f"{header}\n{text[a:b]}")
                continue
            used = group[-1][1] - group[0][0] + extra if group else extra
            if group and (used + n > budget or used >= target):
                flush()
            group.append(row)
        flush()
        return pieces

    def _offsets(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        if not texts:
            return []
        encoded = self.tokenizer(
            texts,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,  # long sections are expected: no "longer than max length" warning
        )
        # Without special tokens every token maps to characters of its text.
        return encoded["offset_mapping"]

    def _windows(self, text: str, offs: list[tuple[int, int]], size: int,
                 overlap: int) -> list[tuple[int, int]]:
        """Character spans of windows of at most ``size`` tokens over a run of a section's
        tokens, consecutive windows sharing ``overlap`` tokens."""
        n = len(offs)
        spans: list[tuple[int, int]] = []
        a = 0
        while n:
            remaining = n - a
            if remaining <= size:
                spans.append((offs[a][0], offs[-1][1]))
                break
            # Balance the windows still needed, so the last one is not a sliver of overlap.
            windows_left = math.ceil((remaining - overlap) / (size - overlap))
            target = min(size, math.ceil((remaining - overlap) / windows_left) + overlap)
            # A sentence end is within reach down to half the window, but never so early that
            # the next window (``overlap`` tokens before the cut) would barely move forward.
            reach = a + max(target // 2, overlap + (target - overlap) // 2)
            cut = self._cut(text, offs, a + target - target // 4, a + target, reach)
            spans.append((offs[a][0], offs[cut - 1][1]))
            nxt = max(cut - overlap, a + 1)
            # Start the next window on a word, not on a "##piece" of one.
            while nxt > a + 1 and self._inside_word(text, offs, nxt):
                nxt -= 1
            a = nxt
        return spans

    @staticmethod
    def _cut(text: str, offs: list[tuple[int, int]], lo: int, hi: int, reach: int) -> int:
        """The token index to end a window before: the latest best boundary in ``[lo, hi]``;
        when that is only a line or word break, the latest sentence end in ``[reach, lo)``
        instead, as a sentence cut in two is found by neither half."""
        best: dict[int, int] = {}
        for j in range(hi, lo - 1, -1):
            kind = _boundary(text, offs, j)
            if kind is not None:
                best.setdefault(kind, j)
                if kind == _PARAGRAPH:
                    break
        if best and min(best) <= _SENTENCE:
            return best[min(best)]
        for j in range(lo - 1, reach - 1, -1):
            if (kind := _boundary(text, offs, j)) is not None and kind <= _SENTENCE:
                return j
        return best[min(best)] if best else hi

    @staticmethod
    def _inside_word(text: str, offs: list[tuple[int, int]], j: int) -> bool:
        start = offs[j][0]
        if offs[j - 1][1] != start:
            return False
        before, here = text[start - 1], text[start]
        return bool(
            _WORD_CHAR.match(before)
            and _WORD_CHAR.match(here)
            and not CJK_RUN.match(before)
            and not CJK_RUN.match(here)
        )


def _boundary(text: str, offs: list[tuple[int, int]], j: int) -> int | None:
    """What kind of break lies between tokens ``j - 1`` and ``j`` (None: inside a word)."""
    prev_end, next_start = offs[j - 1][1], offs[j][0]
    gap = text[prev_end:next_start]
    if gap.count("\n") >= 2:
        return _PARAGRAPH
    end = _sentence_end(text, offs[j - 1][0], prev_end)
    # Full-width enders (。！？) end a sentence with no space after them; "3.5" does not.
    if end is not None and (gap or end in _FULL_WIDTH_END):
        return _SENTENCE
    if "\n" in gap:
        return _LINE
    if gap or text[prev_end - 1] in _FULL_WIDTH_PAUSE:
        return _WORD
    return None


def _sentence_end(text: str, token_start: int, token_end: int) -> str | None:
    """The sentence ender the text up to ``token_end`` ends with, closing quotes and brackets
    allowed after it (``。」``), or None."""
    i = token_end - 1
    while i > token_start - 3 and i > 0 and text[i] in _CLOSERS:
        i -= 1
    return text[i] if text[i] in _SENTENCE_END else None


def load_tokenizer(model_name_or_path: str) -> Any:
    """Load the fast tokenizer of a (sentence-transformers) model, for `Chunker`.

    Accepts a sentence-transformers model folder whose tokenizer sits in a module sub-folder.
    Raises `ModelError` when the tokenizer cannot be found or is not a fast tokenizer.
    """
    location = _tokenizer_folder(model_name_or_path)
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(location, use_fast=True)
    except Exception as exc:
        raise ModelError(
            f"cannot load a tokenizer from {model_name_or_path!r} ({type(exc).__name__}: {exc}); "
            "pass a local model folder, or a model name that is in the Hugging Face cache"
        ) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            f"the tokenizer of {model_name_or_path!r} is not a fast tokenizer; chunking needs "
            "one (install the 'tokenizers' package or use a model that ships tokenizer.json)"
        )
    return tokenizer


def _tokenizer_folder(model_name_or_path: str) -> str:
    """sentence-transformers may keep the Transformer module (and tokenizer) in a sub-folder."""
    root = Path(model_name_or_path)
    modules = root / "modules.json"
    if not modules.is_file() or (root / "tokenizer_config.json").is_file():
        return model_name_or_path
    try:
        for module in json.loads(modules.read_text(encoding="utf-8")):
            if module.get("type", "").endswith("Transformer") and module.get("path"):
                return str(root / module["path"])
    except (OSError, ValueError, AttributeError):
        pass
    return model_name_or_path
