"""Experiment designer: create, validation errors next to fields, add/remove rows, edit, start/stop, planner."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize


def base_form(**over):
    form = {"name": "Subject test", "hypothesis": "A question raises opens", "timezone": "Asia/Tokyo",
            "primary_metric": "open_rate", "guardrails": "meeting_rate", "attribution_window_days": "14",
            "baseline_rate": "25", "mde_relative": "10", "alpha": "5", "power": "80", "control": "0",
            "variants[0].key": "A", "variants[0].subject": "【ご案内】新機能", "variants[0].weight": "1",
            "variants[0].send_weekday": "1", "variants[0].send_time": "09:30", "variants[0].segment": "enterprise",
            "variants[1].key": "B", "variants[1].subject": "ご存じですか？", "variants[1].weight": "1",
            "variants[1].send_weekday": "", "variants[1].send_time": "", "variants[1].segment": ""}
    form.update(over)
    return form


def _experiment(app, eid):
    from emailexp.extensions import db
    from emailexp.ingestion.experiments import experiment_to_dict, get_experiment

    with app.app_context():
        return experiment_to_dict(get_experiment(db.session, eid))


def test_create_experiment(as_marketer, app):
    page = as_marketer.get("/experiments/new").get_data(as_text=True)
    assert 'name="variants[1].subject"' in page and "Add variant" in page
    resp = as_marketer.post("/experiments/new", base_form())
    assert resp.status_code == 302, resp.get_data(as_text=True)
    eid = int(re.fullmatch(r"/experiments/(\d+)", resp.location).group(1))
    exp = _experiment(app, eid)
    assert exp["name"] == "Subject test" and exp["status"] == "draft"
    assert exp["baseline_rate"] == pytest.approx(0.25) and exp["mde_relative"] == pytest.approx(0.10)
    assert exp["alpha"] == pytest.approx(0.05) and exp["power"] == pytest.approx(0.8)
    assert exp["guardrails"] == ["meeting_rate"]
    a, b = exp["variants"]
    assert (a["key"], a["is_control"], a["send_weekday"], a["send_time"], a["segment"]) == \
        ("A", True, 1, "09:30", "enterprise")
    assert (b["key"], b["is_control"], b["send_weekday"], b["send_time"], b["segment"]) == ("B", False, None, None, None)
    detail = as_marketer.get(resp.location).get_data(as_text=True)
    assert "【ご案内】新機能" in detail and f"/api/v1/experiments/{eid}/assignments" in detail
    assert f'&#34;experiment_id&#34;: {eid}' in detail  # the curl snippet carries the real id


def test_service_error_is_shown_next_to_the_field(as_marketer, app):
    resp = as_marketer.post("/experiments/new", base_form(**{"variants[1].send_time": "25:00"}))
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert re.search(r'id="v1-time" name="variants\[1\]\.send_time" type="time" value="25:00" aria-invalid="true" '
                     r'aria-describedby="err-variants-1-send_time"', html)
    assert 'id="err-variants-1-send_time">must be a local time' in html
    assert "ご存じですか？" in html  # the typed values are kept
    from emailexp.extensions import db
    from emailexp.models import Experiment

    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Experiment.id))) == 0


@pytest.mark.parametrize("field,value,needle", [
    ("variants[1].key", "A", "already used"),
    ("name", "", "name"),
    ("variants[0].weight", "abc", "Enter a number."),
    ("attribution_window_days", "400", "attribution_window_days"),
    ("timezone", "Mars/Base", "timezone"),
])
def test_validation_errors(as_marketer, field, value, needle):
    resp = as_marketer.post("/experiments/new", base_form(**{field: value}))
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    err_id = "err-" + field.replace("[", "-").replace("]", "").replace(".", "-")
    assert f'id="{err_id}"' in html and needle in html


def test_add_and_remove_variant_rows_without_js(as_marketer):
    resp = as_marketer.post("/experiments/new", base_form(action="add_variant"))
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and 'name="variants[2].key" value="C"' in html
    form = base_form(**{"variants[2].key": "C", "variants[2].subject": "third", "variants[2].weight": "2",
                        "remove_variant": "0"})
    html = as_marketer.post("/experiments/new", form).get_data(as_text=True)
    keys = re.findall(r'name="variants\[\d\]\.key" value="([^"]*)"', html)
    assert keys == ["B", "C"]
    # the removed row was the control: the first remaining row becomes it
    assert re.search(r'name="control" value="0" checked', html)


def test_edit_and_start_stop(as_marketer, app):
    eid = int(as_marketer.post("/experiments/new", base_form()).location.rsplit("/", 1)[1])
    as_marketer.get(f"/experiments/{eid}/edit")
    resp = as_marketer.post(f"/experiments/{eid}/edit", base_form(name="Renamed", control="1",
                                                                   **{"variants[1].weight": "3"}))
    assert resp.status_code == 302
    exp = _experiment(app, eid)
    assert exp["name"] == "Renamed" and exp["variants"][1]["is_control"] and exp["variants"][1]["weight"] == 3
    assert as_marketer.post(f"/experiments/{eid}/start").status_code == 302
    assert _experiment(app, eid)["status"] == "running"
    page = as_marketer.get(f"/experiments/{eid}/edit").get_data(as_text=True)
    assert "Variants cannot change once the experiment has started." in page
    assert "<fieldset class=\"variant-row\" disabled>" in page
    # a running experiment's name can change; posted variant fields are ignored
    resp = as_marketer.post(f"/experiments/{eid}/edit", base_form(name="Renamed again",
                                                                   **{"variants[0].subject": "changed"}))
    assert resp.status_code == 302
    exp = _experiment(app, eid)
    assert exp["name"] == "Renamed again" and exp["variants"][0]["subject"] == "【ご案内】新機能"
    as_marketer.get(f"/experiments/{eid}")
    assert as_marketer.post(f"/experiments/{eid}/start").status_code == 302
    assert "could not be started" in as_marketer.get(f"/experiments/{eid}").get_data(as_text=True)
    assert as_marketer.post(f"/experiments/{eid}/stop").status_code == 302
    assert _experiment(app, eid)["status"] == "stopped"
    assert as_marketer.get("/experiments/999999").status_code == 404


def _seed_sends(app, *, segment, n, opened, days_ago=10):
    from emailexp.extensions import db
    from emailexp.ingestion.experiments import get_or_create_segment
    from emailexp.models import Recipient, Send

    with app.app_context():
        seg = get_or_create_segment(db.session, segment)
        now = datetime.now(UTC)
        for i in range(n):
            r = Recipient(external_id=f"{segment}-{days_ago}-{i}", segment_id=seg.id)
            db.session.add(r)
            db.session.flush()
            sent = now - timedelta(days=days_ago, minutes=i)
            db.session.add(Send(send_id=f"{segment}-{days_ago}-s{i}", recipient_id=r.id, subject="s",
                                segment_id=seg.id, sent_at=sent, local_weekday=0, local_hour=9,
                                first_human_open_at=sent + timedelta(hours=1) if i < opened else None,
                                payload_hash="0" * 64))
        db.session.commit()


def test_plan_endpoint_matches_statsmodels(as_viewer):
    resp = as_viewer.get("/experiments/plan?baseline=0.2&mde=0.15&alpha=0.05&power=0.8&variants=2")
    assert resp.status_code == 200
    body = resp.get_json()
    effect = proportion_effectsize(0.23, 0.2)
    expected = NormalIndPower().solve_power(effect, alpha=0.05, power=0.8, ratio=1)
    # arcsine (Cohen's h) and the z-test's pooled/unpooled variance differ slightly; within 2 %
    assert body["sends_per_variant"] == pytest.approx(expected, rel=0.02)
    assert body["total_sends"] == 2 * body["sends_per_variant"]
    assert body["days"] is None and "cannot be estimated" in body["text"]["duration"]
    three = as_viewer.get("/experiments/plan?baseline=0.2&mde=0.15&variants=3").get_json()
    assert three["sends_per_variant"] > body["sends_per_variant"]  # Bonferroni over 2 comparisons


def test_plan_baseline_and_duration_from_history(as_viewer, app):
    _seed_sends(app, segment="enterprise", n=40, opened=10)   # 25 % human opens
    _seed_sends(app, segment="smb", n=20, opened=2)           # 10 %
    body = as_viewer.get("/experiments/plan?mde=0.2&segment=enterprise").get_json()
    assert body["baseline_from_history"] is True
    assert body["history_rate"] == pytest.approx(0.25) and body["history_sends"] == 40
    assert body["sends_per_day"] == pytest.approx(40 / 28)
    assert body["days"] == pytest.approx(2 * body["sends_per_variant"] / (40 / 28))
    overall = as_viewer.get("/experiments/plan?mde=0.2").get_json()
    assert overall["history_rate"] == pytest.approx(12 / 60)


@pytest.mark.parametrize("query,field", [("baseline=2", "baseline"), ("baseline=0.2&mde=abc", "mde"),
                                         ("baseline=0.2&variants=9", "variants"), ("baseline=0.2&power=0.3", "power"),
                                         ("mde=0.1", "baseline"), ("baseline=0.2&segment=a%20b", "segment")])
def test_plan_errors_name_the_field(as_viewer, query, field):
    resp = as_viewer.get(f"/experiments/plan?{query}")
    assert resp.status_code == 422 and resp.get_json()["field"] == field


def test_recalculate_button_without_js(as_marketer):
    html = as_marketer.post("/experiments/new", base_form(action="plan", baseline_rate="20",
                                                          mde_relative="15")).get_data(as_text=True)
    body = as_marketer.get("/experiments/plan?baseline=0.2&mde=0.15&variants=2").get_json()
    assert f"{body['sends_per_variant']:,} sends per variant" in html


def test_history_baseline_ignores_old_and_fresh_sends(app):
    from emailexp.extensions import db
    from emailexp.reports.history import baseline_open_rate

    _seed_sends(app, segment="enterprise", n=10, opened=5, days_ago=120)  # too old
    _seed_sends(app, segment="enterprise", n=4, opened=1, days_ago=0)     # still collecting opens
    _seed_sends(app, segment="enterprise", n=8, opened=2, days_ago=5)
    with app.app_context():
        assert baseline_open_rate(db.session, "enterprise") == (0.25, 8)
        assert baseline_open_rate(db.session, "nosuch") == (None, 0)
