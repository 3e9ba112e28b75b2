"""CLI (CSV import/export, refresh) and the hand-written migration."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa

from emailexp.kpi.definitions import BUILTIN_KPIS
from emailexp.models import Owner, Team
from emailexp.models.kpi import KpiDefinition, KpiTarget, KpiValue

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "0002_kpi_store.py"


def _people(app):
    from emailexp.extensions import db

    with app.app_context():
        t = Team(name="東京IS")
        db.session.add(t)
        db.session.flush()
        db.session.add(Owner(external_id="rep-7", name="山田", team_id=t.id))
        db.session.commit()


def _count(app, model):
    from emailexp.extensions import db

    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_csv_bad_row_names_file_line_field_and_writes_nothing(app, runner, tmp_path):
    _people(app)
    path = tmp_path / "calls.csv"
    path.write_text("kpi,scope,scope_id,period,period_start,value\n"
                    "connected_calls,owner,rep-7,day,2026-12-01,12\n"
                    "connected_calls,owner,rep-7,day,2026-12-02,twelve\n", encoding="utf-8")
    result = runner.invoke(args=["kpi", "import", str(path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(f"{path}:3: value: ")
    assert _count(app, KpiValue) == 0
    path.write_text("kpi,scope,scope_id,period,period_start,value\n"
                    "connected_calls,owner,rep-7,day,2026-12-01,12\n"
                    "connected_calls,team,東京IS,month,2026-12-01,50\n", encoding="utf-8")
    ok = runner.invoke(args=["kpi", "import", str(path)])
    assert ok.exit_code == 0, ok.output
    assert "2 created" in ok.output
    again = runner.invoke(args=["kpi", "import", str(path)])
    assert "0 created, 0 updated, 2 unchanged" in again.output
    out = runner.invoke(args=["kpi", "export", "--kpi", "connected_calls", "--period", "month"])
    lines = out.output.strip().splitlines()
    assert lines[0].startswith("kpi,scope,scope_id,period,period_start,numerator")
    assert any(line.startswith("connected_calls,team,東京IS,month,2026-12-01,50.0") for line in lines)


def test_targets_csv_round_trip_and_progress(app, runner, tmp_path):
    _people(app)
    path = tmp_path / "targets.csv"
    path.write_text("kpi,scope,scope_id,period,period_start,target\n"
                    "meetings,team,東京IS,month,2026-12-01,20\n"
                    "meeting_rate,owner,rep-7,month,2026-12-15,0.05\n", encoding="utf-8")
    bad = runner.invoke(args=["kpi", "import", "--targets", str(path)])
    assert bad.exit_code == 1 and f"{path}:3: period_start: " in bad.output
    assert _count(app, KpiTarget) == 0
    path.write_text(path.read_text(encoding="utf-8").replace("2026-12-15", "2026-12-01"), encoding="utf-8")
    assert runner.invoke(args=["kpi", "import", "--targets", str(path)]).exit_code == 0
    exported = runner.invoke(args=["kpi", "export", "--targets"]).output
    assert "meetings,team,東京IS,month,2026-12-01,20.0" in exported
    assert runner.invoke(args=["kpi", "refresh"]).exit_code == 0
    prog = runner.invoke(args=["kpi", "progress", "--date", "2026-12-10"])
    assert prog.exit_code == 0 and "team:東京IS" in prog.output and "off_track" in prog.output


def test_migration_seed_list_equals_the_service_list():
    spec = importlib.util.spec_from_file_location("m0002", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.BUILTIN_KPIS == BUILTIN_KPIS
    assert (module.revision, module.down_revision) == ("0002", "0001")


def test_upgrade_head_creates_and_seeds_the_kpi_tables(database):
    """`db upgrade` on an empty database: the KPI tables match the models and the built-ins are seeded."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from flask_migrate import upgrade

    from emailexp import create_app
    from emailexp.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": database.url, "TIMEZONE": "Asia/Tokyo"})
    with app.app_context():
        upgrade()
        keys = list(db.session.scalars(sa.select(KpiDefinition.key).order_by(KpiDefinition.id)))
        assert keys == [k["key"] for k in BUILTIN_KPIS]
        db.session.remove()             # end the read transaction (SQLite: BEGIN IMMEDIATE holds the lock)
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(ctx, db.metadata)
        mine = [d for d in diffs if "kpi_" in repr(d)]
        assert mine == []
        db.session.remove()
        db.engine.dispose()
