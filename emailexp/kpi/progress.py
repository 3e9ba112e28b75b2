"""Progress against targets: actual, target, achievement, pace, forecast at period end and status.

Elapsed share of the period, as of the end of `as_of` (the as-of day counts as elapsed):
- linear (default): calendar days elapsed / days in the period;
- business_days: Monday-Friday days elapsed / Monday-Friday days in the period (no holiday calendar).
Counts and sums accumulate over the period: expected_to_date = target x elapsed, pace = actual /
expected_to_date, forecast = actual / elapsed (straight-line extrapolation). Ratios do not accumulate:
expected_to_date = target, pace = actual / target, forecast = actual.
Status compares the forecast with the target, direction-aware: score = forecast / target when higher is
better, target / forecast when lower is better; score >= 1.0 -> on_track, >= 0.9 (AT_RISK_FLOOR) ->
at_risk, else off_track. No forecast (nothing elapsed yet, or a ratio with no data) -> status None.
Achievement = actual / target (higher is better) or target / actual (lower is better), a fraction.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.errors import ValidationError
from emailexp.kpi.periods import PERIOD_TYPES, period_end, period_start
from emailexp.kpi.store import ScopeNames, parse_scope_filter
from emailexp.models.kpi import KpiDefinition, KpiTarget, KpiValue

AT_RISK_FLOOR = 0.9


def _business_days(lo: date, hi: date) -> int:
    if hi < lo:
        return 0
    days = (hi - lo).days + 1
    full, rest = divmod(days, 7)
    n = full * 5
    for i in range(rest):
        if (lo + timedelta(days=full * 7 + i)).weekday() < 5:
            n += 1
    return n


def elapsed_fraction(start: date, end: date, as_of: date, *, business_days: bool = False) -> float:
    """Share of [start, end] elapsed by the end of `as_of`, in [0, 1]."""
    if as_of < start:
        return 0.0
    if as_of >= end:
        return 1.0
    if business_days:
        total = _business_days(start, end)
        return _business_days(start, as_of) / total if total else 1.0
    return ((as_of - start).days + 1) / ((end - start).days + 1)


@dataclass(frozen=True)
class ProgressMath:
    achievement: float | None
    expected_to_date: float | None
    pace: float | None
    forecast: float | None
    status: str | None


def progress_math(actual: float | None, target: float, *, formula: str, higher_is_better: bool,
                  elapsed: float) -> ProgressMath:
    if actual is None:
        return ProgressMath(None, target if formula == "ratio" else target * elapsed, None, None, None)
    if higher_is_better:
        achievement = actual / target if target else None
    else:
        achievement = target / actual if actual else None
    if formula == "ratio":
        expected, forecast = target, actual
    else:
        expected = target * elapsed
        forecast = actual / elapsed if elapsed > 0 else None
    pace = actual / expected if expected else None
    if forecast is None:
        return ProgressMath(achievement, expected, pace, None, None)
    if higher_is_better:
        score = forecast / target if target else float("inf")
    else:
        score = target / forecast if forecast else float("inf")
    status = "on_track" if score >= 1.0 else "at_risk" if score >= AT_RISK_FLOOR else "off_track"
    return ProgressMath(achievement, expected, pace, forecast, status)


@dataclass(frozen=True)
class Progress:
    kpi: str
    name_ja: str
    name_en: str
    unit: str
    formula: str
    higher_is_better: bool
    scope: str
    scope_id: str | None
    period: str
    period_start: str
    period_end: str
    as_of: str
    elapsed: float
    actual: float | None
    target: float
    achievement: float | None
    expected_to_date: float | None
    pace: float | None
    forecast: float | None
    status: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def kpi_progress(session: Session, *, period: str, as_of: date, scope: str | None = None,
                 kpi: str | None = None, business_days: bool = False) -> list[Progress]:
    """Progress of every target set for the period (of type `period`) that contains `as_of`."""
    if period not in PERIOD_TYPES:
        raise ValidationError("period must be one of day, iso_week, month, quarter", field="period")
    start = period_start(as_of, period)
    end = period_end(start, period)
    names = ScopeNames(session)
    t, v, d = KpiTarget.__table__, KpiValue.__table__, KpiDefinition.__table__
    q = (sa.select(d.c.key, d.c.name_ja, d.c.name_en, d.c.unit, d.c.formula, d.c.higher_is_better,
                   t.c.scope_type, t.c.scope_id, t.c.target, v.c.value)
         .select_from(t.join(d, d.c.id == t.c.kpi_id).outerjoin(v, sa.and_(
             v.c.kpi_id == t.c.kpi_id, v.c.scope_type == t.c.scope_type, v.c.scope_id == t.c.scope_id,
             v.c.period_type == t.c.period_type, v.c.period_start == t.c.period_start)))
         .where(t.c.period_type == period, t.c.period_start == start))
    stype, sid = parse_scope_filter(session, scope, names)
    if stype:
        q = q.where(t.c.scope_type == stype)
    if sid is not None:
        q = q.where(t.c.scope_id == sid)
    if kpi:
        q = q.where(d.c.key.in_(kpi.split(",")))
    q = q.order_by(t.c.scope_type, t.c.scope_id, d.c.id)
    elapsed = elapsed_fraction(start, end, as_of, business_days=business_days)
    out = []
    for key, name_ja, name_en, unit, formula, higher, st, sid_, target, value in session.execute(q):
        actual = value if value is not None or formula == "ratio" else 0.0
        m = progress_math(actual, target, formula=formula, higher_is_better=higher, elapsed=elapsed)
        out.append(Progress(kpi=key, name_ja=name_ja, name_en=name_en, unit=unit, formula=formula,
                            higher_is_better=higher, scope=st, scope_id=names.name(st, sid_), period=period,
                            period_start=start.isoformat(), period_end=end.isoformat(), as_of=as_of.isoformat(),
                            elapsed=elapsed, actual=actual, target=target, achievement=m.achievement,
                            expected_to_date=m.expected_to_date, pace=m.pace, forecast=m.forecast,
                            status=m.status))
    return out
