"""Progress math, business-day pace, the trend test and the review flags."""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import Table

from emailexp.kpi.progress import elapsed_fraction, progress_math
from emailexp.kpi.refresh import refresh_kpis
from emailexp.kpi.review import review_flags, trend_test
from emailexp.kpi.store import parse_target_rows, set_targets

from .conftest import jst


def test_elapsed_fraction_linear_and_business_days():
    start, end = date(2026, 12, 1), date(2026, 12, 31)
    assert elapsed_fraction(start, end, date(2026, 12, 10)) == 10 / 31
    assert elapsed_fraction(start, end, date(2026, 11, 30)) == 0.0
    assert elapsed_fraction(start, end, date(2027, 1, 5)) == 1.0
    for as_of in (date(2026, 12, 4), date(2026, 12, 6), date(2026, 12, 19), date(2026, 12, 30)):
        expected = np.busday_count(start, as_of + timedelta(days=1)) / np.busday_count(start, end + timedelta(days=1))
        assert elapsed_fraction(start, end, as_of, business_days=True) == pytest.approx(expected)


@pytest.mark.parametrize("actual,target,elapsed,higher,status", [
    (40, 100, 0.4, True, "on_track"),       # forecast 100 = target
    (37, 100, 0.4, True, "at_risk"),        # forecast 92.5
    (30, 100, 0.4, True, "off_track"),      # forecast 75
    (30, 100, 0.4, False, "on_track"),      # lower is better: forecast 75 <= 100
    (43, 100, 0.4, False, "at_risk"),       # forecast 107.5: 100/107.5 = 0.93
    (60, 100, 0.4, False, "off_track"),     # forecast 150
])
def test_progress_status_is_direction_aware(actual, target, elapsed, higher, status):
    m = progress_math(actual, target, formula="count", higher_is_better=higher, elapsed=elapsed)
    assert m.status == status
    assert m.forecast == pytest.approx(actual / elapsed)
    assert m.expected_to_date == pytest.approx(target * elapsed)
    assert m.pace == pytest.approx(actual / (target * elapsed))


def test_ratio_progress_does_not_scale_with_time():
    m = progress_math(0.2, 0.25, formula="ratio", higher_is_better=True, elapsed=0.1)
    assert (m.forecast, m.expected_to_date, m.pace, m.status) == (0.2, 0.25, pytest.approx(0.8), "off_track")
    assert progress_math(None, 0.25, formula="ratio", higher_is_better=True, elapsed=0.5).status is None
    assert progress_math(0, 10, formula="count", higher_is_better=True, elapsed=0.0).status is None


def test_trend_test_matches_statsmodels_linear_by_linear():
    rng = np.random.default_rng(3)
    n = rng.integers(200, 400, size=8)
    x = rng.binomial(n, np.linspace(0.2, 0.3, 8))
    ours = trend_test(x, n)
    table = Table(np.column_stack([x, n - x]).astype(float))
    lbl = table.test_ordinal_association(row_scores=np.arange(8), col_scores=np.array([1.0, 0.0]))
    # Cochran-Armitage z^2 = N/(N-1) x linear-by-linear M^2
    big_n = n.sum()
    assert ours.z ** 2 == pytest.approx(lbl.zscore ** 2 * big_n / (big_n - 1), rel=1e-9)
    assert ours.z > 0 and ours.p_value < 0.05


def _weekly(world, owner, weeks, sends_per_week, open_rates, meeting_rates, rng, start):
    for w in range(weeks):
        for i in range(sends_per_week):
            at = start + timedelta(days=7 * w + (i % 5), hours=i % 8)
            s = world.send(at, owner, opened=bool(rng.random() < open_rates[w]))
            if rng.random() < meeting_rates[w]:
                world.conversion(s, "meeting", at + timedelta(days=2))


def test_open_up_meeting_down_flag_fires_on_planted_data_not_on_noise(session, world):
    rng = np.random.default_rng(11)
    world.owner("rep-planted", "大阪")
    world.owner("rep-noise", "東京IS")
    start = jst(2026, 9, 7, 9)        # a Monday
    as_of = date(2026, 11, 18)        # latest mature week: 2026-10-26 (ends 11-01, +14 days < as_of)
    _weekly(world, "rep-planted", 8, 120, np.linspace(0.20, 0.45, 8), np.linspace(0.12, 0.03, 8), rng, start)
    _weekly(world, "rep-noise", 8, 120, [0.3] * 8, [0.08] * 8, rng, start)
    refresh_kpis(session, timezone="Asia/Tokyo")
    flags = [f for f in review_flags(session, as_of=as_of) if f.kind == "open_rate_up_meeting_rate_down"]
    owners = {f.scope_id for f in flags if f.scope == "owner"}
    assert owners == {"rep-planted"}
    flag = next(f for f in flags if f.scope_id == "rep-planted")
    assert flag.details["weeks"][0] == "2026-09-07" and len(flag.details["weeks"]) == 8
    assert flag.details["open_trend"]["z"] > 0 > flag.details["meeting_trend"]["z"]


def test_noise_does_not_flag(session, world):
    rng = np.random.default_rng(5)
    start = jst(2026, 9, 7, 9)
    for k in range(6):
        world.owner(f"rep-{k}", "T")
        _weekly(world, f"rep-{k}", 8, 60, [0.3] * 8, [0.08] * 8, rng, start)
    refresh_kpis(session, timezone="Asia/Tokyo")
    assert [f for f in review_flags(session, as_of=date(2026, 11, 18), min_sends=100)
            if f.kind == "open_rate_up_meeting_rate_down"] == []


def test_meetings_on_track_deals_off_flags(session, world):
    world.owner("rep-1", "大阪")
    for d in range(1, 11):
        s = world.send(jst(2026, 11, d, 10), "rep-1")
        world.conversion(s, "meeting", jst(2026, 11, d, 15))
    s = world.send(jst(2026, 11, 2, 10), "rep-1")
    world.conversion(s, "deal", jst(2026, 11, 5, 15), amount=1000)
    refresh_kpis(session, timezone="Asia/Tokyo")
    rows = parse_target_rows(session, [
        {"kpi": "meetings", "scope": "team", "scope_id": "大阪", "period": "month", "period_start": "2026-11-01",
         "target": 30},
        {"kpi": "deals", "scope": "team", "scope_id": "大阪", "period": "month", "period_start": "2026-11-01",
         "target": 10}])
    set_targets(session, rows)
    flags = review_flags(session, as_of=date(2026, 11, 10))
    assert [(f.kind, f.scope, f.scope_id, f.period) for f in flags] == [
        ("leading_on_track_lagging_off", "team", "大阪", "month")]
    assert flags[0].details["leading"]["status"] == "on_track"
    assert flags[0].details["lagging"]["status"] == "off_track"
