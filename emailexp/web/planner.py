"""The designer's sample-size planner: parse the inputs, ask the analysis engine, add the duration.

Units: `baseline`, `mde`, `alpha` and `power` are proportions (0.25 = 25 %); `mde` is relative
(0.10 = the variant's rate is 10 % above the baseline). With `variants` arms (control included)
each non-control arm is compared with the control at alpha / (variants - 1) (Bonferroni), the
same convention as `emailexp.analysis.sample_size_per_arm(comparisons=...)`. The duration
assumes equal allocation and the average daily sends of the last 28 days (of the segment if
one is given, since segment-targeted experiments only reach that segment).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy.orm import Session

from emailexp.analysis import days_to_reach, sample_size_per_arm
from emailexp.errors import ValidationError
from emailexp.ingestion.experiments import validate_segment_key
from emailexp.reports.history import baseline_open_rate, sends_per_day

DEFAULT_MDE = 0.10
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8


@dataclass(frozen=True)
class Plan:
    baseline_rate: float
    baseline_from_history: bool
    history_rate: float | None
    history_sends: int
    mde_relative: float
    target_rate: float
    alpha: float
    power: float
    variants: int
    sends_per_variant: int
    total_sends: int
    sends_per_day: float
    days: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def _number(raw, field: str, low: float, high: float, *, default=None, inclusive_high=False) -> float | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValidationError("enter a number", field=field) from None
    if not math.isfinite(value) or value <= low or (value > high if inclusive_high else value >= high):
        raise ValidationError(f"enter a value above {low:g} and {'at most' if inclusive_high else 'below'} {high:g}",
                              field=field)
    return value


def plan_experiment(session: Session, *, baseline=None, mde=None, alpha=None, power=None, variants=None,
                    segment: str | None = None, now: datetime | None = None) -> Plan:
    """Sends per variant and days needed. A missing baseline comes from the segment's last 90 days."""
    segment = (segment or "").strip() or None
    if segment:
        validate_segment_key(segment, "segment")
    history_rate, history_sends = baseline_open_rate(session, segment, 90, now=now)
    b = _number(baseline, "baseline", 0, 1)
    from_history = b is None
    if b is None:
        if history_rate is None or not 0 < history_rate < 1:
            raise ValidationError(_("There is no send history to take a baseline from. Enter the baseline open rate."),
                                  field="baseline")
        b = history_rate
    m = _number(mde, "mde", 0, 10, default=DEFAULT_MDE, inclusive_high=True)
    a = _number(alpha, "alpha", 0, 0.5, default=DEFAULT_ALPHA)
    p = _number(power, "power", 0.5, 1, default=DEFAULT_POWER)
    try:
        k = int(variants) if variants not in (None, "") else 2
    except (TypeError, ValueError):
        raise ValidationError("enter the number of variants (2 to 8)", field="variants") from None
    if not 2 <= k <= 8:
        raise ValidationError("an experiment has 2 to 8 variants", field="variants")
    if b * (1 + m) >= 1:
        raise ValidationError("baseline x (1 + effect) must stay below 100 %; choose a smaller effect", field="mde")
    size = sample_size_per_arm(b, m, relative=True, alpha=a, power=p, comparisons=k - 1)
    per_day = sends_per_day(session, segment, 28, now=now)
    arms = {str(i): float(size.sends_per_arm) for i in range(k)}
    days = days_to_reach(arms, {key: 1.0 for key in arms}, per_day)
    return Plan(baseline_rate=b, baseline_from_history=from_history, history_rate=history_rate,
                history_sends=history_sends, mde_relative=m, target_rate=size.target_rate, alpha=a, power=p,
                variants=k, sends_per_variant=size.sends_per_arm, total_sends=size.sends_per_arm * k,
                sends_per_day=per_day, days=days)
