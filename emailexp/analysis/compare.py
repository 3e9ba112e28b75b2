"""Two-proportion comparisons (variant vs control) and multi-arm tests.

Conventions
-----------
* Rates are proportions in 0..1; the *difference* is ``variant - control`` in proportion
  points (0.01 = one percentage point); the *lift* is ``variant / control - 1``.
* All intervals are two-sided at confidence ``1 - alpha``; all p-values are two-sided.
* Difference interval: Newcombe's hybrid score interval (Newcombe 1998, method 10), built
  from the two Wilson intervals. It is well defined for 0 or n successes.
* Lift interval: Katz log-ratio interval, ``exp(log RR +- z * sqrt(1/x1 - 1/n1 + 1/x2 - 1/n2))``.
  When either arm has 0 successes a 0.5 continuity correction is applied, adding 0.5 to
  the success count *and* to the number of trials of both arms (the convention of
  statsmodels' ``method="log-adjusted"``); the interval is then centred on the corrected
  ratio. The point estimate ``lift`` stays the raw ratio - 1 (``None`` when the control
  rate is 0). When both arms have every send opened the Katz variance is 0 and the
  interval collapses to the point: rely on the Newcombe difference interval then.
* Test of equal rates: two-sided pooled-variance z test; Fisher's exact test (two-sided,
  scipy's "as or less likely" p-value) instead when any expected count of the 2x2 table
  (successes and failures per arm, under pooling) is below 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from ._result import ToDictMixin
from .proportions import wilson_interval, z_two_sided

__all__ = [
    "ProportionComparison",
    "HomogeneityTest",
    "newcombe_difference_interval",
    "katz_ratio_interval",
    "two_proportion_test",
    "compare_proportions",
    "chi_square_homogeneity",
    "adjust_p_values",
]

CORRECTIONS = ("holm", "bh", "none")


def newcombe_difference_interval(
    x_variant: int, n_variant: int, x_control: int, n_control: int, *, alpha: float = 0.05
) -> tuple[float, float] | None:
    """Newcombe hybrid score interval for ``p_variant - p_control`` (two-sided, 1 - alpha).

    ``None`` if either arm has no trials.
    """
    w1 = wilson_interval(x_variant, n_variant, alpha=alpha)
    w2 = wilson_interval(x_control, n_control, alpha=alpha)
    if w1 is None or w2 is None:
        return None
    p1, p2 = x_variant / n_variant, x_control / n_control
    diff = p1 - p2
    d_low = math.sqrt((p1 - w1[0]) ** 2 + (w2[1] - p2) ** 2)
    d_upp = math.sqrt((p2 - w2[0]) ** 2 + (w1[1] - p1) ** 2)
    return max(-1.0, diff - d_low), min(1.0, diff + d_upp)


def katz_ratio_interval(
    x_variant: int, n_variant: int, x_control: int, n_control: int, *, alpha: float = 0.05
) -> tuple[float, float, bool] | None:
    """Katz log interval for the rate ratio ``p_variant / p_control`` (two-sided, 1 - alpha).

    Returns ``(lower, upper, continuity_corrected)``, or ``None`` if either arm has no
    trials. See the module docstring for the 0.5 correction used when a count is 0.
    """
    if n_variant == 0 or n_control == 0:
        return None
    corrected = x_variant == 0 or x_control == 0
    add = 0.5 if corrected else 0.0
    x1, n1 = x_variant + add, n_variant + add
    x2, n2 = x_control + add, n_control + add
    log_ratio = math.log(x1 / n1) - math.log(x2 / n2)
    var = max(0.0, 1.0 / x1 - 1.0 / n1 + 1.0 / x2 - 1.0 / n2)
    half = z_two_sided(alpha) * math.sqrt(var)
    return math.exp(log_ratio - half), math.exp(log_ratio + half), corrected


def two_proportion_test(
    x_variant: int, n_variant: int, x_control: int, n_control: int
) -> tuple[float | None, float | None, str]:
    """Two-sided test of ``p_variant == p_control``.

    Returns ``(p_value, z_statistic, method)`` with method ``"pooled_z"`` or
    ``"fisher_exact"`` (used when any expected cell count < 5; ``z`` is then ``None``).
    ``(None, None, "undefined")`` if an arm has no trials.
    """
    if n_variant == 0 or n_control == 0:
        return None, None, "undefined"
    n = n_variant + n_control
    x = x_variant + x_control
    expected = [
        n_variant * x / n,
        n_variant * (n - x) / n,
        n_control * x / n,
        n_control * (n - x) / n,
    ]
    if min(expected) < 5.0:
        table = [[x_variant, n_variant - x_variant], [x_control, n_control - x_control]]
        p = float(stats.fisher_exact(table, alternative="two-sided").pvalue)
        return min(1.0, p), None, "fisher_exact"
    pooled = x / n
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_variant + 1.0 / n_control))
    z = (x_variant / n_variant - x_control / n_control) / se
    return float(2.0 * stats.norm.sf(abs(z))), z, "pooled_z"


@dataclass(frozen=True)
class ProportionComparison(ToDictMixin):
    """One variant vs the control on one binary metric (rates per send, 0..1).

    ``diff`` = variant rate - control rate (proportion points) with a Newcombe interval;
    ``lift`` = variant rate / control rate - 1 with a Katz interval; ``p_value`` is
    two-sided and unadjusted, ``p_value_adjusted`` is adjusted across all comparisons
    against the control with ``correction`` (filled in by the caller that knows the family;
    equal to ``p_value`` for a single comparison). ``significant`` uses the adjusted value.
    """

    metric: str
    variant_key: str
    control_key: str
    variant_successes: int
    variant_trials: int
    control_successes: int
    control_trials: int
    variant_rate: float | None
    control_rate: float | None
    diff: float | None
    diff_ci_lower: float | None
    diff_ci_upper: float | None
    lift: float | None
    lift_ci_lower: float | None
    lift_ci_upper: float | None
    lift_continuity_corrected: bool
    p_value: float | None
    z_statistic: float | None
    test: str
    p_value_adjusted: float | None
    correction: str
    significant: bool
    alpha: float
    diff_ci_method: str = "newcombe_hybrid_score"
    lift_ci_method: str = "katz_log"


def compare_proportions(
    x_variant: int,
    n_variant: int,
    x_control: int,
    n_control: int,
    *,
    alpha: float = 0.05,
    metric: str = "open_rate",
    variant_key: str = "variant",
    control_key: str = "control",
) -> ProportionComparison:
    """Compare one variant with the control (single comparison: no multiplicity adjustment)."""
    diff_ci = newcombe_difference_interval(x_variant, n_variant, x_control, n_control, alpha=alpha)
    ratio_ci = katz_ratio_interval(x_variant, n_variant, x_control, n_control, alpha=alpha)
    p, z, test = two_proportion_test(x_variant, n_variant, x_control, n_control)
    rv = x_variant / n_variant if n_variant else None
    rc = x_control / n_control if n_control else None
    diff = rv - rc if rv is not None and rc is not None else None
    lift = rv / rc - 1.0 if rv is not None and rc else None
    return ProportionComparison(
        metric=metric,
        variant_key=variant_key,
        control_key=control_key,
        variant_successes=x_variant,
        variant_trials=n_variant,
        control_successes=x_control,
        control_trials=n_control,
        variant_rate=rv,
        control_rate=rc,
        diff=diff,
        diff_ci_lower=diff_ci[0] if diff_ci else None,
        diff_ci_upper=diff_ci[1] if diff_ci else None,
        lift=lift,
        lift_ci_lower=ratio_ci[0] - 1.0 if ratio_ci else None,
        lift_ci_upper=ratio_ci[1] - 1.0 if ratio_ci else None,
        lift_continuity_corrected=bool(ratio_ci[2]) if ratio_ci else False,
        p_value=p,
        z_statistic=z,
        test=test,
        p_value_adjusted=p,
        correction="none",
        significant=p is not None and p < alpha,
        alpha=alpha,
    )


def adjust_p_values(p_values: Sequence[float | None], *, correction: str = "holm") -> list[float | None]:
    """Family-wise (Holm step-down) or false-discovery-rate (Benjamini-Hochberg step-up)
    adjusted p-values, or unadjusted with ``correction="none"``.

    ``None`` entries (undefined comparisons) stay ``None`` and do not count in the family.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    idx = [i for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    if not idx:
        return out
    p = np.array([float(p_values[i]) for i in idx])
    m = len(p)
    if correction == "none":
        adj = p
    else:
        order = np.argsort(p, kind="mergesort")
        ps = p[order]
        if correction == "holm":
            adj_sorted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ps))
        else:  # bh
            adj_sorted = np.minimum.accumulate((m / np.arange(1, m + 1) * ps)[::-1])[::-1]
            adj_sorted = np.minimum(1.0, adj_sorted)
        adj = np.empty(m)
        adj[order] = adj_sorted
    for j, i in enumerate(idx):
        out[i] = float(adj[j])
    return out


@dataclass(frozen=True)
class HomogeneityTest(ToDictMixin):
    """Pearson chi-square test that all arms share one rate (k x 2 table, no continuity
    correction, df = k - 1 over arms with at least one trial)."""

    metric: str
    statistic: float | None
    df: int
    p_value: float | None
    arms: tuple[str, ...]
    method: str = "pearson_chi_square_homogeneity"


def chi_square_homogeneity(
    keys: Sequence[str], successes: Sequence[int], trials: Sequence[int], *, metric: str = "open_rate"
) -> HomogeneityTest:
    """Chi-square test of homogeneity of the rates of all arms (two-sided by construction).

    Arms with no trials are left out. If every kept arm has 0 successes (or all trials
    succeeded) the rates are trivially equal: statistic 0, p-value 1.
    """
    kept = [(k, int(x), int(n)) for k, x, n in zip(keys, successes, trials) if n > 0]
    if len(kept) < 2:
        return HomogeneityTest(metric, None, 0, None, tuple(k for k, _, _ in kept))
    x = np.array([r[1] for r in kept], dtype=float)
    n = np.array([r[2] for r in kept], dtype=float)
    total_x, total_n = x.sum(), n.sum()
    df = len(kept) - 1
    if total_x == 0 or total_x == total_n:
        return HomogeneityTest(metric, 0.0, df, 1.0, tuple(r[0] for r in kept))
    obs = np.column_stack([x, n - x])
    exp = np.column_stack([n * total_x / total_n, n * (total_n - total_x) / total_n])
    stat = float(((obs - exp) ** 2 / exp).sum())
    return HomogeneityTest(metric, stat, df, float(stats.chi2.sf(stat, df)), tuple(r[0] for r in kept))
