"""Always-valid sequential monitoring of a difference of two proportions.

Method: the mixture sequential probability ratio test (mSPRT) of Johari, Pekelis & Walsh
(2017, "Always valid inference: bringing sequential analysis to A/B testing"), with a
normal mixture ``N(0, tau^2)`` over the difference ``theta = p_variant - p_control``
(proportion points). At each look, with ``theta_hat`` the observed difference and ``V`` its
estimated variance,

    Lambda(theta0) = sqrt(V / (V + tau^2)) * exp(tau^2 (theta_hat - theta0)^2 / (2 V (V + tau^2)))

The always-valid p-value is ``p_t = min(p_{t-1}, 1 / Lambda_t(0))`` and the confidence
sequence is ``{theta0 : Lambda_t(theta0) < 1 / alpha}``, i.e.

    theta_hat +- sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V)))

intersected over the looks so far (an intersection of a time-uniform confidence sequence
is again one; if the running intersection became empty the current look's interval is
reported instead). Type I error is controlled at ``alpha`` however often one looks, in the
large-sample (normal) approximation; with daily (discrete) looks it is conservative.

``V = pc(1 - pc)/nc + pv(1 - pv)/nv`` uses plug-in rates shrunk as ``(x + 0.5)/(n + 1)``
so that an arm with 0 or all opens does not give a zero variance. ``tau`` (the mixing
standard deviation, in proportion points) must be fixed before the data are seen; a
sensible choice is the minimum detectable difference. Several variants against one control
use Bonferroni: each comparison is run at ``alpha / comparisons``.
"""

from __future__ import annotations

import datetime
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._result import ToDictMixin
from .types import DailyCounts

__all__ = [
    "SequentialLook",
    "SequentialTest",
    "msprt_p_values",
    "msprt_confidence_half_width",
    "sequential_difference_test",
    "sequential_sends_needed",
]

METHOD = "mSPRT normal mixture on the difference of two proportions (Johari, Pekelis & Walsh 2017)"


def _variance(xc, nc, xv, nv):
    pc = (xc + 0.5) / (nc + 1.0)
    pv = (xv + 0.5) / (nv + 1.0)
    return pc * (1.0 - pc) / nc + pv * (1.0 - pv) / nv


def msprt_confidence_half_width(variance, tau: float, alpha: float):
    """Half-width of the mSPRT confidence sequence for estimated variance ``variance``."""
    v = np.asarray(variance, dtype=float)
    t2 = tau * tau
    return np.sqrt(v * (v + t2) / t2 * (2.0 * math.log(1.0 / alpha) + np.log((v + t2) / v)))


def msprt_p_values(xc, nc, xv, nv, *, tau: float) -> np.ndarray:
    """Always-valid p-values for ``p_variant == p_control`` along the last axis (the looks).

    Arguments are cumulative counts per look (arrays broadcastable to a common shape, the
    last axis being time). Looks where an arm has no sends give ``1``. The p-value is the
    running minimum of ``min(1, 1 / Lambda_t)`` (JPW 2017), so it never increases.
    """
    if not tau > 0:
        raise ValueError(f"tau (mixing sd) must be positive, got {tau!r}")
    xc, nc, xv, nv = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (xc, nc, xv, nv)))
    ok = (nc > 0) & (nv > 0)
    safe_nc = np.where(ok, nc, 1.0)
    safe_nv = np.where(ok, nv, 1.0)
    v = _variance(xc, safe_nc, xv, safe_nv)
    theta = xv / safe_nv - xc / safe_nc
    t2 = tau * tau
    log_lambda = 0.5 * np.log(v / (v + t2)) + t2 * theta**2 / (2.0 * v * (v + t2))
    p = np.where(ok, np.exp(-np.maximum(log_lambda, 0.0)), 1.0)
    return np.minimum.accumulate(p, axis=-1)


@dataclass(frozen=True)
class SequentialLook(ToDictMixin):
    """State after one daily look (cumulative counts up to and including ``day``)."""

    day: datetime.date
    control_sends: int
    control_opens: int
    variant_sends: int
    variant_opens: int
    diff: float | None
    p_value: float
    cs_lower: float
    cs_upper: float
    crossed: bool


@dataclass(frozen=True)
class SequentialTest(ToDictMixin):
    """Always-valid test of one variant vs the control on the open rate.

    ``p_value`` is always valid (may be compared with ``alpha_per_comparison`` at any
    look); ``cs_lower``/``cs_upper`` is the confidence sequence for the difference
    (variant - control, proportion points) at level ``1 - alpha_per_comparison``.
    """

    variant_key: str
    control_key: str
    alpha: float
    comparisons: int
    alpha_per_comparison: float
    mixing_sd: float
    looks: tuple[SequentialLook, ...]
    p_value: float
    cs_lower: float
    cs_upper: float
    crossed: bool
    crossed_on: datetime.date | None
    method: str = METHOD
    multiplicity: str = "bonferroni"
    assumptions: tuple[str, ...] = (
        "independent Bernoulli sends; rates constant over time",
        "normal approximation to the difference (valid for large cumulative counts)",
        "mixing sd fixed before looking at the data",
    )


def _cumulate(daily: Sequence[DailyCounts], key: str, days: list[datetime.date]) -> tuple[np.ndarray, np.ndarray]:
    sends: dict[datetime.date, int] = defaultdict(int)
    opens: dict[datetime.date, int] = defaultdict(int)
    for d in daily:
        if d.key == key:
            sends[d.day] += d.sends
            opens[d.day] += d.opens
    return (
        np.cumsum([opens[d] for d in days]).astype(float),
        np.cumsum([sends[d] for d in days]).astype(float),
    )


def sequential_difference_test(
    daily: Sequence[DailyCounts],
    *,
    control_key: str,
    variant_key: str,
    mixing_sd: float,
    alpha: float = 0.05,
    comparisons: int = 1,
) -> SequentialTest:
    """mSPRT of ``variant`` vs ``control`` from per-day increments (one look per day).

    ``daily`` may contain other arms (ignored). ``comparisons`` is the number of variants
    compared with the control; each is tested at ``alpha / comparisons`` (Bonferroni).
    Days on which neither arm has a row are not looks.
    """
    if comparisons < 1:
        raise ValueError("comparisons must be >= 1")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    a = alpha / comparisons
    days = sorted({d.day for d in daily if d.key in (control_key, variant_key)})
    xc, nc = _cumulate(daily, control_key, days)
    xv, nv = _cumulate(daily, variant_key, days)
    looks: list[SequentialLook] = []
    crossed_on = None
    lo_run, hi_run = -1.0, 1.0
    lo_cur, hi_cur = -1.0, 1.0
    p_all = msprt_p_values(xc, nc, xv, nv, tau=mixing_sd) if days else np.array([])
    for t, day in enumerate(days):
        if nc[t] > 0 and nv[t] > 0:
            diff = xv[t] / nv[t] - xc[t] / nc[t]
            half = float(msprt_confidence_half_width(_variance(xc[t], nc[t], xv[t], nv[t]), mixing_sd, a))
            lo_cur, hi_cur = max(-1.0, diff - half), min(1.0, diff + half)
            lo_new, hi_new = max(lo_run, lo_cur), min(hi_run, hi_cur)
            if lo_new <= hi_new:
                lo_run, hi_run = lo_new, hi_new
            else:
                lo_run, hi_run = lo_cur, hi_cur
        else:
            diff = None
        crossed = bool(p_all[t] <= a)
        if crossed and crossed_on is None:
            crossed_on = day
        looks.append(
            SequentialLook(
                day=day,
                control_sends=int(nc[t]),
                control_opens=int(xc[t]),
                variant_sends=int(nv[t]),
                variant_opens=int(xv[t]),
                diff=diff,
                p_value=float(p_all[t]),
                cs_lower=lo_run,
                cs_upper=hi_run,
                crossed=crossed_on is not None,
            )
        )
    final_p = float(p_all[-1]) if days else 1.0
    return SequentialTest(
        variant_key=variant_key,
        control_key=control_key,
        alpha=alpha,
        comparisons=comparisons,
        alpha_per_comparison=a,
        mixing_sd=mixing_sd,
        looks=tuple(looks),
        p_value=final_p,
        cs_lower=lo_run,
        cs_upper=hi_run,
        crossed=crossed_on is not None,
        crossed_on=crossed_on,
    )


def sequential_sends_needed(
    diff: float, variance: float, sends_so_far: float, *, tau: float, alpha: float
) -> float | None:
    """Approximate total sends per arm at which the mSPRT would reject if the observed
    difference ``diff`` persisted (variance shrinking as 1/n). ``None`` if ``diff == 0``.
    """
    if diff == 0 or not variance > 0 or sends_so_far <= 0:
        return None
    # Half-width is increasing in the variance; find the variance where it equals |diff|.
    target = abs(diff)
    lo, hi = variance * 1e-12, variance
    if float(msprt_confidence_half_width(hi, tau, alpha)) <= target:
        return float(sends_so_far)
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if float(msprt_confidence_half_width(mid, tau, alpha)) > target:
            hi = mid
        else:
            lo = mid
        if hi / lo < 1 + 1e-9:
            break
    return float(sends_so_far * variance / lo)
