"""Sample ratio mismatch (SRM): are sends split across arms as planned?

Pearson chi-square goodness-of-fit of the observed sends per arm against the expected
counts ``total_sends * w_i / sum(w)`` (planned allocation weights), df = k - 1. A mismatch
is flagged at ``p < threshold`` (default 0.001, deliberately strict because the test is run
on every look and large experiments detect tiny imbalances). A flagged SRM means the
assignment or the logging is broken, so no verdict is drawn from the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from ._result import ToDictMixin

__all__ = ["SampleRatioTest", "sample_ratio_test"]


@dataclass(frozen=True)
class SampleRatioTest(ToDictMixin):
    """Chi-square goodness-of-fit of sends per arm against planned weights."""

    keys: tuple[str, ...]
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    planned_share: tuple[float, ...]
    observed_share: tuple[float | None, ...]
    statistic: float | None
    df: int
    p_value: float | None
    threshold: float
    mismatch: bool
    method: str = "pearson_chi_square_goodness_of_fit"


def sample_ratio_test(
    keys: Sequence[str], sends: Sequence[int], weights: Sequence[float], *, threshold: float = 0.001
) -> SampleRatioTest:
    """Test observed sends per arm against planned allocation weights (any positive scale).

    With no sends at all (or a single arm) the test is undefined: p-value ``None``, not flagged.
    """
    n = np.asarray(sends, dtype=float)
    w = np.asarray(weights, dtype=float)
    if not (len(keys) == len(n) == len(w)):
        raise ValueError("keys, sends and weights must have the same length")
    if np.any(w <= 0) or np.any(~np.isfinite(w)):
        raise ValueError("planned weights must be positive and finite")
    share = w / w.sum() if len(w) else w
    total = n.sum()
    expected = total * share
    obs_share = tuple(float(v / total) if total > 0 else None for v in n)
    if total <= 0 or len(n) < 2:
        return SampleRatioTest(
            tuple(keys), tuple(int(v) for v in n), tuple(float(e) for e in expected),
            tuple(float(s) for s in share), obs_share, None, max(0, len(n) - 1), None, threshold, False,
        )
    stat = float(((n - expected) ** 2 / expected).sum())
    df = len(n) - 1
    p = float(stats.chi2.sf(stat, df))
    return SampleRatioTest(
        tuple(keys), tuple(int(v) for v in n), tuple(float(e) for e in expected),
        tuple(float(s) for s in share), obs_share, stat, df, p, threshold, p < threshold,
    )
