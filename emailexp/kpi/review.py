"""Review flags: when a KPI is met but the goal behind it is not.

1. `leading_on_track_lagging_off`: for a scope and period with targets on both, the leading KPI is
   on_track while its lagging KPI is off_track (LEADING_LAGGING pairs, e.g. meetings met, deals missing).
   Checked for the period containing `as_of` (status from the forecast) and for the previous period of the
   same type (complete: status from the final actual), because early in a period the forecast rests on a
   few days and the review a manager does is of the period just closed. A send-cohort rate (meeting_rate)
   as the lagging KPI is only judged once the period is mature (period end + attribution window < as_of):
   before that its meetings have not arrived yet and it reads low in every period.
2. `open_rate_up_meeting_rate_down`: over the last `weeks` (8) complete ISO weeks whose meetings have had
   time to arrive (week end + attribution window < as_of, because the meeting rate counts by send week and
   recent weeks are immature), the unique human open rate trends up AND the meeting rate trends down, each
   by a Cochran-Armitage test for trend in proportions (weekly successes / sends, scores 0..weeks-1,
   two-sided p < alpha = 0.05 each), with at least `min_sends` (500) sends in the window. Requiring two
   independent significant trends in opposite directions keeps the false-alarm rate per scope at about
   (alpha/2)^2 = 0.06 % on noise.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

import numpy as np
import sqlalchemy as sa
from scipy import stats
from sqlalchemy.orm import Session

from emailexp.kpi.periods import PERIOD_TYPES, period_end, period_start
from emailexp.kpi.progress import kpi_progress
from emailexp.kpi.store import ScopeNames
from emailexp.models.kpi import KpiDefinition, KpiValue

LEADING_LAGGING = (
    ("meetings", "deals"),
    ("emails_sent", "meetings"),
    ("connected_calls", "meetings"),
    ("unique_human_open_rate", "meeting_rate"),
)


@dataclass(frozen=True)
class TrendTest:
    """Cochran-Armitage test for a linear trend in proportions. z > 0: rising. Two-sided p-value."""

    z: float
    p_value: float
    slope_per_period: float   # least-squares slope of the weekly rate, weighted by trials (for display)
    method: str = "Cochran-Armitage trend test (two-sided)"


def trend_test(successes, trials, scores=None) -> TrendTest:
    x = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    s = np.arange(len(x), dtype=float) if scores is None else np.asarray(scores, dtype=float)
    keep = n > 0
    x, n, s = x[keep], n[keep], s[keep]
    big_n = n.sum()
    if len(x) < 2 or big_n == 0:
        return TrendTest(0.0, 1.0, 0.0)
    p = x.sum() / big_n
    t = np.sum(s * (x - n * p))
    var = p * (1 - p) * (np.sum(n * s**2) - np.sum(n * s) ** 2 / big_n)
    if var <= 0:
        return TrendTest(0.0, 1.0, 0.0)
    z = float(t / math.sqrt(var))
    s_bar = np.sum(n * s) / big_n
    rates = x / n
    slope = float(np.sum(n * (s - s_bar) * rates) / np.sum(n * (s - s_bar) ** 2))
    return TrendTest(z, float(2 * stats.norm.sf(abs(z))), slope)


@dataclass(frozen=True)
class ReviewFlag:
    kind: str
    scope: str
    scope_id: str | None
    period: str
    period_start: str
    message_ja: str
    message_en: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


COHORT_KPIS = ("meeting_rate",)   # counted in the period of the send: immature until the window has passed


def review_flags(session: Session, *, as_of: date, attribution_window_days: int = 14, weeks: int = 8,
                 alpha: float = 0.05, min_sends: int = 500) -> list[ReviewFlag]:
    return (leading_lagging_flags(session, as_of=as_of, attribution_window_days=attribution_window_days)
            + open_up_meeting_down_flags(session, as_of=as_of, attribution_window_days=attribution_window_days,
                                         weeks=weeks, alpha=alpha, min_sends=min_sends))


def leading_lagging_flags(session: Session, *, as_of: date, attribution_window_days: int = 14) -> list[ReviewFlag]:
    flags = []
    for period in PERIOD_TYPES:
        current = period_start(as_of, period)
        previous_end = current - timedelta(days=1)
        for day in (as_of, previous_end):
            end = period_end(period_start(day, period), period)
            mature = end + timedelta(days=attribution_window_days) < as_of
            by_scope: dict[tuple, dict] = defaultdict(dict)
            for p in kpi_progress(session, period=period, as_of=min(as_of, end)):
                by_scope[(p.scope, p.scope_id)][p.kpi] = p
            for (scope, scope_id), kpis in by_scope.items():
                for lead, lag in LEADING_LAGGING:
                    a, b = kpis.get(lead), kpis.get(lag)
                    if lag in COHORT_KPIS and not mature:
                        continue
                    if a and b and a.status == "on_track" and b.status == "off_track":
                        flags.append(ReviewFlag(
                            kind="leading_on_track_lagging_off", scope=scope, scope_id=scope_id, period=period,
                            period_start=a.period_start,
                            message_ja=f"{a.name_ja}は目標ペースですが、{b.name_ja}が未達の見込みです。KPI（{a.name_ja}）の設定を見直してください。",
                            message_en=f"{a.name_en} is on track but {b.name_en} is off track: revisit the {a.name_en} KPI.",
                            details={"leading": a.to_dict(), "lagging": b.to_dict()}))
    return flags


def open_up_meeting_down_flags(session: Session, *, as_of: date, attribution_window_days: int = 14,
                               weeks: int = 8, alpha: float = 0.05, min_sends: int = 500) -> list[ReviewFlag]:
    # the latest week whose end + window is before as_of
    last_mature = period_start(as_of - timedelta(days=attribution_window_days + 7), "iso_week")
    starts = [last_mature - timedelta(days=7 * i) for i in range(weeks - 1, -1, -1)]
    index = {s: i for i, s in enumerate(starts)}
    ids = dict(session.execute(sa.select(KpiDefinition.key, KpiDefinition.id).where(
        KpiDefinition.key.in_(["unique_human_open_rate", "meeting_rate"]))).all())
    if len(ids) < 2:
        return []
    v = KpiValue.__table__
    q = (sa.select(v.c.kpi_id, v.c.scope_type, v.c.scope_id, v.c.period_start, v.c.numerator, v.c.denominator)
         .where(v.c.kpi_id.in_(list(ids.values())), v.c.period_type == "iso_week",
                v.c.period_start >= starts[0], v.c.period_start <= starts[-1]))
    series: dict[tuple, dict[int, np.ndarray]] = defaultdict(
        lambda: {kid: np.zeros((2, weeks)) for kid in ids.values()})
    for kid, st, sid, ps, num, den in session.execute(q):
        arr = series[(st, sid)][kid]
        arr[0, index[ps]] = num
        arr[1, index[ps]] = den or 0
    names = ScopeNames(session)
    flags = []
    for (st, sid), data in sorted(series.items()):
        opens, meets = data[ids["unique_human_open_rate"]], data[ids["meeting_rate"]]
        if opens[1].sum() < min_sends:
            continue
        to, tm = trend_test(opens[0], opens[1]), trend_test(meets[0], meets[1])
        if to.z > 0 and to.p_value < alpha and tm.z < 0 and tm.p_value < alpha:
            flags.append(ReviewFlag(
                kind="open_rate_up_meeting_rate_down", scope=st, scope_id=names.name(st, sid), period="iso_week",
                period_start=starts[0].isoformat(),
                message_ja=f"直近{weeks}週でメール開封率は上昇していますが、商談化率は低下しています。件名が開封だけを狙っていないか見直してください。",
                message_en=f"Over the last {weeks} weeks the open rate rose while the meeting rate fell: "
                           "check that subjects do not chase opens at the expense of meetings.",
                details={"weeks": [s.isoformat() for s in starts],
                         "open_rate": [x / n if n else None for x, n in zip(*opens.tolist())],
                         "meeting_rate": [x / n if n else None for x, n in zip(*meets.tolist())],
                         "open_trend": asdict(to), "meeting_trend": asdict(tm)}))
    return flags
