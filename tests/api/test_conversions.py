"""POST /api/v1/conversions: attribution, deals, idempotency, atomicity."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from emailexp.models import Conversion, Experiment, Recipient, Variant

URL = "/api/v1/conversions"
NOW = datetime.now(UTC).replace(microsecond=0)


def at(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).astimezone().isoformat()


def add_sends(client, auth, *sends):
    rows = [{"send_id": s, "recipient_id": r, "subject": "Hi", "sent_at": at(d), **extra}
            for s, r, d, *rest in sends for extra in [rest[0] if rest else {}]]
    resp = client.post("/api/v1/sends", json={"sends": rows}, headers=auth)
    assert resp.status_code == 201, resp.get_json()


def post(client, auth, rows):
    return client.post(URL, json={"conversions": rows}, headers=auth)


def conv(cid, recipient="lead-1", days_ago=0.0, **extra):
    return {"conversion_id": cid, "kind": "meeting", "recipient_id": recipient, "occurred_at": at(days_ago), **extra}


def stored(app):
    from emailexp.extensions import db

    with app.app_context():
        return {c.conversion_id: (c.kind, c.amount, c.attribution)
                for c in db.session.scalars(sa.select(Conversion))}


def test_attribution_explicit_window_and_unattributed(client, auth, app):
    add_sends(client, auth, ("s-old", "lead-1", 12), ("s-new", "lead-1", 4), ("s-later", "lead-1", 0.5),
              ("s-far", "lead-2", 30))
    resp = post(client, auth, [conv("c-1", send_id="s-old", days_ago=1), conv("c-2", days_ago=1),
                               conv("c-3", recipient="lead-2"), conv("c-4", recipient="lead-3")])
    assert resp.status_code == 201
    assert resp.get_json() == {"created": 4, "existing": 0, "conversions": [
        {"conversion_id": "c-1", "send_id": "s-old", "attribution": "explicit"},
        {"conversion_id": "c-2", "send_id": "s-new", "attribution": "window"},
        {"conversion_id": "c-3", "send_id": None, "attribution": "unattributed"},
        {"conversion_id": "c-4", "send_id": None, "attribution": "unattributed"},
    ]}


def test_window_comes_from_config_and_from_the_experiment(client, auth, app):
    from emailexp.extensions import db

    app.config["ATTRIBUTION_WINDOW_DAYS"] = 7
    with app.app_context():
        experiment = Experiment(name="t", status="running", timezone="UTC", attribution_window_days=30,
                                variants=[Variant(key="A", subject="A", is_control=True)])
        db.session.add(experiment)
        db.session.commit()
        experiment_id = experiment.id
    add_sends(client, auth, ("s-plain", "lead-1", 10),
              ("s-exp", "lead-2", 25, {"experiment_id": experiment_id, "variant": "A"}))
    items = post(client, auth, [conv("c-1"), conv("c-2", recipient="lead-2")]).get_json()["conversions"]
    assert [(i["send_id"], i["attribution"]) for i in items] == [(None, "unattributed"), ("s-exp", "window")]


def test_send_of_another_recipient_is_rejected_and_nothing_written(client, auth, app):
    add_sends(client, auth, ("s-1", "lead-1", 2))
    resp = post(client, auth, [conv("c-1"), conv("c-2", recipient="lead-2", send_id="s-1")])
    assert resp.status_code == 422
    body = resp.get_json()
    assert (body["field"], body["index"]) == ("conversions[1].send_id", 1)
    assert stored(app) == {}


def test_deals_with_amounts(client, auth, app):
    resp = post(client, auth, [conv("d-1", kind="deal", amount=1200000, owner_id="rep-7"),
                               conv("d-2", kind="deal"), conv("m-1")])
    assert resp.status_code == 201
    assert stored(app) == {"d-1": ("deal", Decimal("1200000.00"), "unattributed"),
                           "d-2": ("deal", None, "unattributed"), "m-1": ("meeting", None, "unattributed")}


def test_retry_conflict_and_atomicity(client, auth, app):
    from emailexp.extensions import db

    add_sends(client, auth, ("s-1", "lead-1", 2))
    rows = [conv(f"c-{i}", recipient="lead-1", days_ago=1) for i in range(20)]
    first = post(client, auth, rows)
    retry = post(client, auth, rows)
    assert first.status_code == 201 and retry.status_code == 200
    assert retry.get_json() == {"created": 0, "existing": 20, "conversions": first.get_json()["conversions"]}
    conflict = post(client, auth, [conv("c-new"), {**rows[5], "kind": "deal"}])
    assert conflict.status_code == 409 and conflict.get_json()["index"] == 1
    assert conflict.get_json()["field"] == "conversions[1]"
    bad = post(client, auth, [conv(f"n-{i}") for i in range(9)] + [conv("n-9", occurred_at="2026-12-01T10:00")])
    assert bad.status_code == 422 and bad.get_json()["field"] == "conversions[9].occurred_at"
    assert len(stored(app)) == 20
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Recipient)) == 1


@pytest.mark.parametrize(("payload", "status", "field"), [
    ({"conversions": [conv("c")] * 10_001}, 413, "conversions"),
    ({"conversion": []}, 422, "conversion"),
    ({}, 422, "conversions"),
    ({"conversions": [conv("c", kind="won")]}, 422, "conversions[0].kind"),
    ({"conversions": [conv("c", kind="deal", amount="lots")]}, 422, "conversions[0].amount"),
    ({"conversions": [conv("c", recipient="x@example.com")]}, 422, "conversions[0].recipient_id"),
])
def test_bad_batches(client, auth, payload, status, field):
    resp = client.post(URL, json=payload, headers=auth)
    assert resp.status_code == status
    assert resp.get_json()["field"] == field
