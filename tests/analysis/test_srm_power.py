"""Sample ratio mismatch and power / sample size against scipy and statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import power_proportions_2indep, proportion_effectsize

from emailexp.analysis import (
    days_to_reach,
    minimum_detectable_effect,
    sample_ratio_test,
    sample_size_per_arm,
    two_proportion_power,
)


@pytest.mark.parametrize(
    "sends,weights",
    [
        ([1000, 1000], [1, 1]),
        ([1000, 1100], [1, 1]),
        ([5000, 2400, 2600], [2, 1, 1]),
        ([10_000, 10_400, 9_700, 10_050], [0.25, 0.25, 0.25, 0.25]),
        ([3, 9], [1, 1]),
        ([0, 50], [1, 1]),
    ],
)
def test_srm_matches_scipy_chisquare(sends, weights):
    res = sample_ratio_test([str(i) for i in range(len(sends))], sends, weights)
    w = np.array(weights, float)
    ref = stats.chisquare(sends, f_exp=np.array(sends).sum() * w / w.sum())
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-9, abs=1e-9)
    assert res.p_value == pytest.approx(ref.pvalue, abs=1e-9)
    assert res.mismatch == (ref.pvalue < 0.001)


def test_srm_flags_and_undefined():
    assert sample_ratio_test(["a", "b"], [10_000, 10_500], [1, 1]).mismatch
    assert not sample_ratio_test(["a", "b"], [10_000, 10_100], [1, 1]).mismatch
    res = sample_ratio_test(["a", "b"], [0, 0], [1, 1])
    assert res.p_value is None and not res.mismatch
    assert res.to_dict()["observed_share"] == [None, None]
    with pytest.raises(ValueError):
        sample_ratio_test(["a", "b"], [1, 1], [1, 0])


@pytest.mark.parametrize("baseline", [0.02, 0.2, 0.5, 0.85])
@pytest.mark.parametrize("mde_rel", [0.05, 0.1, 0.15])
@pytest.mark.parametrize("comparisons", [1, 3])
def test_sample_size_gives_target_power_in_statsmodels(baseline, mde_rel, comparisons):
    plan = sample_size_per_arm(baseline, mde_rel, relative=True, alpha=0.05, power=0.8, comparisons=comparisons)
    diff = baseline * mde_rel
    assert plan.mde_absolute == pytest.approx(diff)
    assert plan.alpha_per_comparison == pytest.approx(0.05 / comparisons)
    pw = power_proportions_2indep(diff, baseline, plan.sends_per_arm_exact, alpha=0.05 / comparisons, return_results=False)
    assert pw == pytest.approx(0.8, abs=1e-9)
    assert plan.sends_per_arm == math.ceil(plan.sends_per_arm_exact)
    # Textbook closed form (Fleiss, no far tail, no continuity correction) within 0.1%.
    p1, p2 = baseline, baseline + diff
    pbar = (p1 + p2) / 2
    za, zb = stats.norm.isf(0.05 / comparisons / 2), stats.norm.isf(0.2)
    n_fleiss = (za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / diff**2
    assert plan.sends_per_arm_exact == pytest.approx(n_fleiss, rel=1e-3)
    # Arcsine effect size (Cohen's h) with NormalIndPower: a different approximation, within 3%
    # where both are accurate (moderate rates; at 0.85 + 15% the two disagree by ~15%).
    h = proportion_effectsize(p2, p1)
    n_h = NormalIndPower().solve_power(effect_size=h, alpha=0.05 / comparisons, power=0.8, ratio=1.0)
    if baseline <= 0.5:
        assert plan.sends_per_arm_exact == pytest.approx(n_h, rel=0.03)


def test_absolute_mde_and_errors():
    plan = sample_size_per_arm(0.2, 0.02, alpha=0.05, power=0.9)
    assert plan.target_rate == pytest.approx(0.22) and plan.mde_relative == pytest.approx(0.1)
    assert two_proportion_power(0.2, 0.22, plan.sends_per_arm_exact, plan.sends_per_arm_exact) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        sample_size_per_arm(0.0, 0.1, relative=True)
    with pytest.raises(ValueError):
        sample_size_per_arm(0.95, 0.1)


@pytest.mark.parametrize("n_c,n_v", [(1000, 1000), (1000, 1500), (20_000, 5_000), (30, 40)])
def test_minimum_detectable_effect_inverts_power(n_c, n_v):
    res = minimum_detectable_effect(0.2, n_c, n_v, alpha=0.05, power=0.8, comparisons=2)
    pw = power_proportions_2indep(res.mde_absolute, 0.2, n_v, ratio=n_c / n_v, alpha=0.025, return_results=False)
    assert pw == pytest.approx(0.8, abs=1e-9)
    assert res.mde_relative == pytest.approx(res.mde_absolute / 0.2)


def test_mde_unreachable_and_days():
    res = minimum_detectable_effect(0.5, 2, 2, power=0.99)
    assert res.mde_absolute is None and res.to_dict()["mde_relative"] is None
    assert days_to_reach({"a": 1000, "b": 3000}, {"a": 1, "b": 1}, 400) == pytest.approx(15.0)
    assert days_to_reach({"a": 1000}, {"a": 1}, 0) is None
    assert days_to_reach({"a": 0, "b": 0}, {"a": 1, "b": 1}, 100) == 0.0
