"""What is behind a KPI number: an owner's sends in a period, by experiment and campaign."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.models import Experiment, Send

from .sql import meeting_sends


def owner_sends_breakdown(session: Session, owner_id: int, start: date, end: date, timezone: str) -> list[dict]:
    """The owner's sends in [start, end] (local dates) by experiment and campaign: sends, human opens,
    sends with a meeting (GROUP BY in the database)."""
    tz = ZoneInfo(timezone)
    lo = datetime.combine(start, time(0), tz)
    hi = datetime.combine(end + timedelta(days=1), time(0), tz)
    met = meeting_sends()
    rows = session.execute(
        sa.select(Send.experiment_id, Experiment.name, Send.campaign, sa.func.count().label("sends"),
                  sa.func.count(Send.first_human_open_at).label("opens"), sa.func.count(met.c.send_id).label("met"))
        .select_from(Send)
        .outerjoin(Experiment, Experiment.id == Send.experiment_id)
        .outerjoin(met, met.c.send_id == Send.id)
        .where(Send.owner_id == owner_id, Send.sent_at >= lo, Send.sent_at < hi)
        .group_by(Send.experiment_id, Experiment.name, Send.campaign)
        .order_by(sa.desc("sends"))
    ).all()
    return [{"experiment_id": e, "experiment": n, "campaign": c, "sends": s, "opens": o, "meetings": m,
             "open_rate": o / s if s else None, "meeting_rate": m / s if s else None} for e, n, c, s, o, m in rows]
