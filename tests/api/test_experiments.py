"""Experiments API: create/read/update, the state machine, validation naming every field, and the
shared helpers (`json_body`, `get_or_create_segment`)."""
from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa

from emailexp.models import Experiment, Segment, Variant

URL = "/api/v1/experiments"


def payload(**overrides) -> dict:
    body = {
        "name": "Subject test Q1", "hypothesis": "a question gets more opens", "timezone": "Asia/Tokyo",
        "primary_metric": "open_rate", "guardrails": ["meeting_rate"], "attribution_window_days": 14,
        "baseline_rate": 0.25, "mde_relative": 0.1, "alpha": 0.05, "power": 0.8,
        "variants": [
            {"key": "A", "subject": "Hello", "send_weekday": 1, "send_time": "09:30", "segment": "enterprise",
             "weight": 1.0, "is_control": True},
            {"key": "B", "subject": "Question?", "send_weekday": None, "send_time": None, "segment": None,
             "weight": 2.0, "is_control": False},
        ],
    }
    body.update(overrides)
    return body


def create(client, auth, **overrides):
    resp = client.post(URL, json=payload(**overrides), headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_create_returns_the_experiment_object(client, auth):
    resp = client.post(URL, json=payload(), headers=auth)
    assert resp.status_code == 201
    body = resp.get_json()
    assert resp.headers["Location"] == f"{URL}/{body['id']}"
    assert set(body) == {"id", "name", "hypothesis", "status", "timezone", "primary_metric", "guardrails",
                         "attribution_window_days", "baseline_rate", "mde_relative", "alpha", "power",
                         "created_at", "started_at", "stopped_at", "variants"}
    assert body["status"] == "draft" and body["started_at"] is None and body["stopped_at"] is None
    assert datetime.fromisoformat(body["created_at"]).utcoffset().total_seconds() == 0
    assert (body["timezone"], body["baseline_rate"], body["mde_relative"]) == ("Asia/Tokyo", 0.25, 0.1)
    a, b = body["variants"]
    assert a == {"id": a["id"], "key": "A", "subject": "Hello", "send_weekday": 1, "send_time": "09:30",
                 "segment": "enterprise", "weight": 1.0, "is_control": True}
    assert b["segment"] is None and b["send_time"] is None and b["weight"] == 2.0 and not b["is_control"]
    # The same object comes back from GET.
    assert client.get(f"{URL}/{body['id']}", headers=auth).get_json() == body


def test_defaults_and_first_variant_is_control(client, auth, app):
    body = client.post(URL, json={"name": "minimal", "variants": [{"key": "x"}, {"key": "y"}]},
                       headers=auth).get_json()
    assert body["timezone"] == app.config["TIMEZONE"]
    assert (body["primary_metric"], body["guardrails"], body["attribution_window_days"]) == ("open_rate",
                                                                                          ["meeting_rate"], 14)
    assert (body["alpha"], body["power"], body["baseline_rate"], body["mde_relative"]) == (0.05, 0.8, None, None)
    assert [v["is_control"] for v in body["variants"]] == [True, False]
    assert [v["subject"] for v in body["variants"]] == [None, None]
    assert [v["weight"] for v in body["variants"]] == [1.0, 1.0]


def test_segments_are_created_on_first_use_and_reused(client, auth, session):
    create(client, auth)
    create(client, auth, name="second")
    segments = session.scalars(sa.select(Segment)).all()
    assert [(s.key, s.name) for s in segments] == [("enterprise", "enterprise")]


@pytest.mark.parametrize(("change", "field"), [
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": 5}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"hypothesis": ["no"]}, "hypothesis"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"timezone": ""}, "timezone"),
    ({"primary_metric": "click_rate"}, "primary_metric"),
    ({"guardrails": "meeting_rate"}, "guardrails"),
    ({"guardrails": ["meeting_rate", "open_rate"]}, "guardrails[1]"),
    ({"guardrails": ["deal_rate", "deal_rate"]}, "guardrails[1]"),
    ({"attribution_window_days": 0}, "attribution_window_days"),
    ({"attribution_window_days": 366}, "attribution_window_days"),
    ({"attribution_window_days": 1.5}, "attribution_window_days"),
    ({"attribution_window_days": True}, "attribution_window_days"),
    ({"baseline_rate": 0}, "baseline_rate"),
    ({"baseline_rate": 1}, "baseline_rate"),
    ({"baseline_rate": "0.2"}, "baseline_rate"),
    ({"mde_relative": 0}, "mde_relative"),
    ({"mde_relative": 10.01}, "mde_relative"),
    ({"alpha": 0}, "alpha"),
    ({"alpha": 0.5}, "alpha"),
    ({"power": 0.5}, "power"),
    ({"power": 1}, "power"),
    ({"colour": "red"}, "colour"),
    ({"variants": None}, "variants"),
    ({"variants": [{"key": "A"}]}, "variants"),
    ({"variants": [{"key": f"v{i}"} for i in range(9)]}, "variants"),
    ({"variants": [{"key": "A"}, "B"]}, "variants[1]"),
    ({"variants": [{"key": "A"}, {"key": "A"}]}, "variants[1].key"),
    ({"variants": [{"key": "A"}, {"key": "a b"}]}, "variants[1].key"),
    ({"variants": [{"key": "A"}, {"key": "x" * 65}]}, "variants[1].key"),
    ({"variants": [{"key": "A"}, {}]}, "variants[1].key"),
    ({"variants": [{"key": "A"}, {"key": "B", "subject": "s" * 501}]}, "variants[1].subject"),
    ({"variants": [{"key": "A"}, {"key": "B", "send_weekday": 7}]}, "variants[1].send_weekday"),
    ({"variants": [{"key": "A"}, {"key": "B", "send_time": "24:00"}]}, "variants[1].send_time"),
    ({"variants": [{"key": "A"}, {"key": "B", "send_time": "9:30"}]}, "variants[1].send_time"),
    ({"variants": [{"key": "A"}, {"key": "B", "segment": "ent erprise"}]}, "variants[1].segment"),
    ({"variants": [{"key": "A"}, {"key": "B", "segment": "s" * 121}]}, "variants[1].segment"),
    ({"variants": [{"key": "A"}, {"key": "B", "weight": 0}]}, "variants[1].weight"),
    ({"variants": [{"key": "A"}, {"key": "B", "weight": -1}]}, "variants[1].weight"),
    ({"variants": [{"key": "A"}, {"key": "B", "is_control": "yes"}]}, "variants[1].is_control"),
    ({"variants": [{"key": "A", "is_control": True}, {"key": "B", "is_control": True}]}, "variants[1].is_control"),
    ({"variants": [{"key": "A"}, {"key": "B", "colour": "red"}]}, "variants[1].colour"),
])
def test_invalid_fields_are_named_and_nothing_is_written(client, auth, session, change, field):
    resp = client.post(URL, json=payload(**change), headers=auth)
    assert resp.status_code == 422, resp.get_json()
    body = resp.get_json()
    assert body["error"] == "validation_error" and body["field"] == field and body["message"]
    assert session.scalar(sa.select(sa.func.count()).select_from(Experiment)) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(Segment)) == 0


@pytest.mark.parametrize("missing", ["name", "variants"])
def test_required_fields(client, auth, missing):
    body = payload()
    del body[missing]
    resp = client.post(URL, json=body, headers=auth)
    assert resp.status_code == 422 and resp.get_json()["field"] == missing


@pytest.mark.parametrize(("data", "content_type"), [
    ("not json", "application/json"),
    ("[1, 2]", "application/json"),
    ('"text"', "application/json"),
    ("", "application/json"),
    ('{"name": NaN}', "application/json"),
    ('{"alpha": 1e400}', "application/json"),
    (b'{"name": "\xff"}', "application/json"),
    ('{"name": "x"}', "text/plain"),
])
def test_non_object_bodies_are_refused_naming_the_body(client, auth, data, content_type):
    resp = client.post(URL, data=data, content_type=content_type, headers=auth)
    assert resp.status_code == 422
    assert resp.is_json and resp.get_json()["field"] == "body" and resp.get_json()["error"] == "validation_error"


def test_requires_api_key(client):
    resp = client.post(URL, json=payload())
    assert resp.status_code == 401 and resp.get_json()["field"] == "Authorization"
    assert client.get(URL, headers={"Authorization": "Bearer eex_wrong"}).status_code == 401


def test_list_and_status_filter(client, auth):
    first = create(client, auth, name="first")
    second = create(client, auth, name="second")
    client.post(f"{URL}/{second['id']}/start", headers=auth)
    all_ = client.get(URL, headers=auth).get_json()["experiments"]
    assert [e["name"] for e in all_] == ["second", "first"]
    running = client.get(f"{URL}?status=running", headers=auth).get_json()["experiments"]
    assert [e["id"] for e in running] == [second["id"]]
    drafts = client.get(f"{URL}?status=draft", headers=auth).get_json()["experiments"]
    assert [e["id"] for e in drafts] == [first["id"]]
    assert client.get(f"{URL}?status=stopped", headers=auth).get_json() == {"experiments": []}
    bad = client.get(f"{URL}?status=paused", headers=auth)
    assert bad.status_code == 422 and bad.get_json()["field"] == "status"
    unknown = client.get(f"{URL}?page=2", headers=auth)
    assert unknown.status_code == 422 and unknown.get_json()["field"] == "page"


def test_state_machine(client, auth):
    exp = create(client, auth)
    url = f"{URL}/{exp['id']}"
    stop_draft = client.post(f"{url}/stop", headers=auth)
    assert stop_draft.status_code == 409 and stop_draft.get_json()["error"] == "invalid_state"
    started = client.post(f"{url}/start", headers=auth)
    assert started.status_code == 200
    started = started.get_json()
    assert started["status"] == "running" and started["started_at"] is not None
    again = client.post(f"{url}/start", headers=auth)
    assert again.status_code == 409 and again.get_json()["error"] == "invalid_state"
    stopped = client.post(f"{url}/stop", headers=auth).get_json()
    assert stopped["status"] == "stopped" and stopped["stopped_at"] >= stopped["started_at"]
    for action in ("start", "stop"):
        resp = client.post(f"{url}/{action}", headers=auth)
        assert resp.status_code == 409 and resp.get_json()["error"] == "invalid_state"
    assert client.get(url, headers=auth).get_json()["status"] == "stopped"


@pytest.mark.parametrize("path", ["/999", "/999/start", "/999/stop", "/999/metrics", "/99999999999999999999"])
def test_unknown_experiment_is_404(client, auth, path):
    method = client.get if path.endswith(("999", "metrics")) else client.post
    resp = method(f"{URL}{path}", headers=auth)
    assert resp.status_code == 404 and resp.is_json
    assert {"error", "message", "field"} <= resp.get_json().keys()


def test_patch_fields_and_variants_while_draft(client, auth, session):
    exp = create(client, auth)
    url = f"{URL}/{exp['id']}"
    ids = {v["key"]: v["id"] for v in exp["variants"]}
    resp = client.patch(url, json={"name": "Renamed", "baseline_rate": None, "variants": [
        {"key": "B", "subject": "Question v2?", "weight": 3, "is_control": True},
        {"key": "C", "subject": "New", "segment": "smb"}]}, headers=auth)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["name"] == "Renamed" and body["baseline_rate"] is None and body["mde_relative"] == 0.1
    assert [(v["key"], v["subject"], v["weight"], v["is_control"], v["segment"]) for v in body["variants"]] == [
        ("B", "Question v2?", 3.0, True, None), ("C", "New", 1.0, False, "smb")]
    assert body["variants"][0]["id"] == ids["B"]  # a kept key keeps its row
    keys = session.scalars(sa.select(Variant.key).where(Variant.experiment_id == exp["id"])).all()
    assert sorted(keys) == ["B", "C"]
    # An empty patch changes nothing.
    assert client.patch(url, json={}, headers=auth).get_json() == body


def test_patch_variants_refused_once_running_but_other_fields_allowed(client, auth):
    exp = create(client, auth)
    url = f"{URL}/{exp['id']}"
    client.post(f"{url}/start", headers=auth)
    resp = client.patch(url, json={"name": "still fine", "variants": [{"key": "A"}, {"key": "Z"}]}, headers=auth)
    assert resp.status_code == 409 and resp.get_json() == {
        "error": "invalid_state", "field": "variants", "message": resp.get_json()["message"]}
    assert client.get(url, headers=auth).get_json()["name"] == exp["name"]  # nothing half-applied
    ok = client.patch(url, json={"hypothesis": "updated", "attribution_window_days": 7}, headers=auth)
    assert ok.status_code == 200 and ok.get_json()["attribution_window_days"] == 7


@pytest.mark.parametrize(("change", "field"), [
    ({"name": ""}, "name"), ({"status": "running"}, "status"), ({"alpha": 2}, "alpha"),
    ({"variants": [{"key": "A"}]}, "variants"),
])
def test_patch_validation(client, auth, change, field):
    exp = create(client, auth)
    resp = client.patch(f"{URL}/{exp['id']}", json=change, headers=auth)
    assert resp.status_code == 422 and resp.get_json()["field"] == field
    assert client.get(f"{URL}/{exp['id']}", headers=auth).get_json() == exp


def test_get_or_create_segment_validates_and_is_idempotent(session):
    from emailexp.errors import ValidationError
    from emailexp.ingestion.experiments import get_or_create_segment

    first = get_or_create_segment(session, "enterprise")
    assert get_or_create_segment(session, "enterprise") is first
    assert first.id is not None and first.name == "enterprise"
    with pytest.raises(ValidationError) as info:
        get_or_create_segment(session, "bad key", field="sends[3].segment")
    assert info.value.field == "sends[3].segment"
    session.commit()
    assert session.scalar(sa.select(sa.func.count()).select_from(Segment)) == 1


def test_get_or_create_segment_survives_a_concurrent_creator(app, session):
    """Another transaction inserts the key between our SELECT and INSERT: we get its row."""
    from emailexp.extensions import db
    from emailexp.ingestion.experiments import get_or_create_segment

    real_scalar = session.scalar
    calls = {"n": 0}

    def scalar_then_race(*args, **kwargs):
        calls["n"] += 1
        result = real_scalar(*args, **kwargs)
        if calls["n"] == 1:
            session.rollback()  # release SQLite's write lock so the other writer can commit
            with db.engine.begin() as conn:
                conn.execute(sa.insert(Segment.__table__).values(key="race", name="race",
                                                                  created_at=datetime.now().astimezone()))
        return result

    session.scalar = scalar_then_race
    try:
        segment = get_or_create_segment(session, "race")
    finally:
        del session.scalar
    assert segment.key == "race" and calls["n"] == 2
    assert session.scalar(sa.select(sa.func.count()).select_from(Segment)) == 1
