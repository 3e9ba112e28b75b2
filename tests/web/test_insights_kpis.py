"""The insights page (regression heatmaps, top conditions, subject features, suggested test) and the KPI dashboard."""
from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import sqlalchemy as sa

JST = ZoneInfo("Asia/Tokyo")
SUBJECTS = ("【ご案内】新機能のお知らせ", "営業効率を30%上げる方法をご存じですか？", "資料送付のご連絡")


def fill_history(app, n: int = 3000, seed: int = 5, owner_of=None, experiment_id: int | None = None) -> None:
    """Weekday sends (Mon-Fri) at 8, 10, 13, 15 and 18 h JST in two segments; Tuesday 8 h opens best."""
    from emailexp.extensions import db
    from emailexp.ingestion.experiments import get_or_create_segment
    from emailexp.models import Recipient, Send

    rng = np.random.default_rng(seed)
    with app.app_context():
        segs = [get_or_create_segment(db.session, k).id for k in ("ent", "smb")]
        base = datetime(2026, 11, 2, tzinfo=JST)  # a Monday
        db.session.execute(sa.insert(Recipient), [{"external_id": f"h-{seed}-{i}"} for i in range(n)])
        rec_ids = list(db.session.scalars(sa.select(Recipient.id).where(Recipient.external_id.like(f"h-{seed}-%"))
                                          .order_by(Recipient.id)))
        rows = []
        for i in range(n):
            day = int(rng.integers(0, 5)) + 7 * int(rng.integers(0, 2))
            hour = int(rng.choice([8, 10, 13, 15, 18]))
            seg = int(rng.integers(0, 2))
            subject = SUBJECTS[int(rng.integers(0, 3))]
            local = base + timedelta(days=day, hours=hour, minutes=int(rng.integers(0, 50)))
            p = 0.18 + (0.25 if (local.weekday() == 1 and hour == 8) else 0) + (0.05 if "？" in subject else 0)
            opened = local + timedelta(hours=2) if rng.random() < p else None
            rows.append({"send_id": f"h-{seed}-{i}", "recipient_id": rec_ids[i], "subject": subject,
                         "segment_id": segs[seg], "sent_at": local.astimezone(UTC), "local_weekday": local.weekday(),
                         "local_hour": hour, "first_open_at": opened, "first_human_open_at": opened,
                         "owner_id": owner_of(i) if owner_of else None, "experiment_id": experiment_id,
                         "campaign": "newsletter", "payload_hash": hashlib.sha256(f"{seed}-{i}".encode()).hexdigest()})
        db.session.execute(sa.insert(Send), rows)
        db.session.commit()


def test_insights_empty_state(as_viewer):
    html = as_viewer.get("/insights").get_data(as_text=True)
    assert "No sends match these filters yet." in html and "emailexp demo" in html


@pytest.mark.parametrize("query, field, message", [
    ("from=2026-13-01", "from", "Enter the start date as YYYY-MM-DD"),
    ("from=2026-11-10&to=2026-11-01", "from", "Enter the start date as YYYY-MM-DD, not after the end date"),
    ("to=yesterday", "to", "Enter the end date as YYYY-MM-DD"),
    ("metric=clicks", "metric", "Choose open rate or meeting rate"),
    ("segment=nope", "segment", "There is no segment “nope”"),
])
def test_insights_bad_filters_give_a_message_not_a_500(as_viewer, query, field, message):
    resp = as_viewer.get(f"/insights?{query}")
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert message in html.replace("&#34;", '"').replace("&#39;", "'")
    assert f'id="err-{field}"' in html and 'aria-invalid="true"' in html


def test_insights_with_history(as_viewer, app):
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    from emailexp.extensions import db
    from emailexp.reports.insights import InsightsQuery, build_insights
    from emailexp.web.insights import suggest_next_tests

    fill_history(app)
    resp = as_viewer.get("/insights?lang=en")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    # one heatmap per segment; weekend cells had no sends and say so instead of showing a number
    assert html.count('id="heat-') >= 2 and html.count('class="heatmap-box"') == 2
    assert re.search(r"<title>Saturday 6–9: no sends</title>", html)
    assert re.search(r"<title>Tuesday 6–9: \d+\.\d%</title>", html)
    assert "Top conditions per segment" in html and "Suggested next test" in html
    assert "Question mark ？" in html and "Does each factor matter?" in html and "Dispersion" in html
    # the suggested sample size agrees with statsmodels' normal-approximation power calculation
    with app.app_context():
        with app.test_request_context("/?lang=en"):
            model = build_insights(db.session, InsightsQuery(), timezone="Asia/Tokyo").model
            suggestions = suggest_next_tests(model)
    assert {s.segment for s in suggestions} == {"ent", "smb"}
    for s in suggestions:
        assert s.best.rate >= s.other.rate
        if s.sends_per_variant:
            expected = NormalIndPower().solve_power(proportion_effectsize(s.best.rate, s.other.rate), alpha=0.05,
                                                    power=0.8)
            assert s.sends_per_variant == pytest.approx(expected, rel=0.05)
            assert f"{s.sends_per_variant:,}" in html
    # the best condition overall is the planted Tuesday early slot, in both segments
    assert all(s.best.weekday == 1 and s.best.hour_band == "early" for s in suggestions)
    # filters narrow it down; Japanese works
    html = as_viewer.get("/insights?segment=smb&metric=open_rate&lang=ja").get_data(as_text=True)
    assert html.count('class="heatmap-box"') == 1 and "次におすすめのテスト" in html
    html = as_viewer.get("/insights?from=2030-01-01&lang=en").get_data(as_text=True)
    assert "No sends match these filters yet." in html


def test_insights_meeting_rate_without_meetings_explains(as_viewer, app):
    fill_history(app, n=400)
    resp = as_viewer.get("/insights?metric=meeting_rate")
    assert resp.status_code == 200
    assert "cannot support the model yet" in resp.get_data(as_text=True)


# --- KPI dashboard -----------------------------------------------------------------------------

AS_OF = "2026-11-20"


def kpi_world(app) -> int:
    """Team 東京IS with two reps; sends in November 2026 with opens and meetings; monthly targets."""
    from emailexp.extensions import db
    from emailexp.ingestion.experiments import create_experiment
    from emailexp.kpi.refresh import refresh_kpis
    from emailexp.kpi.store import parse_target_rows, set_targets
    from emailexp.models import Conversion, Owner, Send, Team

    with app.app_context():
        team = Team(name="東京IS")
        db.session.add(team)
        db.session.flush()
        reps = [Owner(external_id="rep-1", name="山田 太郎", team_id=team.id),
                Owner(external_id="rep-2", name="<b>Bold</b> 花子", team_id=team.id)]
        db.session.add_all(reps)
        exp = create_experiment(db.session, {"name": "KPI exp", "variants": [{"key": "A"}, {"key": "B"}]})
        db.session.commit()
        ids = [r.id for r in reps]
        eid = exp.id
    fill_history(app, n=600, seed=9, owner_of=lambda i: ids[i % 2], experiment_id=eid)
    with app.app_context():
        sends = db.session.execute(sa.select(Send.id, Send.recipient_id, Send.sent_at)
                                   .where(Send.first_human_open_at.is_not(None)).order_by(Send.id).limit(30)).all()
        for k, (sid, rid, sent) in enumerate(sends):
            db.session.add(Conversion(conversion_id=f"m-{k}", kind="meeting", recipient_id=rid, send_id=sid,
                                      attribution="explicit", occurred_at=sent + timedelta(days=1),
                                      payload_hash="0" * 64))
        db.session.flush()
        refresh_kpis(db.session, timezone="Asia/Tokyo", full=True)
        rows = []
        for scope, sid in (("team", "東京IS"), ("owner", "rep-1"), ("owner", "rep-2")):
            rows += [{"kpi": "meetings", "scope": scope, "scope_id": sid, "period": "month",
                      "period_start": "2026-11-01", "target": 10 if scope == "owner" else 20},
                     {"kpi": "unique_human_open_rate", "scope": scope, "scope_id": sid, "period": "month",
                      "period_start": "2026-11-01", "target": 0.5},
                     {"kpi": "meeting_rate", "scope": scope, "scope_id": sid, "period": "month",
                      "period_start": "2026-11-01", "target": 0.01}]
        set_targets(db.session, parse_target_rows(db.session, rows))
        db.session.commit()
    return eid


def test_kpis_empty_state(as_viewer):
    resp = as_viewer.get("/kpis")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "No KPI targets for this period yet." in html and "emailexp kpi refresh" in html


@pytest.mark.parametrize("query, message", [("period=decade", "Choose month, week or quarter."),
                                            ("as_of=2026-02-30", "Enter the date as YYYY-MM-DD."),
                                            ("team=nobody", "There is no team “nobody”."),
                                            ("owner=ghost", "There is no person “ghost”.")])
def test_kpis_bad_params_give_a_message(as_viewer, query, message):
    resp = as_viewer.get(f"/kpis?{query}")
    assert resp.status_code == 400 and message in resp.get_data(as_text=True)


def test_kpi_dashboard_side_by_side_and_drill_down(as_viewer, app):
    from emailexp.extensions import db
    from emailexp.kpi.progress import kpi_progress

    eid = kpi_world(app)
    with app.app_context():
        progress = {(p.scope, p.scope_id, p.kpi): p for p in kpi_progress(db.session, period="month",
                                                                            as_of=date.fromisoformat(AS_OF))}
    team_meetings = progress[("team", "東京IS", "meetings")]
    assert team_meetings.actual == sum(progress[("owner", r, "meetings")].actual for r in ("rep-1", "rep-2"))
    html = as_viewer.get(f"/kpis?as_of={AS_OF}&lang=en").get_data(as_text=True)
    assert "東京IS" in html and "山田 太郎" in html and "Team total" in html
    assert "&lt;b&gt;Bold&lt;/b&gt; 花子" in html and "<b>Bold</b>" not in html
    table = re.search(r'<table class="table kpi-table">.*?</table>', html, re.S).group(0)
    meetings_row = re.search(r"<th scope=\"row\">Meetings</th>(.*?)</tr>", table, re.S).group(1)
    assert f"<strong>{int(team_meetings.actual)}</strong>" in meetings_row and "/ 20" in meetings_row
    assert re.search(r"status-(on_track|at_risk|off_track)", meetings_row)
    assert any(word in meetings_row for word in ("On track", "At risk", "Off track"))
    assert "Trends against targets" in html and 'id="trend-meetings-figure"' in html
    # drill-down: team -> person -> the sends and experiments behind the number
    html = as_viewer.get(f"/kpis?as_of={AS_OF}&team=東京IS").get_data(as_text=True)
    assert "山田 太郎" in html and "Behind the numbers" not in html
    html = as_viewer.get(f"/kpis?as_of={AS_OF}&owner=rep-1").get_data(as_text=True)
    assert "Behind the numbers" in html and f'href="/experiments/{eid}"' in html
    behind = re.search(r"Behind the numbers.*?</table>", html, re.S).group(0)
    cells = re.findall(r'<td class="num">([^<]*)</td>', behind)
    assert cells[0] == "300"  # rep-1 sent every other one of the 600 sends
    html = as_viewer.get(f"/kpis?as_of={AS_OF}&lang=ja").get_data(as_text=True)
    assert "チーム合計" in html and ("順調" in html or "未達見込み" in html or "要注意" in html)
