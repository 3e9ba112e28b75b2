"""Helpers that build sends and conversions directly with the ORM (no ingestion API needed)."""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from emailexp.models import Conversion, Owner, Recipient, Send, Team

JST = ZoneInfo("Asia/Tokyo")


class World:
    def __init__(self, session):
        self.session = session
        self.n = 0
        self.teams: dict[str, Team] = {}
        self.owners: dict[str, Owner] = {}

    def team(self, name: str) -> Team:
        if name not in self.teams:
            self.teams[name] = Team(name=name)
            self.session.add(self.teams[name])
            self.session.flush()
        return self.teams[name]

    def owner(self, ext: str, team: str | None = None) -> Owner:
        if ext not in self.owners:
            o = Owner(external_id=ext, name=ext, team_id=self.team(team).id if team else None)
            self.session.add(o)
            self.session.flush()
            self.owners[ext] = o
        return self.owners[ext]

    def send(self, sent_at: datetime, owner: str | None = None, *, opened: datetime | bool | None = None,
             clicked: datetime | None = None) -> Send:
        self.n += 1
        r = Recipient(external_id=f"lead-{self.n}")
        self.session.add(r)
        self.session.flush()
        if opened is True:
            opened = sent_at + timedelta(hours=1)
        local = sent_at.astimezone(JST)
        s = Send(send_id=f"s-{self.n}", recipient_id=r.id, subject="件名", sent_at=sent_at,
                 owner_id=self.owners[owner].id if owner else None, local_weekday=local.weekday(),
                 local_hour=local.hour, first_open_at=opened or None, first_human_open_at=opened or None,
                 first_click_at=clicked, created_at=sent_at, payload_hash=hashlib.sha256(str(self.n).encode()).hexdigest())
        self.session.add(s)
        self.session.flush()
        return s

    def conversion(self, send: Send, kind: str, occurred_at: datetime, amount=None,
                   created_at: datetime | None = None) -> Conversion:
        """created_at defaults to occurred_at (recorded when it happened); pass now for late data."""
        self.n += 1
        c = Conversion(conversion_id=f"c-{self.n}", kind=kind, recipient_id=send.recipient_id, send_id=send.id,
                       attribution="explicit", amount=amount, occurred_at=occurred_at,
                       created_at=created_at or occurred_at,
                       payload_hash=hashlib.sha256(str(self.n).encode()).hexdigest())
        self.session.add(c)
        self.session.flush()
        return c


def jst(*args) -> datetime:
    return datetime(*args, tzinfo=JST).astimezone(UTC)


@pytest.fixture
def app(app):
    """The shared `app` (db.create_all) plus the built-in KPI definitions, which a migrated database gets
    from migration 0002: no request seeds them."""
    from emailexp.extensions import db
    from emailexp.kpi.definitions import ensure_builtin_kpis

    with app.app_context():
        ensure_builtin_kpis(db.session)
        db.session.commit()
    return app


@pytest.fixture
def world(session):
    return World(session)
