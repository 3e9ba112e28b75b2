"""Helpers for the tracking tests: sends to track, the tracking key, the benchmark server helper."""
from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from emailexp.models import Recipient, Send, SendLink
from emailexp.tracking.tokens import tracking_key

ROOT = Path(__file__).resolve().parents[2]


def load_server_helper():
    """benchmarks/_server.py (not a package) as a module."""
    name = "emailexp_bench_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "_server.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _insert_sends(engine: sa.Engine, n: int, *, sent_at: datetime | None = None,
                 links: dict[int, str] | None = None, prefix: str = "s") -> list[int]:
    """Insert `n` sends (one recipient) with Core, optionally each with `links` {position: url};
    returns their primary keys in order."""
    sent_at = sent_at or datetime.now(UTC) - timedelta(hours=1)
    with engine.begin() as conn:
        rid = conn.execute(sa.insert(Recipient.__table__).values(external_id=f"{prefix}-lead",
                                                                   created_at=sent_at)
                           .returning(Recipient.__table__.c.id)).scalar_one()
        conn.execute(sa.insert(Send.__table__), [
            {"send_id": f"{prefix}-{i}", "recipient_id": rid, "subject": "Hello", "sent_at": sent_at,
             "local_weekday": sent_at.weekday(), "local_hour": sent_at.hour, "payload_hash": "0" * 64,
             "created_at": sent_at}
            for i in range(n)
        ])
        pks = list(conn.scalars(sa.select(Send.__table__.c.id).where(Send.__table__.c.send_id.like(f"{prefix}-%"))
                                .order_by(Send.__table__.c.id)))
        if links:
            conn.execute(sa.insert(SendLink.__table__), [
                {"send_id": pk, "position": pos, "url": url} for pk in pks for pos, url in links.items()
            ])
    return pks


@pytest.fixture
def engine(app):
    from emailexp.extensions import db

    with app.app_context():
        yield db.engine


@pytest.fixture
def key(app) -> bytes:
    return tracking_key(app.config["SECRET_KEY"])


@pytest.fixture
def insert_sends():
    """The send-making helper: insert_sends(engine, n, *, sent_at=None, links=None, prefix="s")."""
    return _insert_sends


@pytest.fixture(scope="session")
def server_helper():
    """benchmarks/_server.py: start_server(...), prepare_database(url), free_port()."""
    return load_server_helper()
