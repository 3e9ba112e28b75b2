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
    resp = client.get("/api/v1/experiments")
    assert resp.status_code in (401, 404)
    assert resp.is_json
    assert resp.get_json()["field"] in ("Authorization", None)
