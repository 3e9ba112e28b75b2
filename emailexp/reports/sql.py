"""Small dialect-aware SQL expressions shared by the report queries."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session


def whole_hours_between(session: Session, start, end) -> sa.ColumnElement[int]:
    """Whole hours from `start` to `end` (UTC timestamp columns), rounded down for non-negative spans.

    SQLite's julianday arithmetic is floating point (2 h can come out as 1.9999999), hence the
    epsilon of about 4 ms before truncating.
    """
    if session.get_bind().dialect.name == "sqlite":
        return sa.cast((sa.func.julianday(end) - sa.func.julianday(start)) * 24.0 + 1e-6, sa.Integer)
    return sa.cast(sa.func.floor(sa.extract("epoch", end - start) / 3600.0), sa.Integer)


def meeting_sends():
    """Subquery of the ids of sends with at least one attributed meeting (one row per send)."""
    from emailexp.models import Conversion

    return (sa.select(Conversion.send_id)
            .where(Conversion.kind == "meeting", Conversion.send_id.is_not(None))
            .distinct().subquery("met"))
