"""Migrations are reviewed code: one head, and `upgrade head` on an empty database gives the models' schema."""
from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from emailexp import create_app

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def test_single_head():
    script = ScriptDirectory.from_config(_alembic_config())
    assert len(script.get_heads()) == 1, script.get_heads()


def _alembic_config() -> Config:
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def test_upgrade_head_matches_models(database):
    from flask_migrate import downgrade, upgrade

    from emailexp.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": database.url})
    with app.app_context():
        upgrade(directory=str(MIGRATIONS))
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, db.metadata)
        assert diff == [], diff
        # and the way back works too, so a bad deploy can be rolled back
        downgrade(directory=str(MIGRATIONS), revision="base")
        with db.engine.connect() as conn:
            tables = set(db.inspect(conn).get_table_names()) - {"alembic_version"}
        assert tables == set()
        db.engine.dispose()
