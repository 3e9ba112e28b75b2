"""Sign-in, roles, CSRF, throttling, the create-user command."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

PASSWORD = "correct horse battery"  # the `users` fixture's password


def test_pages_need_sign_in(client):
    for url in ("/", "/experiments", "/experiments/new", "/insights", "/kpis", "/experiments/plan"):
        resp = client.get(url)
        assert resp.status_code == 302 and resp.location.startswith("/login?next="), url


def test_sign_in_and_out(web, users, app):
    resp = web.login("mika")
    assert resp.status_code == 302 and resp.location == "/"
    page = web.get("/").get_data(as_text=True)
    assert "mika" in page and "Marketer" in page
    resp = web.post("/logout")
    assert resp.status_code == 302
    assert web.client.get("/").status_code == 302
    from emailexp.extensions import db
    from emailexp.models import User

    with app.app_context():
        assert db.session.scalar(sa.select(User.last_login_at).where(User.username == "mika")) is not None


def test_wrong_password_message_and_no_session(web, users):
    resp = web.login("mika", "wrong password!")
    assert resp.status_code == 401
    assert "The username or password is wrong." in resp.get_data(as_text=True)
    assert web.client.get("/").status_code == 302
    unknown = web.login("nobody", "wrong password!")
    assert unknown.status_code == 401  # same answer for unknown users


def test_login_without_csrf_token_is_refused(web, users):
    web.get("/login")
    resp = web.post("/login", {"username": "mika", "password": PASSWORD}, csrf=False)
    assert resp.status_code == 400
    assert "form has expired" in resp.get_data(as_text=True)
    assert web.client.get("/").status_code == 302


def test_post_routes_without_csrf_are_refused(as_marketer):
    resp = as_marketer.post("/experiments/new", {"name": "x"}, csrf=False)
    assert resp.status_code == 400
    resp = as_marketer.post("/logout", csrf=False)
    assert resp.status_code == 400


def test_session_is_renewed_on_sign_in(client, users, web):
    w = web
    w.get("/login?lang=ja")
    with client.session_transaction() as sess:
        sess["planted"] = "by an attacker"
    w.post("/login", {"username": "mika", "password": PASSWORD})
    with client.session_transaction() as sess:
        assert "planted" not in sess
        assert sess["lang"] == "ja"  # the language choice survives
        assert isinstance(sess["user_id"], int)


def test_open_redirect_is_refused(web, users):
    web.get("/login")
    resp = web.post("/login", {"username": "mika", "password": PASSWORD, "next": "//evil.example/x"})
    assert resp.location == "/"
    web.get("/")  # the new session has a new CSRF token
    web.post("/logout")
    web.get("/login")
    resp = web.post("/login", {"username": "mika", "password": PASSWORD, "next": "/experiments?status=draft"})
    assert resp.location == "/experiments?status=draft"


def test_failed_logins_are_throttled_per_username(web, users):
    for _ in range(5):
        assert web.login("mika", "bad password").status_code == 401
    resp = web.login("mika")  # even the right password waits now
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in resp.get_data(as_text=True)
    assert web.login("victor").status_code == 302  # other usernames are not affected


def test_throttle_window_expires():
    from emailexp.web.auth import LoginThrottle

    now = [1000.0]
    t = LoginThrottle(max_failures=2, window=60, clock=lambda: now[0])
    t.failed("A"); t.failed("a")
    assert t.retry_after("a") == pytest.approx(60)
    now[0] += 61
    assert t.retry_after("A") == 0


def test_viewer_cannot_change_anything(as_viewer, app):
    from emailexp.extensions import db
    from emailexp.ingestion.experiments import create_experiment

    with app.app_context():
        exp = create_experiment(db.session, {"name": "E", "variants": [{"key": "A"}, {"key": "B"}]})
        db.session.commit()
        eid = exp.id
    page = as_viewer.get(f"/experiments/{eid}").get_data(as_text=True)
    assert "Start experiment" not in page and f"/experiments/{eid}/edit" not in page
    assert "Design an experiment" not in as_viewer.get("/").get_data(as_text=True)
    assert as_viewer.get("/experiments/new").status_code == 403
    assert as_viewer.get(f"/experiments/{eid}/edit").status_code == 403
    for url in ("/experiments/new", f"/experiments/{eid}/edit", f"/experiments/{eid}/start",
                f"/experiments/{eid}/stop"):
        assert as_viewer.post(url, {"name": "hacked"}).status_code == 403, url
    with app.app_context():
        from emailexp.models import Experiment

        assert db.session.get(Experiment, eid).status == "draft"
        assert db.session.get(Experiment, eid).name == "E"


def test_security_headers(as_marketer):
    resp = as_marketer.get("/")
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_session_cookie_flags(web, users):
    resp = web.login("mika")
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_create_user_command(runner, app):
    result = runner.invoke(args=["create-user", "newbie", "--role", "viewer", "--password-stdin"],
                           input="a long enough password\n")
    assert result.exit_code == 0, result.output
    from emailexp.extensions import db
    from emailexp.ingestion.users import authenticate

    with app.app_context():
        user = authenticate(db.session, "newbie", "a long enough password")
        assert user is not None and user.role == "viewer"
        assert user.password_hash.startswith("scrypt:")
        assert authenticate(db.session, "newbie", "wrong") is None
    dup = runner.invoke(args=["create-user", "newbie", "--password-stdin"], input="a long enough password\n")
    assert dup.exit_code == 1 and "already exists" in dup.output
    short = runner.invoke(args=["create-user", "other", "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and re.search(r"password: .*at least 10", short.output)
