import pytest

from emailexp import create_app


def test_production_refuses_to_start_without_secret(monkeypatch):
    monkeypatch.delenv("EMAILEXP_SECRET_KEY", raising=False)
    import importlib

    import config

    importlib.reload(config)
    try:
        with pytest.raises(RuntimeError, match="EMAILEXP_SECRET_KEY"):
            create_app("production")
    finally:
        importlib.reload(config)


def test_bad_timezone_is_refused(database):
    with pytest.raises(RuntimeError, match="EMAILEXP_TIMEZONE"):
        create_app({"SQLALCHEMY_DATABASE_URI": database.url, "TIMEZONE": "Mars/Olympus"})


def test_api_requires_bearer_key(client):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer eex_not-a-key"}):
        resp = client.get("/api/v1/experiments", headers=headers)
        assert resp.status_code == 401, headers
        assert resp.is_json and resp.get_json()["field"] == "Authorization"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
