"""Where the Markdown tables of a text are, for table-aware chunking (`search.chunking`).

A table cut into several chunks keeps its meaning only if every chunk repeats the header row:
``| db.t2.medium | 32 | 16 |`` alone names no column. This module finds the tables (GFM pipe
tables, as markdown-it-py parses them: fenced code, indented code and escaped pipes are its
business, not ours) and the character spans of their header and rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A GFM delimiter row (``|---|:--:|``, pipes at the ends optional): a cheap test that lets the
# chunker skip the Markdown parser for the many texts that hold no table at all.
_DELIMITER_ROW = re.compile(r"^[ \t]{0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$",
                            re.MULTILINE)
_PARSER = None


@dataclass(frozen=True)
class Table:
    """Character spans of one table: ``header`` is the header row and the delimiter row (what
    each chunk of the table repeats), ``rows`` the body rows in order, each without its line end."""

    start: int
    end: int
    header: tuple[int, int]
    rows: tuple[tuple[int, int], ...]


def find_tables(text: str, start: int = 0, end: int | None = None) -> list[Table]:
    """The pipe tables of ``text[start:end]`` with at least one body row, spans indexing ``text``."""
    end = len(text) if end is None else end
    body = text[start:end]
    if "|" not in body or not _DELIMITER_ROW.search(body):
        return []
    global _PARSER
    if _PARSER is None:
        from markdown_it import MarkdownIt

        _PARSER = MarkdownIt("commonmark").enable("table")
    line_starts = [0]
    for m in re.finditer("\n", body):
        line_starts.append(m.end())
    line_starts.append(len(body))

    def span(first: int, last: int) -> tuple[int, int]:
        """Lines ``first`` .. ``last - 1`` as a span of ``text``, without the final line end."""
        a, b = line_starts[first], line_starts[min(last, len(line_starts) - 1)]
        return start + a, start + len(body[:b].rstrip("\r\n"))

    tables: list[Table] = []
    header: tuple[int, int] | None = None
    rows: list[tuple[int, int]] = []
    in_body = False
    for token in _PARSER.parse(body):
        if token.type == "thead_open" and token.map:
            # The header row's map is its own line; the delimiter row is the next line.
            header, rows = span(token.map[0], token.map[1] + 1), []
        elif token.type == "tbody_open":
            in_body = True
        elif token.type == "tr_open" and in_body and token.map:
            rows.append(span(*token.map))
        elif token.type == "table_close":
            if header is not None and rows:
                tables.append(Table(header[0], rows[-1][1], header, tuple(rows)))
            header, rows, in_body = None, [], False
    return tables
