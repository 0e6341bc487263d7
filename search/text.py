"""Small pure text helpers shared by the chunker and the index backends."""

from __future__ import annotations

import hashlib
import re

# Han, Hiragana, Katakana, Hangul and their common extensions: scripts written without spaces
# (or, for Hangul, where word-level BM25 matches poorly), which BM25 sees as overlapping bigrams.
_CJK = (
    "\u3040-\u309f"  # Hiragana
    "\u30a0-\u30ff"  # Katakana
    "\u3400-\u4dbf"  # CJK Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\uff66-\uff9f"  # half-width Katakana
)
CJK_RUN = re.compile(f"[{_CJK}]+")


def has_cjk(text: str) -> bool:
    return CJK_RUN.search(text) is not None


def cjk_bigrams(run: str) -> list[str]:
    """Overlapping bigrams of one CJK run; a single character stands alone."""
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def segment_cjk(text: str) -> str:
    """Replace each CJK run with space-separated bigrams, leaving other text untouched.

    Applied to documents at index time and to queries at search time, so "東京都" and "東京"
    share the token "東京" — the same scheme as OpenSearch's ``cjk_bigram`` filter.
    """
    return CJK_RUN.sub(lambda m: " " + " ".join(cjk_bigrams(m.group())) + " ", text)


def content_hash(*parts: str) -> str:
    """A stable hex digest of text parts (unambiguous: parts are length-prefixed)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


# Characters that can start Markdown or HTML markup in a line; a title without any is plain.
_MARKUP_CHARS = frozenset("<>*_`[]&\\!~")
_INLINE_PARSER = None


def plain_text(markdown: str) -> str:
    """One line of inline Markdown as plain text, for titles and heading paths.

    Inline HTML goes (``Quotas<a name="x"></a>`` -> ``Quotas``), emphasis, code and links keep
    their text, entities and backslash escapes are decoded, runs of whitespace become one
    space. markdown-it-py (a dependency of rich) parses, so ``snake_case_names`` and ``a < b``
    stay as they are, as CommonMark says; a line with no markup character skips the parser.
    """
    if not _MARKUP_CHARS.intersection(markdown):
        return " ".join(markdown.split())
    global _INLINE_PARSER
    if _INLINE_PARSER is None:  # imported on first use: most commands never parse a heading
        from markdown_it import MarkdownIt

        _INLINE_PARSER = MarkdownIt("commonmark")
    parts: list[str] = []
    for block in _INLINE_PARSER.parseInline(markdown):
        for token in block.children or ():
            if token.type in ("text", "code_inline", "image"):  # an image keeps its alt text
                parts.append(token.content)
            elif token.type in ("softbreak", "hardbreak"):
                parts.append(" ")
            # html_inline (tags, comments) and link/emphasis open/close marks carry no text.
    return " ".join("".join(parts).split())
