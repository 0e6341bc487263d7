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
