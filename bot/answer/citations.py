"""Check a model's citation markers against the sources it was given.

The model cites sources as ``[n]``, ``[1, 2]``, ``[1][2]`` or ``[1-3]``. Markers that point to no
source (a model can cite ``[7]`` with five sources) are removed with the blank before them; the
cited sources are renumbered 1..m in order of first appearance, so the list under the answer
reads [1], [2], [3] with no gaps, and the text is rewritten to match. Code spans and fenced blocks
are left alone: ``a[0]`` there is code, not a citation. A Markdown link ``[1](url)`` is not a
marker either.

The work is incremental (:class:`CitationRewriter`), so a streamed answer is rewritten as it
arrives and the text shown while streaming is exactly the final text; :func:`check_citations`
runs it over a whole text at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_MARKER = re.compile(
    r"\[\s*\d+(?:\s*[-–]\s*\d+)?(?:\s*,\s*\d+(?:\s*[-–]\s*\d+)?)*\s*\]"
)
# What a marker can look like before its "]" has arrived; longer than _MAX_MARKER it is not one.
_MARKER_PREFIX = re.compile(r"\[[\d\s,\-–]*")
_MAX_MARKER = 64
# A range wider than this is noise ("[1-2024]"), not a list of sources to expand.
_MAX_RANGE = 20
_BLANKS = " \t"


@dataclass(frozen=True)
class CitedText(Generic[T]):
    """The rewritten text and the sources it cites.

    ``cited[i]`` is the source now numbered ``i + 1``; ``original_numbers[i]`` is the number the
    model used for it. ``invalid`` lists the numbers that pointed to no source (removed).
    """

    text: str
    cited: tuple[T, ...]
    original_numbers: tuple[int, ...]
    invalid: tuple[int, ...]

    @property
    def cites_nothing(self) -> bool:
        """True when the answer cites no source at all: the caller should flag it."""
        return not self.cited


def parse_marker_numbers(body: str) -> list[int]:
    """The numbers in a marker's body: "1, 2" → [1, 2]; "2-4" → [2, 3, 4]."""
    numbers: list[int] = []
    for part in body.split(","):
        bounds = [int(b) for b in re.split(r"\s*[-–]\s*", part.strip()) if b]
        if len(bounds) == 2 and 0 <= bounds[1] - bounds[0] < _MAX_RANGE:
            numbers.extend(range(bounds[0], bounds[1] + 1))
        else:
            numbers.extend(bounds)
    return numbers


def check_citations(text: str, sources: Sequence[T]) -> CitedText[T]:
    """Map markers in ``text`` to ``sources`` (``[1]`` is ``sources[0]``), drop and renumber."""
    rewriter = CitationRewriter(sources)
    rewriter.feed(text)
    rewriter.finish()
    return rewriter.result()


class CitationRewriter(Generic[T]):
    """Rewrites citation markers in text that arrives in pieces.

    :meth:`feed` returns the text that is safe to show now; it holds back only what might still
    turn into a marker (an open ``[``, trailing blanks, a run of backticks). :meth:`finish`
    flushes the rest. The concatenation of everything returned is :meth:`result`'s text.
    """

    def __init__(self, sources: Sequence[T]) -> None:
        self._sources = sources
        self._pending = ""
        self._code: str | None = None  # the backtick run that opened the current code span
        self._order: list[int] = []  # original numbers in order of first appearance
        self._invalid: list[int] = []
        self._emitted: list[str] = []

    def feed(self, delta: str) -> str:
        self._pending += delta
        return self._drain(final=False)

    def finish(self) -> str:
        return self._drain(final=True)

    def result(self) -> CitedText[T]:
        return CitedText(
            text="".join(self._emitted).strip(),
            cited=tuple(self._sources[n - 1] for n in self._order),
            original_numbers=tuple(self._order),
            invalid=tuple(self._invalid),
        )

    # -- internals ------------------------------------------------------------------------------

    def _drain(self, *, final: bool) -> str:
        p, i, out = self._pending, 0, []
        while i < len(p):
            ch = p[i]
            if ch == "`":
                end = _run_end(p, i, "`")
                if end == len(p) and not final:
                    break  # the run of backticks may continue in the next delta
                self._toggle_code(p[i:end])
                out.append(p[i:end])
                i = end
            elif self._code is not None:
                if ch == "\n" and len(self._code) < 3:
                    self._code = None  # inline code does not span lines (our simplification)
                out.append(ch)
                i += 1
            elif ch in _BLANKS or ch == "[":
                step = self._marker(p, i, final, out)
                if step is None:
                    break  # need more text to decide
                i = step
            else:
                out.append(ch)
                i += 1
        self._pending = p[i:]
        text = "".join(out)
        self._emitted.append(text)
        return text

    def _marker(self, p: str, start: int, final: bool, out: list[str]) -> int | None:
        """Handle blanks and/or a "[" at ``start``; the next index, or None to wait for more."""
        bracket = _run_end(p, start, _BLANKS)
        if bracket == len(p):
            if not final:
                return None  # trailing blanks: a dropped marker may follow and take them along
            out.append(p[start:])
            return len(p)
        if p[bracket] != "[":
            out.append(p[start:bracket])
            return bracket
        match = _MARKER.match(p, bracket)
        if match is None:
            prefix = _MARKER_PREFIX.match(p, bracket)
            could_grow = prefix is not None and prefix.end() == len(p)
            if could_grow and not final and len(p) - bracket < _MAX_MARKER:
                return None
            out.append(p[start : bracket + 1])
            return bracket + 1
        end = match.end()
        if end == len(p) and not final:
            return None  # "[1](" would make it a link: look at the next character first
        if end < len(p) and p[end] == "(":
            out.append(p[start : bracket + 1])
            return bracket + 1
        replacement = self._renumber(match.group(0)[1:-1])
        if replacement:
            out.append(p[start:bracket] + replacement)
        return end

    def _renumber(self, body: str) -> str:
        new_numbers: list[int] = []
        for number in parse_marker_numbers(body):
            if not 1 <= number <= len(self._sources):
                self._invalid.append(number)
                continue
            if number not in self._order:
                self._order.append(number)
            new = self._order.index(number) + 1
            if new not in new_numbers:
                new_numbers.append(new)
        return f"[{', '.join(map(str, new_numbers))}]" if new_numbers else ""

    def _toggle_code(self, run: str) -> None:
        if self._code is None:
            self._code = run
        elif (len(self._code) >= 3 and len(run) >= 3) or run == self._code:
            self._code = None


def _run_end(text: str, start: int, chars: str) -> int:
    end = start
    while end < len(text) and text[end] in chars:
        end += 1
    return end
