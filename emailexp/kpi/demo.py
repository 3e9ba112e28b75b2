"""Plausible monthly targets for the demo's teams and owners (call after `refresh_kpis`).

Targets are set the way a sales manager would: volume targets (emails_sent, meetings) from each scope's
own level, rate targets and deals from workspace norms. Deals target = meetings target x the
workspace win rate, so a team whose meetings are on target but whose win rate lags (the demo's 大阪
team) shows "meetings on track, deals off track" and raises the review flag.
"""
from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.kpi.periods import period_end, period_start
from emailexp.kpi.progress import elapsed_fraction
from emailexp.kpi.store import set_targets
from emailexp.models.kpi import WORKSPACE_SCOPE_ID, KpiDefinition, KpiValue

KPIS = ("emails_sent", "meetings", "deals", "unique_human_open_rate", "meeting_rate")


def seed_demo_targets(session: Session, now: datetime, *, timezone: str = "Asia/Tokyo", months: int = 3) -> int:
    """Upsert monthly targets for the current and previous `months - 1` months for every team and owner
    with tracked values; returns how many targets were written. The caller commits.

    Levels come from each scope's daily values over the history (a short demo history has partial and
    immature months, so a mean of monthly totals would set targets far too low):
    - emails_sent: the scope's sends per day x days in the month;
    - meetings: 90 % of the scope's meetings per day x days in the month, counting from 14 days after the
      first send (meetings arrive 1-13 days after their send);
    - deals: the meetings target x the workspace win rate of the last 30 days (deals lag meetings by
      weeks, so older months have too few);
    - unique_human_open_rate, meeting_rate: the workspace rates over the whole history.
    """
    today = now.astimezone(ZoneInfo(timezone)).date()
    month_starts = [period_start(today, "month")]
    for _ in range(months - 1):
        month_starts.insert(0, period_start(month_starts[0] - timedelta(days=1), "month"))
    ids = dict(session.execute(sa.select(KpiDefinition.key, KpiDefinition.id)
                               .where(KpiDefinition.key.in_(KPIS + ("win_rate",)))).all())
    if len(ids) < len(KPIS) + 1:
        return 0
    v = KpiValue.__table__
    day = sa.and_(v.c.period_type == "day", v.c.period_start <= today)
    first = session.scalar(sa.select(sa.func.min(v.c.period_start)).where(
        day, v.c.kpi_id == ids["emails_sent"], v.c.scope_type == "workspace"))
    if first is None:
        return 0
    first = date.fromisoformat(first) if isinstance(first, str) else first

    def sums(key: str, lo: date) -> dict[tuple[str, int], tuple[float, float]]:
        q = (sa.select(v.c.scope_type, v.c.scope_id, sa.func.sum(v.c.numerator),
                       sa.func.sum(sa.func.coalesce(v.c.denominator, 0)))
             .where(day, v.c.kpi_id == ids[key], v.c.period_start >= lo).group_by(v.c.scope_type, v.c.scope_id))
        return {(st, sid): (float(n or 0), float(d or 0)) for st, sid, n, d in session.execute(q)}

    def days_from(lo: date) -> int:
        return max(1, (today - lo).days + 1)

    meeting_lo = min(first + timedelta(days=14), today)
    recent_lo = max(first, today - timedelta(days=29))
    sent, meetings = sums("emails_sent", first), sums("meetings", meeting_lo)
    ws = ("workspace", WORKSPACE_SCOPE_ID)
    rates = {}
    for key, lo in (("unique_human_open_rate", first), ("meeting_rate", first), ("win_rate", recent_lo)):
        n, d = sums(key, lo).get(ws, (0.0, 0.0))
        rates[key] = n / d if d else None
    rows = []
    for st, sid in sorted(k for k in sent if k[0] in ("team", "owner")):
        for ms in month_starts:
            if elapsed_fraction(ms, period_end(ms, "month"), today) == 0:
                continue
            month_days = (period_end(ms, "month") - ms).days + 1
            targets = {"emails_sent": math.ceil(sent[(st, sid)][0] / days_from(first) * month_days)}
            level = meetings.get((st, sid), (0.0, 0.0))[0] / days_from(meeting_lo) * month_days
            if level > 0:
                targets["meetings"] = max(1, math.floor(level * 0.9))   # 90 % of the usual level: achievable
                if rates["win_rate"]:
                    targets["deals"] = max(1, math.ceil(targets["meetings"] * rates["win_rate"]))
            for key in ("unique_human_open_rate", "meeting_rate"):
                if rates[key]:
                    targets[key] = round(rates[key], 3)
            for key, target in targets.items():
                rows.append({"kpi_id": ids[key], "scope_type": st, "scope_id": sid, "period_type": "month",
                             "period_start": ms, "target": float(target)})
    if rows:
        set_targets(session, rows, now=now)
    return len(rows)
