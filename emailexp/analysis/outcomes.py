"""Downstream outcomes per send: deal amount per send.

Meeting and deal *rates* are ordinary proportions per send (see ``proportions`` and
``compare``); this module covers the mean deal amount per send, a continuous outcome.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._result import ToDictMixin
from .proportions import z_two_sided

__all__ = ["AmountPerSend", "amount_per_send"]


@dataclass(frozen=True)
class AmountPerSend(ToDictMixin):
    """Mean deal amount per send (currency units), with a normal-approximation interval.

    The interval needs the per-send spread, so it is only given when the sum of squared
    per-send amounts is known (``ci_* is None`` and ``limitation`` says so otherwise). Deal
    amounts are heavy-tailed and mostly zero: the normal approximation needs many deals.
    """

    total: float
    sends: int
    mean: float | None
    sd: float | None
    ci_lower: float | None
    ci_upper: float | None
    alpha: float
    method: str
    limitation: str | None


def amount_per_send(
    total: float, sends: int, *, sum_of_squares: float | None = None, alpha: float = 0.05
) -> AmountPerSend:
    """Mean amount per send ``total / sends`` and, if ``sum_of_squares`` is given, a two-sided
    ``mean +- z * s / sqrt(n)`` interval with the sample SD ``s`` (n - 1 denominator)."""
    method = "mean_per_send_normal_approximation"
    if sends <= 0:
        return AmountPerSend(total, sends, None, None, None, None, alpha, method, "no sends")
    mean = total / sends
    if sum_of_squares is None:
        return AmountPerSend(
            total, sends, mean, None, None, None, alpha, method,
            "only the sum of amounts is known: no interval without the sum of squares",
        )
    if sends < 2:
        return AmountPerSend(total, sends, mean, None, None, None, alpha, method, "fewer than 2 sends")
    var = max(0.0, (sum_of_squares - sends * mean * mean) / (sends - 1))
    sd = math.sqrt(var)
    half = z_two_sided(alpha) * sd / math.sqrt(sends)
    return AmountPerSend(
        total, sends, mean, sd, mean - half, mean + half, alpha, method,
        "normal approximation; unreliable with few non-zero amounts",
    )
