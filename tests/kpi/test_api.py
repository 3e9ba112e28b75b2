"""API under /api/v1/kpis: definitions, external values (idempotent, atomic), targets, progress."""
from __future__ import annotations


import sqlalchemy as sa

from emailexp.models import Owner, Team
from emailexp.models.kpi import KpiValue


def setup_people(app):
    from emailexp.extensions import db

    with app.app_context():
        t = Team(name="東京IS")
        db.session.add(t)
        db.session.flush()
        db.session.add_all([Owner(external_id="rep-7", name="山田 太郎", team_id=t.id),
                            Owner(external_id="rep-8", name="佐藤 花子", team_id=t.id)])
        db.session.commit()


def count_values(app):
    from emailexp.extensions import db

    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(KpiValue))


def test_definitions_list_builtins_and_create_custom(client, auth):
    resp = client.get("/api/v1/kpis/definitions", headers=auth)
    assert resp.status_code == 200
    keys = {d["key"]: d for d in resp.get_json()["definitions"]}
    assert keys["connected_calls"]["counting_rule_ja"].startswith("顧客と通話がつながった場合に1件")
    assert keys["meeting_contribution_share"]["numerator_key"] == "meetings"
    body = {"key": "connect_rate", "name_ja": "通話接続率", "counting_rule_ja": "通話回数 / 架電数",
            "formula": "ratio", "source": "derived", "numerator_key": "connected_calls",
            "denominator_key": "calls_made"}
    resp = client.post("/api/v1/kpis/definitions", json=body, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    assert client.post("/api/v1/kpis/definitions", json=body, headers=auth).status_code == 409
    bad = client.post("/api/v1/kpis/definitions", json={**body, "key": "x2", "numerator_key": "win_rate"},
                      headers=auth)
    assert bad.status_code == 422 and bad.get_json()["field"] == "numerator_key"


def test_external_values_are_idempotent_and_roll_up(app, client, auth):
    setup_people(app)
    rows = [{"kpi": "connected_calls", "scope": "owner", "scope_id": "rep-7", "period": "day",
             "period_start": "2026-12-01", "value": 12},
            {"kpi": "connected_calls", "scope": "owner", "scope_id": "rep-8", "period": "day",
             "period_start": "2026-12-02", "value": 5},
            {"kpi": "org_meetings", "scope": "workspace", "period": "month", "period_start": "2026-12-01",
             "value": 40}]
    first = client.post("/api/v1/kpis/values", json={"values": rows}, headers=auth)
    assert first.status_code == 201, first.get_json()
    assert first.get_json() == {"created": 3, "updated": 0, "unchanged": 0}
    n = count_values(app)
    again = client.post("/api/v1/kpis/values", json={"values": rows}, headers=auth)
    assert again.status_code == 200 and again.get_json() == {"created": 0, "updated": 0, "unchanged": 3}
    assert count_values(app) == n
    got = client.get("/api/v1/kpis/values?kpi=connected_calls&scope=team:東京IS&period=month", headers=auth)
    assert [(v["value"], v["source"]) for v in got.get_json()["values"]] == [(17.0, "rollup")]
    # the derived share exists where org_meetings was fed (no meetings yet: 0 / 40)
    share = client.get("/api/v1/kpis/values?kpi=meeting_contribution_share", headers=auth).get_json()["values"]
    assert [(s["scope"], s["period"], s["numerator"], s["denominator"]) for s in share] == \
        [("workspace", "month", 0.0, 40.0)]
    # a changed value updates in place
    rows[0]["value"] = 13
    upd = client.post("/api/v1/kpis/values", json={"values": rows}, headers=auth)
    assert upd.get_json() == {"created": 0, "updated": 1, "unchanged": 2}
    got = client.get("/api/v1/kpis/values?kpi=connected_calls&scope=team:東京IS&period=month", headers=auth)
    assert got.get_json()["values"][0]["value"] == 18.0


def test_a_bad_row_names_index_and_field_and_writes_nothing(app, client, auth):
    setup_people(app)
    good = {"kpi": "calls_made", "scope": "owner", "scope_id": "rep-7", "period": "day",
            "period_start": "2026-12-01", "value": 30}
    cases = [
        ({**good, "period_start": "2026-12-02", "period": "iso_week"}, "values[1].period_start"),
        ({**good, "value": -1}, "values[1].value"),
        ({**good, "value": 2.5}, "values[1].value"),
        ({**good, "scope_id": "rep-99"}, "values[1].scope_id"),
        ({**good, "kpi": "meetings"}, "values[1].kpi"),
        ({**good, "kpi": "nope"}, "values[1].kpi"),
        ({**good, "period_start": "2026-13-01"}, "values[1].period_start"),
        (dict(good), "values[1]"),  # duplicate key of row 0
    ]
    for bad, field in cases:
        resp = client.post("/api/v1/kpis/values", json={"values": [good, bad]}, headers=auth)
        assert resp.status_code == 422, (bad, resp.get_json())
        body = resp.get_json()
        assert (body["field"], body["index"]) == (field, 1), body
        assert body["message"]
        assert count_values(app) == 0


def test_targets_and_progress(app, client, auth):
    setup_people(app)
    client.post("/api/v1/kpis/values", json={"values": [
        {"kpi": "connected_calls", "scope": "owner", "scope_id": "rep-7", "period": "day",
         "period_start": f"2026-11-{d:02d}", "value": 10} for d in range(1, 11)]}, headers=auth)
    resp = client.put("/api/v1/kpis/targets", json={"targets": [
        {"kpi": "connected_calls", "scope": "owner", "scope_id": "rep-7", "period": "month",
         "period_start": "2026-11-01", "target": 300},
        {"kpi": "connected_calls", "scope": "team", "scope_id": "東京IS", "period": "month",
         "period_start": "2026-11-01", "target": 200}]}, headers=auth)
    assert resp.status_code == 200 and resp.get_json()["created"] == 2
    bad = client.put("/api/v1/kpis/targets", json={"targets": [
        {"kpi": "meeting_rate", "scope": "workspace", "period": "month", "period_start": "2026-11-01",
         "target": 25}]}, headers=auth)
    assert bad.status_code == 422 and bad.get_json()["field"] == "targets[0].target"
    prog = client.get("/api/v1/kpis/progress?period=month&date=2026-11-10", headers=auth)
    assert prog.status_code == 200
    items = {(p["scope"], p["scope_id"]): p for p in prog.get_json()["progress"]}
    owner = items[("owner", "rep-7")]
    assert owner["actual"] == 100 and owner["elapsed"] == 10 / 30
    assert owner["forecast"] == 300 and owner["status"] == "on_track"
    team = items[("team", "東京IS")]
    assert team["actual"] == 100 and team["status"] == "on_track" and team["achievement"] == 0.5
    assert client.get("/api/v1/kpis/progress?period=year", headers=auth).get_json()["field"] == "period"
    assert client.get("/api/v1/kpis/progress?bogus=1", headers=auth).status_code == 422


def test_refresh_endpoint_and_values_filter(app, client, auth):
    resp = client.post("/api/v1/kpis/refresh", json={"full": True}, headers=auth)
    assert resp.status_code == 200 and resp.get_json()["full"] is True
    assert client.get("/api/v1/kpis/values?from=2026-99-01", headers=auth).get_json()["field"] == "from"
    assert client.get("/api/v1/kpis/values?scope=galaxy", headers=auth).get_json()["field"] == "scope"
    assert client.get("/api/v1/kpis/review?date=2026-12-04", headers=auth).get_json()["flags"] == []
    assert client.get("/api/v1/kpis/values").status_code == 401


def test_get_definitions_writes_nothing(app, client, auth):
    """Built-ins come from the migration (or ensure_builtin_kpis); a GET never seeds them."""
    from emailexp.extensions import db
    from emailexp.models.kpi import KpiDefinition

    with app.app_context():
        db.session.execute(sa.delete(KpiDefinition).where(KpiDefinition.key == "inbound_calls"))
        db.session.commit()
    keys = {d["key"] for d in client.get("/api/v1/kpis/definitions", headers=auth).get_json()["definitions"]}
    assert "inbound_calls" not in keys and "connected_calls" in keys
    with app.app_context():
        assert db.session.scalar(sa.select(KpiDefinition.id).where(KpiDefinition.key == "inbound_calls")) is None
