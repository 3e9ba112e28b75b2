"""Sample size, minimum detectable effect and duration for a two-proportion z test.

Test planned for: two-sided two-sample z test of ``p_variant == p_control`` at level
``alpha / comparisons`` (Bonferroni over ``comparisons`` variants vs one control). Standard
deviation under the null uses the pooled rate ``(n_v p_v + n_c p_c) / (n_v + n_c)``; under
the alternative the unpooled ``sqrt(p_v q_v / n_v + p_c q_c / n_c)``. Power counts both
rejection tails (same convention as ``statsmodels.stats.proportion.power_proportions_2indep``).
No continuity correction. Rates are proportions 0..1; an absolute effect is in proportion
points, a relative effect is ``target / baseline - 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from scipy import optimize, stats

from ._result import ToDictMixin

__all__ = [
    "SampleSizePlan",
    "MinimumDetectableEffect",
    "two_proportion_power",
    "sample_size_per_arm",
    "minimum_detectable_effect",
    "days_to_reach",
]

METHOD = "two-sided two-proportion z test; pooled SD under H0, unpooled under H1; no continuity correction"


def two_proportion_power(
    baseline: float, target: float, n_control: float, n_variant: float, *, alpha: float = 0.05
) -> float:
    """Power (0..1) of the two-sided z test at level ``alpha`` for true rates ``baseline``
    (control) and ``target`` (variant) with the given sends per arm."""
    if n_control <= 0 or n_variant <= 0:
        return 0.0
    d = target - baseline
    pooled = (n_control * baseline + n_variant * target) / (n_control + n_variant)
    sd0 = math.sqrt(pooled * (1 - pooled) * (1 / n_control + 1 / n_variant))
    sd1 = math.sqrt(baseline * (1 - baseline) / n_control + target * (1 - target) / n_variant)
    z = stats.norm.isf(alpha / 2)
    if sd1 == 0:
        return 1.0 if d != 0 else 0.0
    return float(stats.norm.sf((z * sd0 - d) / sd1) + stats.norm.cdf((-z * sd0 - d) / sd1))


@dataclass(frozen=True)
class SampleSizePlan(ToDictMixin):
    """Sends needed per arm (equal allocation) to detect ``target_rate`` vs ``baseline_rate``."""

    baseline_rate: float
    target_rate: float
    mde_absolute: float
    mde_relative: float | None
    alpha: float
    comparisons: int
    alpha_per_comparison: float
    power: float
    sends_per_arm_exact: float
    sends_per_arm: int
    method: str = METHOD


def _target(baseline: float, mde: float, relative: bool) -> float:
    if not 0.0 < baseline < 1.0:
        raise ValueError(f"baseline rate must lie strictly between 0 and 1, got {baseline!r}")
    target = baseline * (1.0 + mde) if relative else baseline + mde
    if mde == 0 or not 0.0 < target < 1.0:
        raise ValueError(f"the effect must be non-zero and give a target rate in (0, 1); got {target!r}")
    return target


def sample_size_per_arm(
    baseline: float,
    mde: float,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    comparisons: int = 1,
) -> SampleSizePlan:
    """Sends per arm (control and each variant, equal allocation) needed to reach ``power``.

    ``mde`` is absolute (proportion points) unless ``relative=True`` (e.g. 0.10 = +10%).
    """
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power!r}")
    if comparisons < 1:
        raise ValueError("comparisons must be >= 1")
    target = _target(baseline, mde, relative)
    a = alpha / comparisons
    f = lambda n: two_proportion_power(baseline, target, n, n, alpha=a) - power  # noqa: E731
    hi = 2.0
    while f(hi) < 0:
        hi *= 2.0
    n = optimize.brentq(f, 1e-9, hi, xtol=1e-10, rtol=1e-14)
    return SampleSizePlan(
        baseline_rate=baseline,
        target_rate=target,
        mde_absolute=target - baseline,
        mde_relative=target / baseline - 1.0,
        alpha=alpha,
        comparisons=comparisons,
        alpha_per_comparison=a,
        power=power,
        sends_per_arm_exact=n,
        sends_per_arm=int(math.ceil(n - 1e-9)),
    )


@dataclass(frozen=True)
class MinimumDetectableEffect(ToDictMixin):
    """Smallest increase over ``baseline_rate`` detectable with ``power`` at the current sends.

    ``None`` fields mean not even a rate of 1 would reach the power with these sends.
    """

    baseline_rate: float
    n_control: int
    n_variant: int
    alpha: float
    comparisons: int
    alpha_per_comparison: float
    power: float
    mde_absolute: float | None
    mde_relative: float | None
    method: str = METHOD


def minimum_detectable_effect(
    baseline: float,
    n_control: int,
    n_variant: int,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    comparisons: int = 1,
) -> MinimumDetectableEffect:
    """Minimum detectable (upward) absolute and relative effect with the current sends."""
    if not 0.0 < baseline < 1.0:
        raise ValueError(f"baseline rate must lie strictly between 0 and 1, got {baseline!r}")
    a = alpha / comparisons
    f = lambda d: two_proportion_power(baseline, baseline + d, n_control, n_variant, alpha=a) - power  # noqa: E731
    top = 1.0 - baseline
    mde: float | None = None
    if n_control > 0 and n_variant > 0 and f(top * (1 - 1e-12)) >= 0:
        mde = optimize.brentq(f, 1e-15, top * (1 - 1e-12), xtol=1e-14, rtol=1e-12)
    return MinimumDetectableEffect(
        baseline_rate=baseline,
        n_control=int(n_control),
        n_variant=int(n_variant),
        alpha=alpha,
        comparisons=comparisons,
        alpha_per_comparison=a,
        power=power,
        mde_absolute=mde,
        mde_relative=mde / baseline if mde is not None else None,
    )


def days_to_reach(
    additional_sends: Mapping[str, float], weights: Mapping[str, float], sends_per_day: float
) -> float | None:
    """Days until every arm gets its additional sends, when ``sends_per_day`` sends per day
    (all arms together) are split by the planned ``weights``. ``None`` if the rate is not positive."""
    if not sends_per_day or sends_per_day <= 0:
        return None
    total_w = sum(weights.values())
    days = 0.0
    for key, extra in additional_sends.items():
        if extra > 0:
            days = max(days, extra / (sends_per_day * weights[key] / total_w))
    return days
