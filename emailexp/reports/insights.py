"""Condition insights: the regression over all sends, fitted on cells aggregated in the database.

One GROUP BY over sends (subject, local weekday, local hour, segment, campaign) with the count of
sends, of sends with a human open and of sends with an attributed meeting. The cells, a few
thousand rows even for millions of sends, go to analysis.fit_condition_model.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.analysis.regression import ConditionModel, InsufficientDataError, fit_condition_model
from emailexp.errors import ValidationError
from emailexp.models import Segment, Send

from .sql import meeting_sends

METRICS = {"open_rate": "opens", "meeting_rate": "meetings"}
NO_SEGMENT = "(none)"
NO_CAMPAIGN = "(no campaign)"


@dataclass(frozen=True)
class InsightsQuery:
    date_from: date | None = None
    date_to: date | None = None       # inclusive
    segment: str | None = None
    metric: str = "open_rate"

    def to_dict(self) -> dict:
        return {"from": self.date_from.isoformat() if self.date_from else None,
                "to": self.date_to.isoformat() if self.date_to else None,
                "segment": self.segment, "metric": self.metric}


@dataclass(frozen=True)
class Insights:
    query: InsightsQuery
    n_sends: int
    model: ConditionModel | None
    message: str | None      # why there is no model, when there is none

    def to_dict(self) -> dict:
        return {"query": self.query.to_dict(), "n_sends": self.n_sends,
                "model": self.model.to_dict() if self.model else None, "message": self.message}


def parse_insights_query(args, *, timezone: str) -> InsightsQuery:
    """Validate query-string style arguments (a mapping of str -> str)."""
    def parse_date(name):
        raw = args.get(name)
        if raw in (None, ""):
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise ValidationError("must be a date as YYYY-MM-DD", field=name) from None

    metric = args.get("metric") or "open_rate"
    if metric not in METRICS:
        raise ValidationError(f"must be one of {', '.join(METRICS)}", field="metric")
    date_from, date_to = parse_date("from"), parse_date("to")
    if date_from and date_to and date_from > date_to:
        raise ValidationError("must not be after 'to'", field="from")
    segment = args.get("segment") or None
    if segment is not None and len(segment) > 120:
        raise ValidationError("is too long (at most 120 characters)", field="segment")
    return InsightsQuery(date_from=date_from, date_to=date_to, segment=segment, metric=metric)


def aggregate_cells(session: Session, query: InsightsQuery, *, timezone: str) -> pd.DataFrame:
    """Cells of sends by (subject, weekday, hour, segment, campaign) with sends, opens and meetings.

    The GROUP BY uses the raw columns only (no joins, no expressions per row): segment keys and
    campaign labels are attached to the few thousand aggregated rows afterwards. Meetings (sends
    with at least one attributed meeting) are counted only when the meeting rate is asked for,
    since that needs a join with the conversions.
    """
    tz = ZoneInfo(timezone)
    columns = [Send.subject, Send.local_weekday, Send.local_hour, Send.segment_id, Send.experiment_id,
               Send.campaign]
    measures = [sa.func.count().label("sends"), sa.func.count(Send.first_human_open_at).label("opens")]
    stmt = sa.select(*columns, *measures).select_from(Send)
    if query.metric == "meeting_rate":
        met = meeting_sends()
        stmt = stmt.add_columns(sa.func.count(met.c.send_id).label("meetings")).outerjoin(
            met, met.c.send_id == Send.id)
    stmt = stmt.group_by(*columns)
    if query.date_from:
        stmt = stmt.where(Send.sent_at >= datetime.combine(query.date_from, time(0), tz))
    if query.date_to:
        stmt = stmt.where(Send.sent_at < datetime.combine(query.date_to + timedelta(days=1), time(0), tz))
    if query.segment:
        segment_id = session.scalar(sa.select(Segment.id).where(Segment.key == query.segment))
        stmt = stmt.where(Send.segment_id == (segment_id if segment_id is not None else -1))
    if session.get_bind().dialect.name == "postgresql":
        # The planner expects far more groups than the few thousand cells there are and, within the
        # default 4 MB work_mem, sorts a million rows on disk instead of hashing them in memory
        # (0.95 s vs 0.3 s for 1M sends here). Only for this transaction.
        session.execute(sa.text("SET LOCAL work_mem = '64MB'"))
    rows = session.execute(stmt).all()
    names = ["subject", "weekday", "hour", "segment_id", "experiment_id", "campaign", "sends", "opens"]
    if query.metric == "meeting_rate":
        names.append("meetings")
    cells = pd.DataFrame(rows, columns=names)
    if "meetings" not in cells:
        cells["meetings"] = 0
    keys = dict(session.execute(sa.select(Segment.id, Segment.key)).all())
    cells["segment"] = [keys.get(s, NO_SEGMENT) if s == s and s is not None else NO_SEGMENT
                        for s in cells["segment_id"]]
    cells["campaign"] = [f"experiment:{int(e)}" if e == e and e is not None else (c or NO_CAMPAIGN)
                         for e, c in zip(cells["experiment_id"], cells["campaign"])]
    return cells[["subject", "weekday", "hour", "segment", "campaign", "sends", "opens", "meetings"]]


def build_insights(session: Session, query: InsightsQuery, *, timezone: str,
                   min_subject_sends: int = 500) -> Insights:
    cells = aggregate_cells(session, query, timezone=timezone)
    n_sends = int(cells["sends"].sum()) if len(cells) else 0
    if n_sends == 0:
        return Insights(query=query, n_sends=0, model=None,
                        message="No sends match these filters yet.")
    interactions = (("segment", "hour_band"),) if cells["segment"].nunique() > 1 else ()
    try:
        model = fit_condition_model(cells, outcome=METRICS[query.metric], interactions=interactions,
                                    min_subject_sends=min_subject_sends)
    except InsufficientDataError as exc:
        return Insights(query=query, n_sends=n_sends, model=None, message=str(exc))
    return Insights(query=query, n_sends=n_sends, model=model, message=None)
