"""Check a model's citation markers against the sources it was given.

The model cites sources as ``[n]``, ``[1, 2]``, ``[1][2]`` or ``[1-3]``. :func:`check_citations`
keeps only markers that point to a real source (a model can cite ``[7]`` with five sources),
renumbers the cited sources 1..m in order of first appearance so the list under the answer reads
[1], [2], [3] with no gaps, rewrites the text to match, and reports an answer that cites nothing.
Code spans and fenced blocks are left untouched: ``a[0]`` there is code, not a citation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# A bracket holding numbers separated by commas, with ranges; not a Markdown link "[1](url)".
# Leading blanks are captured so a removed marker does not leave "word ." behind.
_MARKER = re.compile(
    r"(?P<space>[ \t]*)\[(?P<body>\s*\d+(?:\s*[-–]\s*\d+)?(?:\s*,\s*\d+(?:\s*[-–]\s*\d+)?)*\s*)\](?!\()"
)
_CODE = re.compile(r"```.*?(?:```|$)|`[^`\n]*`", re.DOTALL)
# A range wider than this is treated as noise rather than expanded.
_MAX_RANGE = 20


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
        return not self.cited


def parse_marker_numbers(body: str) -> list[int]:
    """The numbers in a marker's body: "1, 2" → [1, 2]; "2-4" → [2, 3, 4]."""
    numbers: list[int] = []
    for part in body.split(","):
        bounds = re.split(r"\s*[-–]\s*", part.strip())
        if len(bounds) == 2:
            lo, hi = int(bounds[0]), int(bounds[1])
            if lo <= hi and hi - lo < _MAX_RANGE:
                numbers.extend(range(lo, hi + 1))
            else:
                numbers.extend((lo, hi))
        else:
            numbers.append(int(bounds[0]))
    return numbers


def find_citations(text: str) -> list[int]:
    """Every number cited in ``text``, in order of appearance (with repeats)."""
    found: list[int] = []
    for segment, is_code in _segments(text):
        if not is_code:
            for match in _MARKER.finditer(segment):
                found.extend(parse_marker_numbers(match.group("body")))
    return found


def check_citations(text: str, sources: Sequence[T]) -> CitedText[T]:
    """Map markers in ``text`` to ``sources`` (``[1]`` is ``sources[0]``), drop and renumber."""
    order: list[int] = []  # original numbers in order of first appearance
    invalid: list[int] = []

    def rewrite(match: re.Match[str]) -> str:
        new_numbers: list[int] = []
        for number in parse_marker_numbers(match.group("body")):
            if not 1 <= number <= len(sources):
                invalid.append(number)
                continue
            if number not in order:
                order.append(number)
            new = order.index(number) + 1
            if new not in new_numbers:
                new_numbers.append(new)
        if not new_numbers:
            return ""
        return f"{match.group('space')}[{', '.join(map(str, new_numbers))}]"

    parts = [
        segment if is_code else _MARKER.sub(rewrite, segment)
        for segment, is_code in _segments(text)
    ]
    return CitedText(
        text="".join(parts).strip(),
        cited=tuple(sources[n - 1] for n in order),
        original_numbers=tuple(order),
        invalid=tuple(invalid),
    )


def _segments(text: str) -> list[tuple[str, bool]]:
    """Split ``text`` into (segment, is_code) pieces, in order."""
    pieces: list[tuple[str, bool]] = []
    last = 0
    for match in _CODE.finditer(text):
        if match.start() > last:
            pieces.append((text[last : match.start()], False))
        pieces.append((match.group(0), True))
        last = match.end()
    if last < len(text):
        pieces.append((text[last:], False))
    return pieces
