"""Seeded Monte Carlo checks of error rates and coverage (fast enough for CI).

Bands: a rate estimated from S simulations has Monte Carlo s.e. sqrt(r (1 - r) / S); the
checks use about 3 s.e. so a correct method fails only by a (seeded, hence reproducible)
accident.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from emailexp.analysis import (
    ArmCounts,
    compare_proportions,
    compare_to_control,
    katz_ratio_interval,
    msprt_p_values,
    newcombe_difference_interval,
    sample_ratio_test,
)
from emailexp.analysis.sequential import _variance, msprt_confidence_half_width

SIMS = 4000


def band(rate: float, sims: int, k: float = 3.0) -> float:
    return k * math.sqrt(rate * (1 - rate) / sims)


@pytest.mark.parametrize("n,p", [(1000, 0.2), (300, 0.05)])
def test_aa_single_look_rejection_rate_is_alpha(n, p):
    rng = np.random.default_rng(11)
    xc = rng.binomial(n, p, SIMS)
    xv = rng.binomial(n, p, SIMS)
    rejections = np.mean([compare_proportions(int(a), n, int(b), n).p_value < 0.05 for a, b in zip(xv, xc)])
    assert abs(rejections - 0.05) <= band(0.05, SIMS)


def test_aa_holm_family_wise_error_with_three_variants():
    rng = np.random.default_rng(12)
    sims, n, p = 2000, 800, 0.2
    x = rng.binomial(n, p, size=(sims, 4))
    any_reject = 0
    for row in x:
        arms = [ArmCounts("A", n, int(row[0]), is_control=True)] + [
            ArmCounts(k, n, int(v)) for k, v in zip("BCD", row[1:])
        ]
        any_reject += any(c.significant for c in compare_to_control(arms, "A", alpha=0.05, correction="holm"))
    assert any_reject / sims <= 0.05 + band(0.05, sims)


@pytest.mark.parametrize("per_day,p,tau", [(200, 0.2, 0.02), (100, 0.05, 0.005)])
def test_sequential_aa_rejection_at_any_of_30_looks_is_at_most_alpha(per_day, p, tau):
    rng = np.random.default_rng(21)
    looks = 30
    nc = np.cumsum(np.full((SIMS, looks), per_day), axis=1)
    xc = np.cumsum(rng.binomial(per_day, p, size=(SIMS, looks)), axis=1)
    xv = np.cumsum(rng.binomial(per_day, p, size=(SIMS, looks)), axis=1)
    pv = msprt_p_values(xc, nc, xv, nc, tau=tau)
    ever = np.mean(pv.min(axis=1) <= 0.05)
    assert ever <= 0.05 + band(0.05, SIMS)
    # For contrast, a naive fixed-horizon z test peeked at daily is far above alpha.
    pooled = (xc + xv) / (2 * nc)
    z = (xv - xc) / nc / np.sqrt(pooled * (1 - pooled) * 2 / nc)
    naive = np.mean((np.abs(z) > 1.959963984540054).any(axis=1))
    assert naive > 0.15


def test_sequential_detects_a_real_effect_and_cs_covers_truth_uniformly():
    rng = np.random.default_rng(22)
    looks, per_day, pc, pvar, tau = 30, 400, 0.20, 0.23, 0.02
    nc = np.cumsum(np.full((SIMS, looks), per_day), axis=1).astype(float)
    xc = np.cumsum(rng.binomial(per_day, pc, size=(SIMS, looks)), axis=1)
    xv = np.cumsum(rng.binomial(per_day, pvar, size=(SIMS, looks)), axis=1)
    pv = msprt_p_values(xc, nc, xv, nc, tau=tau)
    assert np.mean(pv[:, -1] <= 0.05) > 0.9
    half = msprt_confidence_half_width(_variance(xc, nc, xv, nc), tau, 0.05)
    diff = xv / nc - xc / nc
    miss_ever = np.mean((np.abs(diff - (pvar - pc)) > half).any(axis=1))
    assert miss_ever <= 0.05 + band(0.05, SIMS)


@pytest.mark.parametrize("n_c,p_c,n_v,p_v", [(500, 0.20, 500, 0.25), (2000, 0.05, 1500, 0.06), (200, 0.5, 300, 0.45)])
def test_difference_and_lift_intervals_cover_95_percent(n_c, p_c, n_v, p_v):
    rng = np.random.default_rng(31)
    xc = rng.binomial(n_c, p_c, SIMS)
    xv = rng.binomial(n_v, p_v, SIMS)
    cover_diff = cover_lift = 0
    for a, b in zip(xv, xc):
        lo, hi = newcombe_difference_interval(int(a), n_v, int(b), n_c)
        cover_diff += lo <= p_v - p_c <= hi
        lo, hi, _ = katz_ratio_interval(int(a), n_v, int(b), n_c)
        cover_lift += lo <= p_v / p_c <= hi
    assert abs(cover_diff / SIMS - 0.95) <= 0.015
    assert abs(cover_lift / SIMS - 0.95) <= 0.015


def test_srm_false_positive_rate_is_tiny():
    rng = np.random.default_rng(41)
    sims = 10_000
    weights = np.array([0.5, 0.25, 0.25])
    counts = rng.multinomial(6000, weights, size=sims)
    flagged = np.mean([sample_ratio_test(["a", "b", "c"], row, weights).mismatch for row in counts])
    assert flagged <= 0.001 + band(0.001, sims)
    shifted = rng.multinomial(6000, [0.47, 0.265, 0.265], size=500)
    power = np.mean([sample_ratio_test(["a", "b", "c"], row, weights).mismatch for row in shifted])
    assert power > 0.5
