"""The feed: roll-ups, idempotence, incremental refresh with late data, local dates."""
from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from emailexp.kpi.refresh import offset_segments, refresh_kpis
from emailexp.models.kpi import KpiDefinition, KpiValue

from .conftest import jst

TZ = "Asia/Tokyo"


def snapshot(session, with_time=False):
    q = sa.select(KpiDefinition.key, KpiValue.scope_type, KpiValue.scope_id, KpiValue.period_type,
                  KpiValue.period_start, KpiValue.numerator, KpiValue.denominator, KpiValue.value,
                  KpiValue.computed_at).join(KpiDefinition, KpiDefinition.id == KpiValue.kpi_id)
    out = {}
    for key, st, sid, pt, ps, num, den, val, at in session.execute(q):
        out[(key, st, sid, pt, ps)] = (num, den, val, at) if with_time else (num, den, val)
    return out


def build(world):
    """Two teams, an owner without team, sends without owner; opens, clicks, meetings, deals."""
    world.owner("rep-1", "東京IS")
    world.owner("rep-2", "東京IS")
    world.owner("rep-3", "大阪")
    world.owner("rep-4")
    sends = []
    start = jst(2026, 3, 25, 9)
    for i in range(60):
        owner = [None, "rep-1", "rep-2", "rep-3", "rep-4"][i % 5]
        at = start + timedelta(hours=13 * i)
        s = world.send(at, owner, opened=(at + timedelta(hours=2)) if i % 3 else None,
                       clicked=(at + timedelta(hours=3)) if i % 7 == 0 else None)
        sends.append(s)
        if i % 4 == 0:
            world.conversion(s, "meeting", at + timedelta(days=3))
        if i % 8 == 0:
            world.conversion(s, "deal", at + timedelta(days=20), amount=100_000 * (i + 1))
    world.session.flush()
    return sends


def test_team_totals_equal_sum_of_members(session, world):
    build(world)
    refresh_kpis(session, timezone=TZ)
    snap = snapshot(session)
    members = {"東京IS": [world.owners["rep-1"].id, world.owners["rep-2"].id], "大阪": [world.owners["rep-3"].id]}
    checked = 0
    for team, owner_ids in members.items():
        tid = world.teams[team].id
        for (key, st, sid, pt, ps), (num, den, val) in snap.items():
            if st != "team" or sid != tid:
                continue
            parts = [snap.get((key, "owner", o, pt, ps), (0.0, 0.0, None)) for o in owner_ids]
            assert num == pytest.approx(sum(p[0] for p in parts))
            if den is not None:
                assert den == pytest.approx(sum(p[1] or 0 for p in parts))
            checked += 1
    assert checked > 50
    # the workspace also counts sends without an owner or a team
    ws = snap[("emails_sent", "workspace", 0, "quarter", date(2026, 1, 1))][0] + \
        snap[("emails_sent", "workspace", 0, "quarter", date(2026, 4, 1))][0]
    assert ws == 60


def test_ratios_roll_up_from_numerators_and_denominators(session, world):
    world.owner("rep-1", "T")
    # day 1: 1 send, opened (rate 100 %); day 2: 9 sends, 0 opened. Mean of rates 50 %, true rate 10 %.
    world.send(jst(2026, 5, 11, 10), "rep-1", opened=True)
    for _ in range(9):
        world.send(jst(2026, 5, 12, 10), "rep-1")
    refresh_kpis(session, timezone=TZ)
    snap = snapshot(session)
    for st, sid in (("owner", world.owners["rep-1"].id), ("team", world.teams["T"].id), ("workspace", 0)):
        for pt, ps in (("iso_week", date(2026, 5, 11)), ("month", date(2026, 5, 1)), ("quarter", date(2026, 4, 1))):
            assert snap[("unique_human_open_rate", st, sid, pt, ps)] == (1.0, 10.0, pytest.approx(0.1))


def test_refreshing_twice_equals_refreshing_once(session, world):
    build(world)
    refresh_kpis(session, timezone=TZ, full=True)
    session.commit()
    once = snapshot(session)
    refresh_kpis(session, timezone=TZ, full=True)
    session.commit()
    assert snapshot(session) == once
    refresh_kpis(session, timezone=TZ)           # incremental, nothing new
    assert snapshot(session) == once
    assert len(once) > 100


def test_local_date_in_workspace_timezone(session, world):
    world.owner("rep-1")
    world.send(jst(2026, 1, 5, 23, 30), "rep-1")    # 14:30 UTC on the 5th
    world.send(jst(2026, 1, 6, 0, 30), "rep-1")     # 15:30 UTC on the 5th, but the 6th in Tokyo
    refresh_kpis(session, timezone=TZ)
    snap = snapshot(session)
    assert snap[("emails_sent", "workspace", 0, "day", date(2026, 1, 5))][0] == 1
    assert snap[("emails_sent", "workspace", 0, "day", date(2026, 1, 6))][0] == 1


def test_dst_zone_dates_match_zoneinfo(session, world):
    """New York has DST: SQLite uses per-segment offsets, PostgreSQL its tz database; both must agree
    with Python's zoneinfo around the March and November changes."""
    ny = ZoneInfo("America/New_York")
    world.owner("rep-1")
    expected = defaultdict(int)
    base = datetime(2026, 3, 7, 0, 0, tzinfo=UTC)
    times = [base + timedelta(minutes=37 * i) for i in range(200)]
    base2 = datetime(2026, 10, 31, 0, 0, tzinfo=UTC)
    times += [base2 + timedelta(minutes=41 * i) for i in range(200)]
    for t in times:
        world.send(t, "rep-1")
        expected[t.astimezone(ny).date()] += 1
    refresh_kpis(session, timezone="America/New_York")
    snap = snapshot(session)
    got = {ps: v[0] for (k, st, sid, pt, ps), v in snap.items()
           if k == "emails_sent" and st == "workspace" and pt == "day" and v[0]}
    assert got == dict(expected)


def test_offset_segments_find_the_exact_change():
    segs = offset_segments("America/New_York", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))
    assert segs == [(datetime(2026, 3, 8, 7, 0, tzinfo=UTC), -300), (datetime(2026, 11, 1, 6, 0, tzinfo=UTC), -240),
                    (None, -300)]


def test_late_open_and_meeting_move_exactly_the_right_periods(session, world):
    world.owner("rep-1", "東京IS")
    world.owner("rep-2", "東京IS")
    old = world.send(jst(2026, 1, 14, 10), "rep-1")            # Wed of ISO week 2026-01-12
    world.send(jst(2026, 1, 15, 10), "rep-2")
    world.send(jst(2026, 3, 3, 10), "rep-2", opened=True)
    world.send(jst(2026, 5, 20, 10), "rep-2")
    refresh_kpis(session, timezone=TZ)
    session.commit()
    before = snapshot(session, with_time=True)

    # a late human open of the January send, and a meeting in June attributed to it
    old.first_open_at = old.first_human_open_at = datetime.now(UTC)
    world.conversion(old, "meeting", jst(2026, 6, 2, 15), created_at=datetime.now(UTC))
    world.session.flush()
    refresh_kpis(session, timezone=TZ)
    after = snapshot(session, with_time=True)

    jan = {("day", date(2026, 1, 14)), ("iso_week", date(2026, 1, 12)), ("month", date(2026, 1, 1)),
           ("quarter", date(2026, 1, 1))}
    jun = {("day", date(2026, 6, 2)), ("iso_week", date(2026, 6, 1)), ("month", date(2026, 6, 1)),
           ("quarter", date(2026, 4, 1))}
    changed = {k for k in set(before) | set(after) if before.get(k, (None,) * 4)[:3] != after.get(k, (None,) * 4)[:3]}
    scopes = (("owner", world.owners["rep-1"].id), ("team", world.teams["東京IS"].id), ("workspace", 0))
    jan_expected = {(k, st, sid, pt, ps) for pt, ps in jan for st, sid in scopes
                    for k in ("unique_human_open_rate", "meeting_rate")}
    jun_meetings = {("meetings", st, sid, pt, ps) for pt, ps in jun for st, sid in scopes}
    assert {k for k in changed if (k[3], k[4]) in jan} == jan_expected
    jun_changed = {k for k in changed if (k[3], k[4]) in jun}
    assert jun_meetings <= jun_changed
    # in June only the meeting and the rows it creates (zero sends/deals, win rate 0/1) change
    assert {k[0] for k in jun_changed} == {"meetings", "win_rate", "emails_sent", "deals", "deal_amount"}
    assert all(k[0] == "meetings" or k not in before or k[0] == "win_rate" for k in jun_changed)
    assert changed == jan_expected | jun_changed
    assert after[("meeting_rate", "owner", world.owners["rep-1"].id, "month", date(2026, 1, 1))][:3] == (1.0, 1.0, 1.0)
    # nothing outside the affected periods was even rewritten
    touched = {k for k in after if k in before and after[k][3] != before[k][3]}
    assert {(k[3], k[4]) for k in touched} <= jan | jun
    assert ("emails_sent", "owner", world.owners["rep-2"].id, "day", date(2026, 5, 20)) not in touched
    # and the incremental result equals a full recomputation
    refresh_kpis(session, timezone=TZ, full=True)
    assert snapshot(session) == {k: v[:3] for k, v in after.items()}


def test_since_recomputes_only_periods_touching_later_dates(session, world):
    world.owner("rep-1")
    world.send(jst(2026, 2, 10, 10), "rep-1")
    world.send(jst(2026, 4, 10, 10), "rep-1")
    refresh_kpis(session, timezone=TZ)
    session.commit()
    before = snapshot(session, with_time=True)
    refresh_kpis(session, timezone=TZ, since=date(2026, 4, 1))
    after = snapshot(session, with_time=True)
    rewritten = {(k[3], k[4]) for k in after if after[k][3] != before[k][3]}
    assert rewritten and all(ps >= date(2026, 3, 30) for _, ps in rewritten)
    assert ("month", date(2026, 2, 1)) not in rewritten
    assert {k: v[:3] for k, v in after.items()} == {k: v[:3] for k, v in before.items()}
