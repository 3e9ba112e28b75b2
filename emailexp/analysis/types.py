"""Input types for the analysis engine: aggregated counts, never event rows.

All counts are per *send* (one e-mail delivered to one recipient). ``opens`` is the number
of sends with at least one (human) open, so the open rate ``opens / sends`` is a proportion
in 0..1 and every send is one Bernoulli trial.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

__all__ = ["ArmCounts", "DailyCounts"]


def _check_count(name: str, value: int, key: str) -> None:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} of arm {key!r} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True)
class ArmCounts:
    """Totals for one arm (variant) of an experiment.

    ``meetings`` / ``deals`` count *sends* with at least one attributed meeting / deal, so
    their rates are per send (not per open). ``deal_amount`` is the sum of attributed deal
    amounts over all sends of the arm; ``deal_amount_sq`` (optional) is the sum over sends
    of the squared per-send amount, which is needed for an interval on the amount per send.
    ``planned_weight`` is the planned allocation weight (any positive scale).
    """

    key: str
    sends: int
    opens: int
    meetings: int = 0
    deals: int = 0
    deal_amount: float = 0.0
    planned_weight: float = 1.0
    is_control: bool = False
    deal_amount_sq: float | None = None

    def __post_init__(self) -> None:
        for name in ("sends", "opens", "meetings", "deals"):
            _check_count(name, getattr(self, name), self.key)
        for name in ("opens", "meetings", "deals"):
            if getattr(self, name) > self.sends:
                raise ValueError(
                    f"{name} of arm {self.key!r} ({getattr(self, name)}) exceeds sends ({self.sends})"
                )
        if not math.isfinite(self.planned_weight) or self.planned_weight <= 0:
            raise ValueError(f"planned_weight of arm {self.key!r} must be a positive number")
        if not math.isfinite(self.deal_amount):
            raise ValueError(f"deal_amount of arm {self.key!r} must be finite")
        if self.deal_amount_sq is not None and (
            not math.isfinite(self.deal_amount_sq) or self.deal_amount_sq < 0
        ):
            raise ValueError(f"deal_amount_sq of arm {self.key!r} must be finite and >= 0")


@dataclass(frozen=True)
class DailyCounts:
    """Per-day increments (not cumulative totals) of sends and opened sends for one arm."""

    day: datetime.date
    key: str
    sends: int
    opens: int

    def __post_init__(self) -> None:
        _check_count("sends", self.sends, self.key)
        _check_count("opens", self.opens, self.key)
        if self.opens > self.sends:
            raise ValueError(
                f"opens of arm {self.key!r} on {self.day} ({self.opens}) exceeds sends ({self.sends})"
            )
