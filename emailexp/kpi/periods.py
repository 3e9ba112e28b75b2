"""Periods (day, ISO week, month, quarter) as local dates, and the upsert used by every KPI write."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.models.kpi import KpiTarget, KpiValue

PERIOD_TYPES = ("day", "iso_week", "month", "quarter")


def period_start(d: date, period_type: str) -> date:
    if period_type == "day":
        return d
    if period_type == "iso_week":
        return d - timedelta(days=d.weekday())
    if period_type == "month":
        return d.replace(day=1)
    if period_type == "quarter":
        return date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)
    raise ValueError(f"unknown period type {period_type!r}")


def period_end(start: date, period_type: str) -> date:
    """The last day (inclusive) of the period that starts on `start`."""
    if period_type == "day":
        return start
    if period_type == "iso_week":
        return start + timedelta(days=6)
    months = 1 if period_type == "month" else 3
    y, m = divmod(start.month - 1 + months, 12)
    return date(start.year + y, m + 1, 1) - timedelta(days=1)


def is_period_start(d: date, period_type: str) -> bool:
    return period_start(d, period_type) == d


def period_starts_between(lo: date, hi: date, period_type: str) -> list[date]:
    """Starts of every period of the type that touches [lo, hi]."""
    out, cur = [], period_start(lo, period_type)
    while cur <= hi:
        out.append(cur)
        cur = period_end(cur, period_type) + timedelta(days=1)
    return out


VALUE_COLS = ("kpi_id", "scope_type", "scope_id", "period_type", "period_start", "numerator", "denominator",
              "value", "source", "computed_at")
TARGET_COLS = ("kpi_id", "scope_type", "scope_id", "period_type", "period_start", "target", "updated_at")
KEY_COLS = VALUE_COLS[:5]


class DbParams:
    """Converts dates and UTC datetimes to what the DB-API driver stores for our column types (the bulk
    upsert bypasses SQLAlchemy's per-value type processing, which dominated the refresh time)."""

    def __init__(self, session: Session):
        self.sqlite = session.get_bind().dialect.name == "sqlite"
        self._dates: dict = {}

    def date(self, d: date):
        if not self.sqlite:
            return d
        out = self._dates.get(d)
        if out is None:
            out = self._dates[d] = d.isoformat()
        return out

    def ts(self, t: datetime):
        if t.tzinfo is None:
            raise ValueError("naive datetime given; use a timezone-aware datetime")
        if not self.sqlite:
            return t
        # the same text SQLAlchemy's SQLite DateTime stores for UTCDateTime
        return t.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


# Above this many rows PostgreSQL gets COPY into a temporary table, then one UPDATE ... FROM and one
# INSERT ... SELECT: psycopg's executemany (pipeline mode) costs Python work and a statement per row (~28 s
# for the 376k rows of a full refresh at 1M sends), and INSERT ... ON CONFLICT's speculative insertion
# cost ~1.7x a plain INSERT per row.
COPY_THRESHOLD = 500
_STAGE = "kpi_upsert_stage"


def _conflict_sql(quote, table: str, update: tuple[str, ...], where_source_not: str | None) -> str:
    sql = (f" ON CONFLICT ({', '.join(map(quote, KEY_COLS))}) DO UPDATE SET "
           + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in update))
    if where_source_not is not None:
        assert where_source_not.isalnum()  # an internal constant, inlined because executemany has no per-statement params
        sql += f" WHERE {quote(table)}.{quote('source')} <> '{where_source_not}'"
    return sql


def upsert_tuples(session: Session, table: str, cols: tuple[str, ...], update: tuple[str, ...],
                  rows: list[tuple], *, where_source_not: str | None = None) -> None:
    """INSERT ... ON CONFLICT (kpi, scope, period) DO UPDATE semantics on SQLite and PostgreSQL.
    `rows` are tuples in `cols` order, already converted by DbParams, with unique keys.

    SQLite, or up to COPY_THRESHOLD rows: one DB-API executemany of INSERT ... ON CONFLICT DO UPDATE.
    PostgreSQL, more rows: see `_upsert_copy`.
    `where_source_not`: leave rows whose `source` equals it untouched (a roll-up never overwrites an import).
    """
    if not rows:
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql" and len(rows) > COPY_THRESHOLD:
        _upsert_copy(conn, table, cols, update, rows, where_source_not)
        return
    quote = conn.dialect.identifier_preparer.quote
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    sql = (f"INSERT INTO {quote(table)} ({', '.join(map(quote, cols))}) VALUES ({', '.join([mark] * len(cols))})"
           + _conflict_sql(quote, table, update, where_source_not))
    conn.exec_driver_sql(sql, rows)


def _upsert_copy(conn, table: str, cols: tuple[str, ...], update: tuple[str, ...], data,
                 where_source_not: str | None) -> None:
    """PostgreSQL bulk upsert: `COPY` the rows (COPY text, or a list of tuples) into a temporary table,
    UPDATE the rows whose key exists, INSERT the others (plain INSERT when none existed, else ON CONFLICT
    DO NOTHING). The caller holds the KPI write lock
    taken here), so no other bulk writer inserts the same keys in between."""
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
    quote = conn.dialect.identifier_preparer.quote
    col_list = ", ".join(map(quote, cols))
    t = quote(table)
    # created and dropped within this call (a failure rolls the creation back with the transaction)
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {_STAGE} ON COMMIT DROP AS SELECT {col_list} FROM {t} WITH NO DATA")
    with conn.connection.driver_connection.cursor() as cursor:
        with cursor.copy(f"COPY {_STAGE} ({col_list}) FROM STDIN") as copy:
            if isinstance(data, str):
                copy.write(data)
            else:
                for row in data:
                    copy.write_row(row)
    conn.exec_driver_sql(f"ANALYZE {_STAGE}")
    match = " AND ".join(f"{t}.{quote(c)} = s.{quote(c)}" for c in KEY_COLS)
    guard = ""
    if where_source_not is not None:
        assert where_source_not.isalnum()
        guard = f" AND {t}.{quote('source')} <> '{where_source_not}'"
    updated = conn.exec_driver_sql(f"UPDATE {t} SET " + ", ".join(f"{quote(c)} = s.{quote(c)}" for c in update)
                                   + f" FROM {_STAGE} s WHERE {match}{guard}").rowcount
    staged = conn.exec_driver_sql(f"SELECT count(*) FROM {_STAGE}").scalar()
    select = f"INSERT INTO {t} ({col_list}) SELECT {', '.join('s.' + quote(c) for c in cols)} FROM {_STAGE} s"
    if updated == 0 and where_source_not is None:
        # none of the keys exists (a first refresh): a plain INSERT. Not an anti-join against the table being
        # written: with stale statistics PostgreSQL may re-scan the growing heap once per row.
        conn.exec_driver_sql(select)
    elif updated < staged:
        conn.exec_driver_sql(select + " ON CONFLICT DO NOTHING")
    conn.exec_driver_sql(f"DROP TABLE {_STAGE}")


_LOCK_KEY = 0x6B7069  # 'kpi': serialises PostgreSQL bulk KPI writers until their transaction ends


def upsert_frame(session: Session, table: str, cols: tuple[str, ...], update: tuple[str, ...], frame,
                 *, where_source_not: str | None = None) -> None:
    """`upsert_tuples` for a pandas frame with columns `cols` (dates as `date`, `computed_at`/`updated_at` a
    UTC datetime, NaN or None for NULL). On PostgreSQL a large frame is turned into COPY text column-wise."""
    if len(frame) == 0:
        return
    conn = session.connection()
    p = DbParams(session)
    frame = frame[list(cols)]
    if conn.dialect.name == "postgresql" and len(frame) > COPY_THRESHOLD:
        text = frame.copy()
        for c in cols:
            if text[c].dtype == object and len(text) and isinstance(text[c].iloc[0], date):
                if isinstance(text[c].iloc[0], datetime):
                    text[c] = text[c].map(lambda t: p.ts(t).isoformat())
                else:
                    text[c] = text[c].map(_iso_cached())
            elif isinstance(text[c].dtype, pd.DatetimeTZDtype):
                text[c] = text[c].map(lambda t: t.isoformat())
        # repr-exact floats; NULL is \N in COPY text format; our strings hold no tab, newline or backslash
        data = text.to_csv(sep="\t", header=False, index=False, na_rep="\\N",
                           lineterminator="\n")
        _upsert_copy(conn, table, cols, update, data, where_source_not)
        return
    columns = []
    for c in cols:
        values = frame[c].tolist()
        first = next((v for v in values if v is not None and v == v), None)
        if isinstance(first, datetime) or isinstance(frame[c].dtype, pd.DatetimeTZDtype):
            values = [None if v is None or v != v else p.ts(v.to_pydatetime() if hasattr(v, "to_pydatetime") else v)
                      for v in values]
        elif isinstance(first, date):
            values = [p.date(v) for v in values]
        elif isinstance(first, float):
            values = [None if v != v else v for v in values]
        columns.append(values)
    upsert_tuples(session, table, cols, update, list(zip(*columns)), where_source_not=where_source_not)


def _iso_cached():
    cache: dict = {}

    def iso(d):
        out = cache.get(d)
        if out is None:
            out = cache[d] = d.isoformat()
        return out
    return iso


def upsert_values(session: Session, rows: list[dict], *, where_source_not: str | None = None) -> None:
    p = DbParams(session)
    tuples = [(r["kpi_id"], r["scope_type"], r["scope_id"], r["period_type"], p.date(r["period_start"]),
               r["numerator"], r["denominator"], r["value"], r["source"], p.ts(r["computed_at"])) for r in rows]
    upsert_tuples(session, KpiValue.__tablename__, VALUE_COLS, VALUE_COLS[5:], tuples,
                  where_source_not=where_source_not)


def upsert_targets(session: Session, rows: list[dict]) -> None:
    p = DbParams(session)
    tuples = [(r["kpi_id"], r["scope_type"], r["scope_id"], r["period_type"], p.date(r["period_start"]),
               r["target"], p.ts(r["updated_at"])) for r in rows]
    upsert_tuples(session, KpiTarget.__tablename__, TARGET_COLS, TARGET_COLS[5:], tuples)


def in_period_keys(table, keys: dict[str, set[date]]):
    """A WHERE clause selecting rows whose (period_type, period_start) is in `keys`."""
    clauses = [sa.and_(table.c.period_type == pt, table.c.period_start.in_(sorted(starts)))
               for pt, starts in keys.items() if starts]
    return sa.or_(*clauses) if clauses else sa.false()
