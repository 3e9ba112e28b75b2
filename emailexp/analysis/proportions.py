"""Single proportions: a rate with a Wilson score interval.

Rates are proportions in 0..1 (e.g. opened sends / sends). Intervals are two-sided at
confidence level ``1 - alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from ._result import ToDictMixin

__all__ = ["ProportionEstimate", "wilson_interval", "estimate_proportion", "z_two_sided"]


def z_two_sided(alpha: float) -> float:
    """Standard-normal critical value for a two-sided test at level ``alpha``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    return float(stats.norm.isf(alpha / 2.0))


def wilson_interval(successes: int, trials: int, *, alpha: float = 0.05) -> tuple[float, float] | None:
    """Two-sided Wilson score interval for a binomial proportion (no continuity correction).

    Returns ``None`` when ``trials == 0`` (the rate is undefined). The bounds are clipped
    to [0, 1]; at 0 or ``trials`` successes the interval reaches 0 or 1 exactly.
    """
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if trials == 0:
        return None
    z = z_two_sided(alpha)
    n = float(trials)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, center - half)
    upp = 1.0 if successes == trials else min(1.0, center + half)
    return low, upp


@dataclass(frozen=True)
class ProportionEstimate(ToDictMixin):
    """A rate (proportion 0..1) with a two-sided Wilson interval; ``None`` when trials == 0."""

    successes: int
    trials: int
    rate: float | None
    ci_lower: float | None
    ci_upper: float | None
    alpha: float
    method: str = "wilson_score"


def estimate_proportion(successes: int, trials: int, *, alpha: float = 0.05) -> ProportionEstimate:
    """Rate ``successes / trials`` with a two-sided Wilson interval at level ``1 - alpha``."""
    ci = wilson_interval(successes, trials, alpha=alpha)
    if ci is None:
        return ProportionEstimate(successes, trials, None, None, None, alpha)
    return ProportionEstimate(successes, trials, successes / trials, ci[0], ci[1], alpha)
