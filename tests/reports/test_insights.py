from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np

from emailexp.reports.insights import InsightsQuery, aggregate_cells, build_insights

START = datetime(2026, 10, 5, 0, 0, tzinfo=UTC)
# Every weekday x hour combination is sent in both segments (no aliasing); the open rate is
# base + weekday + segment-specific hour effect: enterprise opens best at 8h, smb at 12h,
# and Thursday is the best weekday.
WEEKDAY = {1: 0.0, 3: 0.05, 4: -0.03}
HOUR = {"enterprise": {8: 0.12, 12: 0.0, 15: 0.02, 17: -0.04}, "smb": {8: -0.03, 12: 0.12, 15: 0.0, 17: -0.02}}
PLANTED = {seg: {(wd, h): 0.20 + WEEKDAY[wd] + hours[h] for wd in WEEKDAY for h in hours}
           for seg, hours in HOUR.items()}


def _plant(builder, rng, n=400):
    for seg, cells in PLANTED.items():
        for (wd, hour), p in cells.items():
            for campaign in ("news-1", "news-2"):
                builder.sends(n=n // 2, opened=rng.random(n // 2) < p, segment=seg, campaign=campaign,
                              weekday=wd, hour=hour, start=START, subject=f"subject {campaign}",
                              meetings=rng.random(n // 2) < p / 10, rng=rng)


def test_cells_are_aggregated_in_the_database(session, builder):
    rng = np.random.default_rng(3)
    _plant(builder, rng, n=100)
    session.commit()
    cells = aggregate_cells(session, InsightsQuery(), timezone="Asia/Tokyo")
    assert cells["sends"].sum() == 100 * 24
    assert len(cells) == 48  # 2 segments x 12 conditions x 2 campaigns (one subject per campaign)
    only = aggregate_cells(session, InsightsQuery(segment="smb"), timezone="Asia/Tokyo")
    assert set(only["segment"]) == {"smb"} and only["sends"].sum() == 1200


def test_planted_best_conditions_rank_first(session, builder):
    rng = np.random.default_rng(5)
    _plant(builder, rng)
    session.commit()
    result = build_insights(session, InsightsQuery(), timezone="Asia/Tokyo")
    model = result.model
    assert model is not None, result.message
    top_ent = model.top_conditions["enterprise"][0]
    top_smb = model.top_conditions["smb"][0]
    assert (top_ent.weekday, top_ent.hour_band) == (3, "early")
    assert (top_smb.weekday, top_smb.hour_band) == (3, "midday")
    json.dumps(result.to_dict())


def test_insights_api_validates_and_answers(client, auth, session, builder):
    rng = np.random.default_rng(7)
    _plant(builder, rng, n=100)
    session.commit()
    ok = client.get("/api/v1/insights?metric=open_rate", headers=auth)
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["model"]["top_conditions"]
    for query, field in (("from=2026-13-01", "from"), ("metric=clicks", "metric"), ("colour=red", "colour"),
                         ("from=2026-12-01&to=2026-11-01", "from")):
        bad = client.get(f"/api/v1/insights?{query}", headers=auth)
        assert bad.status_code == 422 and bad.get_json()["field"] == field, query
    empty = client.get("/api/v1/insights?segment=nobody", headers=auth)
    assert empty.status_code == 200 and empty.get_json()["model"] is None


def test_cli_insights(runner, session, builder):
    rng = np.random.default_rng(9)
    _plant(builder, rng, n=100)
    session.commit()
    out = runner.invoke(args=["insights"])
    assert out.exit_code == 0, out.output
    assert "Top conditions per segment" in out.output and "enterprise" in out.output
    bad = runner.invoke(args=["insights", "--from", "yesterday"])
    assert bad.exit_code != 0 and "from" in bad.output

