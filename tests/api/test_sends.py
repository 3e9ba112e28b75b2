"""POST /api/v1/sends: idempotency, conflicts, atomicity, validation of every field, HTML."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from emailexp.models import Experiment, Owner, Recipient, Segment, Send, SendLink, Variant
from emailexp.tracking.tokens import read_click_token, read_open_token, tracking_key

URL = "/api/v1/sends"
TABLES = (Send, SendLink, Recipient, Segment, Owner)


def row(i, **fields):
    base = {"send_id": f"s-{i:04d}", "recipient_id": f"lead-{i % 13}", "segment": ("smb", "ent")[i % 2],
            "owner_id": f"rep-{i % 3}", "subject": f"件名 {i}", "campaign": "nl-2026-12",
            "sent_at": "2026-12-01T09:30:00+09:00", "links": [f"https://example.com/p/{i}", "https://example.com/x"]}
    return {**base, **fields}


def counts(app):
    from emailexp.extensions import db

    with app.app_context():
        return {m.__name__: db.session.scalar(sa.select(sa.func.count()).select_from(m)) for m in TABLES}


def post(client, auth, rows):
    return client.post(URL, json={"sends": rows}, headers=auth)


def test_requires_an_api_key(client):
    resp = client.post(URL, json={"sends": []})
    assert resp.status_code == 401 and resp.get_json()["field"] == "Authorization"


def test_created_then_identical_retry_returns_the_same_answer(client, auth, app):
    rows = [row(i) for i in range(30)]
    first = post(client, auth, rows)
    assert first.status_code == 201
    body = first.get_json()
    assert (body["created"], body["existing"]) == (30, 0)
    assert [item["send_id"] for item in body["sends"]] == [r["send_id"] for r in rows]
    before = counts(app)
    retry = post(client, auth, rows)
    assert retry.status_code == 200
    assert retry.get_json() == {"created": 0, "existing": 30, "sends": body["sends"]}
    assert counts(app) == before == {"Send": 30, "SendLink": 60, "Recipient": 13, "Segment": 2, "Owner": 3}


def test_overlapping_batches(client, auth, app):
    first = post(client, auth, [row(i) for i in range(0, 60)]).get_json()
    second = post(client, auth, [row(i) for i in range(40, 100)])
    assert second.status_code == 201
    body = second.get_json()
    assert (body["created"], body["existing"]) == (40, 20)
    assert body["sends"][:20] == first["sends"][40:]
    assert counts(app)["Send"] == 100


def test_tokens_in_the_answer_point_at_the_stored_sends(client, auth, app):
    from emailexp.extensions import db

    item = post(client, auth, [row(7)]).get_json()["sends"][0]
    key = tracking_key(app.config["SECRET_KEY"])
    with app.app_context():
        send = db.session.scalar(sa.select(Send))
    prefix = app.config["PUBLIC_URL"]
    opened = read_open_token(key, item["pixel_url"].removeprefix(f"{prefix}/o/").removesuffix(".gif"))
    assert (opened.send_pk, opened.sent_at) == (send.id, send.sent_at)
    clicks = [read_click_token(key, link["tracked_url"].removeprefix(f"{prefix}/c/")) for link in item["links"]]
    assert [(c.send_pk, c.position) for c in clicks] == [(send.id, 0), (send.id, 1)]
    assert [link["url"] for link in item["links"]] == ["https://example.com/p/7", "https://example.com/x"]
    assert "html" not in item


def test_same_send_id_with_other_content_is_a_conflict_naming_the_row(client, auth, app):
    post(client, auth, [row(i) for i in range(5)])
    before = counts(app)
    resp = post(client, auth, [row(10), row(11), row(3, subject="changed")])
    assert resp.status_code == 409
    body = resp.get_json()
    assert (body["error"], body["field"], body["index"]) == ("conflict", "sends[2]", 2)
    assert "s-0003" in body["message"]
    assert counts(app) == before


def test_one_bad_row_of_100_rejects_the_whole_batch(client, auth, app):
    rows = [row(i) for i in range(100)]
    rows[57]["sent_at"] = "2026-12-01 09:30"
    resp = post(client, auth, rows)
    assert resp.status_code == 422
    body = resp.get_json()
    assert (body["error"], body["field"], body["index"]) == ("validation_error", "sends[57].sent_at", 57)
    assert counts(app) == dict.fromkeys(counts(app), 0)


def _future():
    return (datetime.now(UTC) + timedelta(days=2)).isoformat()


@pytest.mark.parametrize(("change", "field"), [
    ({"send_id": None}, "send_id"),
    ({"send_id": ""}, "send_id"),
    ({"send_id": 17}, "send_id"),
    ({"send_id": "x" * 201}, "send_id"),
    ({"recipient_id": None}, "recipient_id"),
    ({"recipient_id": ["lead"]}, "recipient_id"),
    ({"recipient_id": "r" * 201}, "recipient_id"),
    ({"recipient_id": "taro.yamada@example.co.jp"}, "recipient_id"),
    ({"segment": "has space"}, "segment"),
    ({"segment": 3}, "segment"),
    ({"owner_id": "o" * 121}, "owner_id"),
    ({"experiment_id": "3", "variant": "A"}, "experiment_id"),
    ({"experiment_id": True, "variant": "A"}, "experiment_id"),
    ({"variant": "A"}, "experiment_id"),
    ({"subject": None}, "subject"),
    ({"subject": "s" * 501}, "subject"),
    ({"subject": 5}, "subject"),
    ({"campaign": "c" * 201}, "campaign"),
    ({"sent_at": None}, "sent_at"),
    ({"sent_at": "yesterday"}, "sent_at"),
    ({"sent_at": "2026-13-01T09:30:00+09:00"}, "sent_at"),
    ({"sent_at": "2026-12-01T09:30:00"}, "sent_at"),
    ({"sent_at": 1764549000}, "sent_at"),
    ({"sent_at": "1969-12-31T00:00:00Z"}, "sent_at"),
    ("future", "sent_at"),
    ({"links": "https://example.com"}, "links"),
    ({"links": ["javascript:alert(1)"]}, "links[0]"),
    ({"links": ["https://ok.example", "ftp://example.com/f"]}, "links[1]"),
    ({"links": ["/relative/path"]}, "links[0]"),
    ({"links": [f"https://e.com/{i}" for i in range(51)]}, "links"),
    ({"links": ["https://e.com/a", "https://e.com/a"]}, "links[1]"),
    ({"html": 5}, "html"),
    ({"sentAt": "2026-12-01T09:30:00+09:00"}, "sentAt"),
])
def test_every_field_is_validated(client, auth, app, change, field):
    bad = row(1, **({"sent_at": _future()} if change == "future" else change))
    resp = post(client, auth, [row(0), bad])
    assert resp.status_code == 422, resp.get_json()
    body = resp.get_json()
    assert (body["field"], body["index"]) == (f"sends[1].{field}", 1)
    assert body["message"]
    assert counts(app)["Send"] == 0


def test_e_mail_address_as_recipient_gets_a_clear_message(client, auth):
    body = post(client, auth, [row(0, recipient_id="a@b.example")]).get_json()
    assert "e-mail address" in body["message"]


@pytest.mark.parametrize(("payload", "field", "status"), [
    ({"sends": [{"send_id": "x"}] * 10_001}, "sends", 413),
    ({"sends": {"send_id": "x"}}, "sends", 422),
    ({"rows": []}, "rows", 422),
    ({"sends": [], "dry_run": True}, "dry_run", 422),
    ({"sends": ["not an object"]}, "sends[0]", 422),
])
def test_batch_shape(client, auth, payload, field, status):
    resp = client.post(URL, json=payload, headers=auth)
    assert resp.status_code == status
    assert resp.get_json()["field"] == field


def test_body_must_be_json(client, auth):
    resp = client.post(URL, data="send_id=1", headers=auth, content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 422 and resp.get_json()["field"] == "body"


def test_empty_batch_is_fine(client, auth):
    resp = post(client, auth, [])
    assert resp.status_code == 200 and resp.get_json() == {"created": 0, "existing": 0, "sends": []}


def test_html_is_instrumented(client, auth):
    html = ('<html><body><a href="https://example.com/p/1">Pricing</a> '
            '<a href="https://example.com/unlisted">Other</a></body></html>')
    item = post(client, auth, [row(1, html=html)]).get_json()["sends"][0]
    tracked = item["links"][0]["tracked_url"]
    assert item["html"] == (f'<html><body><a href="{tracked}">Pricing</a> '
                            '<a href="https://example.com/unlisted">Other</a>'
                            f'<img src="{item["pixel_url"]}" width="1" height="1" alt="" style="display:none">'
                            "</body></html>")


def test_links_come_from_the_html_when_not_given(client, auth, app):
    from emailexp.extensions import db

    html = ('<p><a href="https://e.com/b">b</a><a href="mailto:x@y.z">m</a><a href=\'https://e.com/a?x=1&amp;y=2\'>'
            'a</a><a href="https://e.com/b">b again</a></p>')
    first = post(client, auth, [row(1, links=None, html=html)])
    item = first.get_json()["sends"][0]
    assert [link["url"] for link in item["links"]] == ["https://e.com/b", "https://e.com/a?x=1&y=2"]
    b, a = (link["tracked_url"] for link in item["links"])
    assert item["html"] == (f'<p><a href="{b}">b</a><a href="mailto:x@y.z">m</a><a href="{a}">a</a>'
                            f'<a href="{b}">b again</a></p><img src="{item["pixel_url"]}" width="1" height="1" '
                            'alt="" style="display:none">')
    with app.app_context():
        assert db.session.scalars(sa.select(SendLink.url).order_by(SendLink.position)).all() == [
            "https://e.com/b", "https://e.com/a?x=1&y=2"]
    # The retry re-instruments the same HTML from the stored links: the same answer.
    assert post(client, auth, [row(1, links=None, html=html)]).get_json()["sends"] == [item]
    # Different HTML for the same send_id is different content.
    assert post(client, auth, [row(1, links=None, html=html + " ")]).status_code == 409


def test_experiment_send_must_be_running(client, auth, app):
    from emailexp.extensions import db

    with app.app_context():
        experiment = Experiment(name="t", status="draft", timezone="Asia/Tokyo",
                                variants=[Variant(key="A", subject="Subject A", is_control=True)])
        db.session.add(experiment)
        db.session.commit()
        experiment_id = experiment.id
    resp = post(client, auth, [row(0, experiment_id=experiment_id, variant="A", subject=None)])
    assert resp.status_code == 422 and resp.get_json()["field"] == "sends[0].experiment_id"
    with app.app_context():
        db.session.get(Experiment, experiment_id).status = "running"
        db.session.commit()
    resp = post(client, auth, [row(0, experiment_id=experiment_id, variant="A", subject=None)])
    assert resp.status_code == 201
    with app.app_context():
        assert db.session.scalar(sa.select(Send.subject)) == "Subject A"
