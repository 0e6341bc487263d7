"""Is a candidate's change real? A paired bootstrap over per-query scores, and the gate's two rules.

The gate compares the active model and a candidate on the *same* queries, so the test is paired:
the per-query differences (candidate - active nDCG@10) are resampled with replacement and the
interval is the percentile interval of their mean (scipy.stats.bootstrap, seeded, so the same
scores always give the same verdict).

- **gains**: the held-out questions about this knowledge base. The candidate must be better
  beyond noise: the interval's lower bound above zero (and the mean gain at least ``min_gain``).
- **no harm**: the document-disjoint guard. The candidate may lose no more than the guard's own
  noise: the interval's upper bound at or above zero, i.e. the guard cannot show at this
  confidence that the candidate is worse (equivalently: the mean loss is within the interval's
  half-width of zero). A fixed margin on the lower bound (say -0.01) was not chosen: with the
  ~160 guard queries of SciFact the interval's half-width is 0.02-0.03, so it would refuse most
  candidates that reorder results without changing their quality on average.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

CONFIDENCE = 0.95
RESAMPLES = 10_000


@dataclass(frozen=True)
class PairedDiff:
    """The mean of ``after - before`` over ``n`` paired queries, with its bootstrap interval."""

    n: int
    mean: float
    low: float
    high: float
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def __str__(self) -> str:
        return (f"{self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}] "
                f"({self.confidence:.0%}, {self.n} queries)")


def paired_bootstrap(
    before: Sequence[float], after: Sequence[float], *, confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES, seed: int = 13,
) -> PairedDiff:
    """The mean paired difference ``after - before`` and its percentile bootstrap interval."""
    import numpy as np

    if len(before) != len(after):
        raise ValueError(f"paired scores need equal lengths, not {len(before)} and {len(after)}")
    if len(before) == 0:
        raise ValueError("no queries to compare: the gate needs at least one validation query")
    diffs = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    mean = float(diffs.mean())
    if len(diffs) < 2 or np.ptp(diffs) == 0:  # every resample has the same mean
        return PairedDiff(len(diffs), mean, mean, mean, confidence)
    from scipy.stats import bootstrap

    res = bootstrap((diffs,), np.mean, n_resamples=resamples, confidence_level=confidence,
                    method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return PairedDiff(len(diffs), mean, float(ci.low), float(ci.high), confidence)


def paired(before: Mapping[str, float], after: Mapping[str, float], **kwargs) -> PairedDiff:
    """:func:`paired_bootstrap` over the query ids both mappings score (in sorted order)."""
    qids = sorted(set(before) & set(after))
    return paired_bootstrap([before[q] for q in qids], [after[q] for q in qids], **kwargs)


def gains(diff: PairedDiff, min_gain: float = 0.0) -> bool:
    """The held-out rule: better beyond noise (lower bound > 0) and by at least ``min_gain``."""
    return diff.low > 0 and diff.mean >= min_gain


def no_harm(diff: PairedDiff) -> bool:
    """The guard's rule: any loss is within the guard's own noise (upper bound >= 0)."""
    return diff.high >= 0
