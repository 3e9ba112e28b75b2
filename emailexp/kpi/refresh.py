"""The feed: compute the tracked KPIs from sends, opens and conversions into `kpi_values`.

Grain and roll-up. The database aggregates at day x owner (local date in the workspace timezone) with
GROUP BY; no send row is loaded into Python. The small aggregated frame (~ days x owners rows) is rolled
up with pandas to team (current team of each owner) and workspace (all sends, also those without an owner)
and to ISO week, month and quarter, summing numerators and denominators: a ratio is always Σnum / Σden.

Local dates. PostgreSQL: `(ts AT TIME ZONE :tz)::date`. SQLite has no timezone database: a zone with a fixed
offset (Asia/Tokyo, +09:00, no DST since 1951) uses `date(ts, '+540 minutes')`; a zone with DST uses a
CASE over the UTC instants of its offset changes within the data's time span, each branch applying that
segment's offset (exact, still pure SQL).

Incremental. A refresh recomputes whole periods. Which ones: every period touching a date >= `since`
(if given), plus the periods of every local date touched by data recorded since the last refresh's start
(the watermark) minus a 10-minute overlap for transactions that were still open: sends created since
(their sent_at date), sends whose first human open or first click happened since (late opens move the
send's period), conversions created since (their occurred_at date, and the attributed send's sent_at date
for the cohort meeting rate). Without a watermark, or with `full=True`, everything is recomputed.
Values are upserted (INSERT ... ON CONFLICT DO UPDATE); tracked rows of the recomputed periods that were
not rewritten by this run are deleted, so a full refresh twice equals once.
Not detected incrementally: moving an owner to another team (team roll-ups use the current team):
run `emailexp kpi refresh --full` after reorganising teams.

Schedule: `*/10 * * * * emailexp kpi refresh` (incremental; a nightly `--full` is cheap insurance).
"""
from __future__ import annotations

import time as _time
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.kpi.definitions import ensure_builtin_kpis
from emailexp.kpi.periods import (PERIOD_TYPES, VALUE_COLS, in_period_keys, period_end, period_start, upsert_frame,
                                  upsert_values)
from emailexp.models import ClickEvent, Conversion, Owner, Send, UTCDateTime, utcnow
from emailexp.models.kpi import WORKSPACE_SCOPE_ID, KpiDefinition, KpiRefreshState, KpiValue

WATERMARK_OVERLAP = timedelta(minutes=10)
FEED = "tracked"

MEASURES = ("sends", "human_opened", "clicked", "meeting_sends", "meetings", "deals", "deal_amount")
# KPI key -> (numerator measure, denominator measure or None)
TRACKED_FORMULAS: dict[str, tuple[str, str | None]] = {
    "emails_sent": ("sends", None),
    "unique_human_open_rate": ("human_opened", "sends"),
    "click_rate": ("clicked", "sends"),
    "meetings": ("meetings", None),
    "meeting_rate": ("meeting_sends", "sends"),
    "deals": ("deals", None),
    "win_rate": ("deals", "meetings"),
    "deal_amount": ("deal_amount", None),
}


@dataclass(frozen=True)
class RefreshResult:
    full: bool
    periods: int            # (period type, period start) pairs recomputed
    values_written: int     # tracked rows upserted
    derived_written: int
    seconds: float


# ---------------------------------------------------------------------------------------------- local dates

@lru_cache(maxsize=32)
def fixed_offset_minutes(tz: str) -> int | None:
    """The zone's UTC offset in minutes if it has not changed between 1990 and 2050, else None."""
    zone = ZoneInfo(tz)
    seen = set()
    for year in range(1990, 2051):
        for month in range(1, 13):
            for day in (1, 15):
                seen.add(datetime(year, month, day, 12, tzinfo=zone).utcoffset())
                if len(seen) > 1:
                    return None
    return int(seen.pop().total_seconds() // 60)


def offset_segments(tz: str, lo: datetime, hi: datetime) -> list[tuple[datetime | None, int]]:
    """[(until_utc, offset_minutes), ...] covering [lo, hi]; the last one has until None."""
    zone = ZoneInfo(tz)

    def off(t: datetime) -> int:
        return int(t.astimezone(zone).utcoffset().total_seconds() // 60)

    segments: list[tuple[datetime | None, int]] = []
    t = lo.replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    end = hi + timedelta(days=1)
    current = off(t)
    while t < end:
        nxt = t + timedelta(hours=1)
        if off(nxt) != current:
            a, b = t, nxt                      # the change happens in (a, b]: bisect to the minute
            while b - a > timedelta(minutes=1):
                mid = a + (b - a) / 2
                if off(mid) == current:
                    a = mid
                else:
                    b = mid
            b = b.replace(second=0, microsecond=0)
            if off(b) == current:
                b += timedelta(minutes=1)
            segments.append((b, current))
            current = off(nxt)
        t = nxt
    segments.append((None, current))
    return segments


class LocalDate:
    """Builds the SQL expression `local date of <utc timestamp column>` for the session's database."""

    def __init__(self, session: Session, tz: str):
        self.dialect = session.get_bind().dialect.name
        self.tz = tz
        self.segments: list[tuple[datetime | None, int]] | None = None
        if self.dialect == "sqlite":
            fixed = fixed_offset_minutes(tz)
            if fixed is not None:
                self.segments = [(None, fixed)]
            else:
                lo, hi = _data_span(session)
                self.segments = offset_segments(tz, lo, hi)

    def __call__(self, column):
        if self.dialect == "postgresql":
            return sa.cast(sa.func.timezone(self.tz, column), sa.Date)
        whens = [(column < sa.literal(until, UTCDateTime()), sa.func.date(column, f"{off:+d} minutes"))
                 for until, off in self.segments[:-1]]
        last = sa.func.date(column, f"{self.segments[-1][1]:+d} minutes")
        return sa.case(*whens, else_=last) if whens else last


def _data_span(session: Session) -> tuple[datetime, datetime]:
    s = Send.__table__
    c = Conversion.__table__
    row = session.execute(sa.select(sa.func.min(s.c.sent_at), sa.func.max(s.c.sent_at))).one()
    crow = session.execute(sa.select(sa.func.min(c.c.occurred_at), sa.func.max(c.c.occurred_at))).one()
    times = [_as_utc(t) for t in (*row, *crow) if t is not None]
    now = utcnow()
    return (min(times, default=now), max(times + [now]))


def _as_utc(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _as_date(value) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def local_midnight_utc(d: date, tz: str) -> datetime:
    return datetime.combine(d, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def _in_intervals(column, intervals: list[tuple[date, date | None]] | None, tz: str):
    if intervals is None:
        return sa.true()
    clauses = []
    for lo, hi in intervals:
        c = column >= local_midnight_utc(lo, tz)
        if hi is not None:
            c = sa.and_(c, column < local_midnight_utc(hi + timedelta(days=1), tz))
        clauses.append(c)
    return sa.or_(*clauses) if clauses else sa.false()


# ---------------------------------------------------------------------------------------------- base grain

def load_base(session: Session, tz: str, intervals: list[tuple[date, date | None]] | None = None,
              local_date: LocalDate | None = None) -> pd.DataFrame:
    """Day x owner aggregates (GROUP BY in the database) of every tracked measure."""
    ld = local_date or LocalDate(session, tz)
    s = Send.__table__
    c = Conversion.__table__
    by12 = (sa.text("1"), sa.text("2"))
    ce = ClickEvent.__table__
    q_sends = (sa.select(ld(s.c.sent_at), s.c.owner_id, sa.func.count(), sa.func.count(s.c.first_human_open_at))
               .where(_in_intervals(s.c.sent_at, intervals, tz)).group_by(*by12))
    # human clicks only: sends.first_click_at also counts security scanners that follow every link
    q_clicks = (sa.select(ld(s.c.sent_at), s.c.owner_id, sa.func.count(sa.distinct(ce.c.send_id)))
                .select_from(ce.join(s, s.c.id == ce.c.send_id))
                .where(ce.c.verdict == "human", _in_intervals(s.c.sent_at, intervals, tz)).group_by(*by12))
    q_cohort = (sa.select(ld(s.c.sent_at), s.c.owner_id, sa.func.count(sa.distinct(c.c.send_id)))
                .select_from(c.join(s, s.c.id == c.c.send_id))
                .where(c.c.kind == "meeting", _in_intervals(s.c.sent_at, intervals, tz)).group_by(*by12))
    is_meeting = sa.case((c.c.kind == "meeting", 1), else_=0)
    is_deal = sa.case((c.c.kind == "deal", 1), else_=0)
    amount = sa.case((c.c.kind == "deal", sa.func.coalesce(c.c.amount, 0)), else_=0)
    q_events = (sa.select(ld(c.c.occurred_at), s.c.owner_id, sa.func.sum(is_meeting), sa.func.sum(is_deal),
                          sa.func.sum(amount))
                .select_from(c.join(s, s.c.id == c.c.send_id))
                .where(_in_intervals(c.c.occurred_at, intervals, tz)).group_by(*by12))
    acc: dict[tuple[date, int | None], list[float]] = {}

    def add(rows, cols):
        for d, owner, *vals in rows:
            slot = acc.setdefault((_as_date(d), owner), [0.0] * len(MEASURES))
            for i, v in zip(cols, vals):
                slot[i] += float(v or 0)

    add(session.execute(q_sends), (0, 1))
    add(session.execute(q_clicks), (2,))
    add(session.execute(q_cohort), (3,))
    add(session.execute(q_events), (4, 5, 6))
    if not acc:
        return pd.DataFrame(columns=["d", "owner_id", *MEASURES])
    keys = list(acc)
    frame = pd.DataFrame(np.array([acc[k] for k in keys], dtype=float), columns=list(MEASURES))
    frame.insert(0, "owner_id", pd.array([k[1] for k in keys], dtype="Int64"))
    frame.insert(0, "d", pd.to_datetime([k[0] for k in keys]))
    return frame


def rollup(base: pd.DataFrame, team_of: dict[int, int], measures: list[str],
           extra_keys: tuple[str, ...] = ()) -> pd.DataFrame:
    """Sum `measures` of a day x owner frame into every scope x period.

    Columns out: *extra_keys, scope_type, scope_id, period_type, period_start (date), *measures.
    Owners without a team count in their own scope and the workspace; rows without an owner only in the
    workspace.
    """
    out_cols = [*extra_keys, "scope_type", "scope_id", "period_type", "period_start", *measures]
    if base.empty:
        return pd.DataFrame(columns=out_cols)
    base = base.copy()
    base["team_id"] = base["owner_id"].map(lambda o: team_of.get(int(o)) if pd.notna(o) else None).astype("Int64")
    d = base["d"]
    periods = {
        "day": d,
        "iso_week": d - pd.to_timedelta(d.dt.day_of_week, unit="D"),
        "month": d.dt.to_period("M").dt.start_time,
        "quarter": d.dt.to_period("Q").dt.start_time,
    }
    frames = []
    for ptype, col in periods.items():
        base["p"] = col.values
        for stype, key in (("workspace", None), ("team", "team_id"), ("owner", "owner_id")):
            by = [*extra_keys, "p"] if key is None else [*extra_keys, key, "p"]
            g = base.groupby(by, sort=False, dropna=True)[measures].sum().reset_index()
            g["scope_type"] = stype
            g["scope_id"] = WORKSPACE_SCOPE_ID if key is None else g[key].astype(int)
            g["period_type"] = ptype
            frames.append(g)
    out = pd.concat(frames, ignore_index=True)
    out["period_start"] = out["p"].dt.date
    return out[out_cols]


def _team_map(session: Session) -> dict[int, int]:
    return {oid: tid for oid, tid in session.execute(sa.select(Owner.id, Owner.team_id)) if tid is not None}


def value_rows(frame: pd.DataFrame, formulas: dict[int, tuple[str, str | None]], source: str,
               computed_at: datetime) -> pd.DataFrame:
    """One row (columns VALUE_COLS; period_start a date, NaN for NULL) per KPI per scope x period of a
    rolled-up frame, built column-wise (no Python loop per row), ordered like the primary key so that the
    B-tree is written mostly in order. A ratio with 0/0 carries nothing to roll up: no row (a missing ratio
    row reads as "no data")."""
    if frame.empty:
        return pd.DataFrame(columns=list(VALUE_COLS))
    keys = frame[["scope_type", "scope_id", "period_type", "period_start"]].reset_index(drop=True)
    keys["scope_id"] = keys["scope_id"].astype("int64")
    parts = []
    for kpi_id in sorted(formulas):
        num_col, den_col = formulas[kpi_id]
        num = frame[num_col].to_numpy(dtype=float)
        part = keys.copy()
        part.insert(0, "kpi_id", kpi_id)
        part["numerator"] = num
        if den_col is None:
            part["denominator"] = np.nan
            part["value"] = num
        else:
            den = frame[den_col].to_numpy(dtype=float)
            part["denominator"] = den
            part["value"] = np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)
            part = part[(num != 0) | (den != 0)]
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out = out.sort_values(["kpi_id", "scope_type", "scope_id", "period_type", "period_start"], kind="stable",
                          ignore_index=True)
    out["source"] = source
    out["computed_at"] = computed_at
    return out[list(VALUE_COLS)]


# ---------------------------------------------------------------------------------------------- the feed

def _dirty_dates(session: Session, ld: LocalDate, cut: datetime) -> set[date]:
    """Local dates whose tracked values may have changed since `cut`. One indexed range predicate per
    query (sends.created_at, sends.first_human_open_at, click_events.clicked_at, conversions.created_at),
    so a refresh with nothing new reads a few index pages, not the sends table. Sends and conversions are
    immutable once ingested; a first human open or a human click only ever appears at the time it is
    recorded, so these columns see every change."""
    s = Send.__table__
    c = Conversion.__table__
    ce = ClickEvent.__table__
    queries = [
        sa.select(ld(s.c.sent_at)).where(s.c.created_at >= cut).distinct(),
        sa.select(ld(s.c.sent_at)).where(s.c.first_human_open_at >= cut).distinct(),
        sa.select(ld(s.c.sent_at)).select_from(ce.join(s, s.c.id == ce.c.send_id))
        .where(ce.c.clicked_at >= cut, ce.c.verdict == "human").distinct(),
        sa.select(ld(c.c.occurred_at)).where(c.c.created_at >= cut, c.c.send_id.is_not(None)).distinct(),
        sa.select(ld(s.c.sent_at)).select_from(c.join(s, s.c.id == c.c.send_id))
        .where(c.c.created_at >= cut).distinct(),
    ]
    out: set[date] = set()
    for q in queries:
        out.update(_as_date(d) for d in session.scalars(q))
    return out


def _merge(intervals: list[tuple[date, date | None]]) -> list[tuple[date, date | None]]:
    merged: list[tuple[date, date | None]] = []
    for lo, hi in sorted(intervals, key=lambda x: x[0]):
        if merged and (merged[-1][1] is None or lo <= merged[-1][1] + timedelta(days=1)):
            plo, phi = merged[-1]
            merged[-1] = (plo, None if (phi is None or hi is None) else max(phi, hi))
        else:
            merged.append((lo, hi))
    return merged


def refresh_kpis(session: Session, *, timezone: str, since: date | None = None, full: bool = False,
                 now: datetime | None = None) -> RefreshResult:
    """Recompute the tracked KPIs (and the derived ratios) into the store. The caller commits.

    full: every period. Otherwise the periods touching dates >= `since` plus those touched by data
    recorded since the last refresh (see the module docstring); the first refresh is always full.
    """
    started = _time.perf_counter()
    run_at = now or utcnow()
    ensure_builtin_kpis(session)
    state = session.get(KpiRefreshState, FEED)
    full = full or state is None
    ld = LocalDate(session, timezone)

    dirty_keys: dict[str, set[date]] = {pt: set() for pt in PERIOD_TYPES}
    since_starts: dict[str, date] = {}
    intervals: list[tuple[date, date | None]] | None = None
    if not full:
        dirty = _dirty_dates(session, ld, _as_utc(state.watermark) - WATERMARK_OVERLAP)
        spans: list[tuple[date, date | None]] = []
        for d in dirty:
            for pt in PERIOD_TYPES:
                ps = period_start(d, pt)
                dirty_keys[pt].add(ps)
            spans.append((period_start(d, "iso_week"), period_end(period_start(d, "iso_week"), "iso_week")))
            q = period_start(d, "quarter")
            spans.append((q, period_end(q, "quarter")))
        if since is not None:
            since_starts = {pt: period_start(since, pt) for pt in PERIOD_TYPES}
            spans.append((min(since_starts.values()), None))
        intervals = _merge(spans)

    tracked = {k: v for k, v in session.execute(
        sa.select(KpiDefinition.key, KpiDefinition.id).where(KpiDefinition.key.in_(TRACKED_FORMULAS)))}
    formulas = {tracked[k]: f for k, f in TRACKED_FORMULAS.items()}
    values = KpiValue.__table__

    written = 0
    n_periods = 0
    if full or intervals:
        base = load_base(session, timezone, intervals, ld)
        frame = rollup(base, _team_map(session), list(MEASURES))
        if not full:
            keep = [ps in dirty_keys[pt] or (pt in since_starts and ps >= since_starts[pt])
                    for pt, ps in zip(frame["period_type"], frame["period_start"])]
            frame = frame[np.array(keep, dtype=bool)] if len(frame) else frame
        n_periods = len(set(zip(frame["period_type"], frame["period_start"])))
        if session.get_bind().dialect.name == "sqlite":
            # a bigger page cache for this connection: the bulk upsert otherwise spills pages to the WAL
            session.execute(sa.text("PRAGMA cache_size = -262144"))
        rows = value_rows(frame, formulas, "tracked", run_at)
        upsert_frame(session, KpiValue.__tablename__, VALUE_COLS, VALUE_COLS[5:], rows)
        written = len(rows)
        stale = sa.delete(values).where(values.c.kpi_id.in_(list(formulas)), values.c.computed_at != run_at)
        if not full:
            where = [in_period_keys(values, dirty_keys)]
            where += [sa.and_(values.c.period_type == pt, values.c.period_start >= ps)
                      for pt, ps in since_starts.items()]
            stale = stale.where(sa.or_(*where))
        session.execute(stale)

    if full:
        rollup_external(session, run_at)    # team membership may have changed
    derived = refresh_derived(session, run_at)
    if state is None:
        state = KpiRefreshState(name=FEED, watermark=run_at)
        session.add(state)
    state.watermark = run_at
    if full:
        state.last_full_at = run_at
    session.flush()
    return RefreshResult(full=full, periods=n_periods, values_written=written, derived_written=derived,
                         seconds=_time.perf_counter() - started)


def refresh_after_ingest(session: Session, since: date | datetime | None = None, *, timezone: str) -> RefreshResult:
    """Cheap incremental refresh for the ingestion routes to call in their transaction, after a batch.

    `since`: the earliest sent_at/occurred_at of the batch (optional; the watermark already finds what the
    batch changed). Costs one scan of `sends` plus the GROUP BY of the affected periods.
    """
    if isinstance(since, datetime):
        since = _as_utc(since).astimezone(ZoneInfo(timezone)).date()
    return refresh_kpis(session, timezone=timezone, since=since)


# ---------------------------------------------------------------------------------------------- derived, external

def refresh_derived(session: Session, now: datetime | None = None) -> int:
    """Recompute every derived ratio (numerator KPI value / denominator KPI value at the same scope and
    period) wherever the denominator has a stored value; a missing numerator counts as 0."""
    now = now or utcnow()
    v = KpiValue.__table__
    by_key = dict(session.execute(sa.select(KpiDefinition.key, KpiDefinition.id)).all())
    total = 0
    for d in session.scalars(sa.select(KpiDefinition).where(KpiDefinition.source == "derived")):
        num_id, den_id = by_key.get(d.numerator_key), by_key.get(d.denominator_key)
        if num_id is None or den_id is None:
            continue
        den, num = v.alias("den"), v.alias("num")
        q = (sa.select(den.c.scope_type, den.c.scope_id, den.c.period_type, den.c.period_start,
                       num.c.value, den.c.value)
             .select_from(den.outerjoin(num, sa.and_(num.c.kpi_id == num_id, num.c.scope_type == den.c.scope_type,
                                                     num.c.scope_id == den.c.scope_id,
                                                     num.c.period_type == den.c.period_type,
                                                     num.c.period_start == den.c.period_start)))
             .where(den.c.kpi_id == den_id, den.c.value.is_not(None)))
        rows = []
        for st, sid, pt, ps, nv, dv in session.execute(q):
            n = float(nv or 0)
            rows.append({"kpi_id": d.id, "scope_type": st, "scope_id": sid, "period_type": pt,
                         "period_start": _as_date(ps), "numerator": n, "denominator": float(dv),
                         "value": n / dv if dv else None, "source": "derived", "computed_at": now})
        upsert_values(session, rows)
        session.execute(sa.delete(v).where(v.c.kpi_id == d.id, v.c.computed_at != now))
        total += len(rows)
    return total


def rollup_external(session: Session, now: datetime | None = None) -> int:
    """Sum external count/sum KPIs imported at owner x day into team/workspace and week/month/quarter
    (source 'rollup'). An imported value at any key wins over a roll-up; imports at coarser grains are
    kept as they are and not rolled up further."""
    now = now or utcnow()
    v = KpiValue.__table__
    ids = list(session.scalars(sa.select(KpiDefinition.id).where(KpiDefinition.source == "external",
                                                                 KpiDefinition.formula != "ratio")))
    if not ids:
        return 0
    q = sa.select(v.c.kpi_id, v.c.scope_id, v.c.period_start, v.c.value).where(
        v.c.kpi_id.in_(ids), v.c.source == "import", v.c.scope_type == "owner", v.c.period_type == "day")
    data = session.execute(q).all()
    rows = pd.DataFrame(columns=list(VALUE_COLS))
    if data:
        base = pd.DataFrame({"kpi_id": [r[0] for r in data],
                             "owner_id": pd.array([r[1] for r in data], dtype="Int64"),
                             "d": pd.to_datetime([_as_date(r[2]) for r in data]),
                             "value": [float(r[3] or 0) for r in data]})
        frame = rollup(base, _team_map(session), ["value"], extra_keys=("kpi_id",))
        frame = frame[~((frame["scope_type"] == "owner") & (frame["period_type"] == "day"))]
        parts = [value_rows(part, {int(kpi_id): ("value", None)}, "rollup", now)
                 for kpi_id, part in frame.groupby("kpi_id")]
        rows = pd.concat(parts, ignore_index=True) if parts else rows
    upsert_frame(session, KpiValue.__tablename__, VALUE_COLS, VALUE_COLS[5:], rows, where_source_not="import")
    session.execute(sa.delete(v).where(v.c.kpi_id.in_(ids), v.c.source == "rollup", v.c.computed_at != now))
    return len(rows)
