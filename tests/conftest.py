"""Shared fixtures: the flaskr set (app, client, runner) on every configured database.

Database tests run on SQLite, and on PostgreSQL too when EMAILEXP_TEST_POSTGRES_URL is set
(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test). Each PostgreSQL test gets a fresh schema
that is dropped afterwards, so the server is left as it was found.
"""
from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

POSTGRES_URL = os.environ.get("EMAILEXP_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


class Database:
    """A fresh, empty database for one test: a SQLite file or a PostgreSQL schema."""

    def __init__(self, backend: str, tmp_path):
        self.backend = backend
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp_path / 'test.db'}"
            self.schema = None
        else:
            self.schema = f"t_{uuid.uuid4().hex[:12]}"
            admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{self.schema}"')
            admin.dispose()
            sep = "&" if "?" in POSTGRES_URL else "?"
            self.url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{self.schema}"

    def drop(self) -> None:
        if self.schema:
            admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            admin.dispose()


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path):
    db = Database(request.param, tmp_path)
    yield db
    db.drop()


@pytest.fixture
def app(database, tmp_path):
    from emailexp import create_app
    from emailexp.extensions import db

    app = create_app({
        "SQLALCHEMY_DATABASE_URI": database.url,
        "PUBLIC_URL": "http://t.example.test",
        "TIMEZONE": "Asia/Tokyo",
    })
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def session(app):
    """A SQLAlchemy Session inside an app context, for service tests."""
    from emailexp.extensions import db

    with app.app_context():
        yield db.session


@pytest.fixture
def api_key(app):
    from emailexp.extensions import db
    from emailexp.ingestion.apikeys import create_api_key

    with app.app_context():
        key = create_api_key(db.session, "tests")
        db.session.commit()
    return key


@pytest.fixture
def auth(api_key):
    return {"Authorization": f"Bearer {api_key}"}
