"""Web fixtures: users of each role and a signed-in test client (CSRF tokens read from the pages)."""
from __future__ import annotations

import re

import pytest

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no csrf_token in the page"
    return match.group(1)


@pytest.fixture(autouse=True)
def _reset_throttle():
    from emailexp.web.auth import throttle

    throttle._failures.clear()
    yield
    throttle._failures.clear()


@pytest.fixture
def users(app):
    from emailexp.extensions import db
    from emailexp.ingestion.users import create_user

    with app.app_context():
        for name, role in (("alice", "admin"), ("mika", "marketer"), ("victor", "viewer")):
            create_user(db.session, name, PASSWORD, role)
        db.session.commit()
    return {"admin": "alice", "marketer": "mika", "viewer": "victor"}


class WebClient:
    """The Flask test client plus the CSRF token of the last page it loaded."""

    def __init__(self, client):
        self.client = client
        self.token = None

    def get(self, url, **kw):
        resp = self.client.get(url, **kw)
        match = CSRF_RE.search(resp.get_data(as_text=True))
        if match:
            self.token = match.group(1)
        return resp

    def post(self, url, data=None, *, csrf=True, **kw):
        data = dict(data or {})
        if csrf:
            if self.token is None:
                self.get("/login")
            data.setdefault("csrf_token", self.token)
        return self.client.post(url, data=data, **kw)

    def login(self, username, password=PASSWORD):
        self.get("/login")
        return self.post("/login", {"username": username, "password": password})


@pytest.fixture
def web(client):
    return WebClient(client)


def _signed_in(client, users, role):
    w = WebClient(client)
    resp = w.login(users[role])
    assert resp.status_code == 302, resp.get_data(as_text=True)
    w.get("/")
    return w


@pytest.fixture
def as_marketer(client, users):
    return _signed_in(client, users, "marketer")


@pytest.fixture
def as_viewer(client, users):
    return _signed_in(client, users, "viewer")


@pytest.fixture
def as_admin(client, users):
    return _signed_in(client, users, "admin")
