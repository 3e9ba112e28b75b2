"""PUT/GET /api/v1/owners: upsert owners and their teams."""
from __future__ import annotations

import sqlalchemy as sa

from emailexp.models import Owner, Team


def test_upsert_creates_teams_and_updates_owners(client, auth, app):
    from emailexp.extensions import db

    # An owner first seen on a send is named after its id until the CRM names it.
    client.post("/api/v1/sends", headers=auth, json={"sends": [
        {"send_id": "s-1", "recipient_id": "lead-1", "owner_id": "rep-7", "subject": "Hi",
         "sent_at": "2026-12-01T09:30:00+09:00"}]})
    assert client.get("/api/v1/owners", headers=auth).get_json() == {
        "owners": [{"id": "rep-7", "name": "rep-7", "team": None}]}
    resp = client.put("/api/v1/owners", headers=auth, json={"owners": [
        {"id": "rep-7", "name": "山田 太郎", "team": "東京IS"}, {"id": "rep-8", "name": "佐藤 花子", "team": "東京IS"}]})
    assert resp.status_code == 200
    assert resp.get_json()["owners"][0] == {"id": "rep-7", "name": "山田 太郎", "team": "東京IS"}
    client.put("/api/v1/owners", headers=auth, json={"owners": [{"id": "rep-8", "name": "佐藤 花子", "team": "大阪FS"},
                                                                {"id": "rep-9", "name": "No Team"}]})
    assert client.get("/api/v1/owners", headers=auth).get_json()["owners"] == [
        {"id": "rep-7", "name": "山田 太郎", "team": "東京IS"},
        {"id": "rep-8", "name": "佐藤 花子", "team": "大阪FS"},
        {"id": "rep-9", "name": "No Team", "team": None}]
    with app.app_context():
        assert sorted(db.session.scalars(sa.select(Team.name))) == ["大阪FS", "東京IS"]
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Owner)) == 3


def test_invalid_owner_rows_change_nothing(client, auth):
    resp = client.put("/api/v1/owners", headers=auth, json={"owners": [{"id": "rep-1", "name": "A"},
                                                                         {"id": "rep-2", "team": "X"}]})
    assert resp.status_code == 422
    assert (resp.get_json()["field"], resp.get_json()["index"]) == ("owners[1].name", 1)
    assert client.get("/api/v1/owners", headers=auth).get_json() == {"owners": []}
    resp = client.put("/api/v1/owners", headers=auth, json={"owners": [{"id": "rep-1", "name": "A", "email": "x"}]})
    assert resp.get_json()["field"] == "owners[0].email"
    assert client.get("/api/v1/owners").status_code == 401
