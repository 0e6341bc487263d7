"""The gate's statistics (search.finetune.significance) on synthetic per-query scores."""

import numpy as np
import pytest

from search.finetune.significance import gains, no_harm, paired, paired_bootstrap


def _scores(n, seed):
    return np.random.default_rng(seed).uniform(0, 1, n)


def test_a_clearly_better_candidate_gains_and_does_no_harm():
    before = _scores(150, 1)
    after = np.clip(before + np.random.default_rng(2).normal(0.08, 0.1, 150), 0, 1)
    diff = paired_bootstrap(before, after)
    assert diff.low > 0 < diff.mean
    assert gains(diff) and no_harm(diff)


def test_an_identical_candidate_does_not_gain():
    before = _scores(150, 3)
    diff = paired_bootstrap(before, before.copy())
    assert (diff.mean, diff.low, diff.high) == (0.0, 0.0, 0.0)
    assert not gains(diff)
    assert no_harm(diff)  # no loss at all: the guard lets it through, the held-out rule does not


def test_a_harmful_candidate_fails_both_rules():
    before = _scores(150, 4)
    after = np.clip(before - np.random.default_rng(5).normal(0.1, 0.1, 150), 0, 1)
    diff = paired_bootstrap(before, after)
    assert diff.high < 0
    assert not gains(diff) and not no_harm(diff)


def test_a_noisy_small_change_is_not_a_gain():
    rng = np.random.default_rng(6)
    before = rng.uniform(0, 1, 40)
    after = np.clip(before + rng.normal(0.005, 0.3, 40), 0, 1)  # tiny effect, big spread
    diff = paired_bootstrap(before, after)
    assert diff.low < 0 < diff.high
    assert not gains(diff) and no_harm(diff)


def test_the_interval_covers_the_true_mean_difference():
    """Repeated synthetic experiments with a known mean difference: the 95% interval holds it
    in most of them (percentile bootstrap, n=100: close to nominal coverage)."""
    true_diff, covered, runs = 0.03, 0, 60
    for i in range(runs):
        rng = np.random.default_rng(100 + i)
        before = rng.uniform(0, 1, 100)
        after = before + rng.normal(true_diff, 0.15, 100)  # unclipped: the true mean is exact
        diff = paired_bootstrap(before, after, resamples=2000, seed=i)
        covered += diff.low <= true_diff <= diff.high
    assert covered / runs >= 0.85


def test_same_scores_same_verdict_and_pairing_by_query_id():
    before = {f"q{i}": v for i, v in enumerate(_scores(50, 7))}
    after = {q: v + 0.05 for q, v in reversed(before.items())}  # order must not matter
    one, two = paired(before, after), paired(before, after)
    assert one == two
    assert one.mean == pytest.approx(0.05) and one.low == pytest.approx(0.05)


def test_mismatched_or_empty_scores_are_refused():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="no queries"):
        paired_bootstrap([], [])
