"""What past sends say before an experiment starts: baseline open rate, send volume, recent activity.

All figures are aggregated in the database (COUNT/MAX with filters); no event rows are loaded.
Rates are proportions (0..1) per send; "human open rate" counts sends with a first human open
(`sends.first_human_open_at IS NOT NULL`) over all sends in the window.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.models import OpenEvent, Segment, Send, Verdict, utcnow


def _segment_filter(stmt, segment_key: str | None):
    if segment_key:
        stmt = stmt.join(Segment, Segment.id == Send.segment_id).where(Segment.key == segment_key)
    return stmt


def baseline_open_rate(session: Session, segment_key: str | None = None, days: int = 90,
                       *, now: datetime | None = None) -> tuple[float | None, int]:
    """Human open rate of the sends of the last `days` days (in that segment if given).

    Returns `(rate, sends)`; `rate` is None when there were no sends. Sends younger than a day
    are left out: their opens are still arriving and would bias the baseline down.
    """
    now = now or utcnow()
    stmt = sa.select(
        sa.func.count(Send.id),
        sa.func.count(Send.first_human_open_at),
    ).where(Send.sent_at >= now - timedelta(days=days), Send.sent_at < now - timedelta(days=1))
    sends, human_opens = session.execute(_segment_filter(stmt, segment_key)).one()
    if not sends:
        return None, 0
    return human_opens / sends, int(sends)


def sends_per_day(session: Session, segment_key: str | None = None, days: int = 28,
                  *, now: datetime | None = None) -> float:
    """Average sends per day over the last `days` days (in that segment if given)."""
    now = now or utcnow()
    stmt = sa.select(sa.func.count(Send.id)).where(Send.sent_at >= now - timedelta(days=days), Send.sent_at <= now)
    return int(session.scalar(_segment_filter(stmt, segment_key)) or 0) / days


@dataclass(frozen=True)
class RecentActivity:
    """Today's counts, 'today' being the calendar day in the workspace timezone."""

    sends_today: int
    opens_today: int          # open events of any verdict
    human_opens_today: int    # open events classified human
    last_ingested_at: datetime | None   # when the latest send was received (UTC)
    last_open_at: datetime | None
    total_sends: int


def recent_activity(session: Session, timezone: str, *, now: datetime | None = None) -> RecentActivity:
    now = now or utcnow()
    tz = ZoneInfo(timezone)
    local = now.astimezone(tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    sends_today, last_ingested, total = session.execute(sa.select(
        sa.func.count(Send.id).filter(Send.sent_at >= start),
        sa.func.max(Send.created_at),
        sa.func.count(Send.id),
    )).one()
    opens_today, human_today, last_open = session.execute(sa.select(
        sa.func.count(OpenEvent.id),
        sa.func.count(OpenEvent.id).filter(OpenEvent.verdict == Verdict.human.value),
        sa.func.max(OpenEvent.opened_at),
    ).where(OpenEvent.opened_at >= start)).one()
    if last_open is None:
        last_open = session.scalar(sa.select(sa.func.max(OpenEvent.opened_at)))
    return RecentActivity(int(sends_today or 0), int(opens_today or 0), int(human_today or 0),
                          _aware(last_ingested), _aware(last_open), int(total or 0))


def _aware(value: datetime | None) -> datetime | None:
    """MAX() over a UTCDateTime column comes back without the type's result processing on some backends."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=ZoneInfo("UTC"))
    return value
