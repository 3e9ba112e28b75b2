"""`emailexp kpi ...`: refresh the KPI store, import/export values and targets as CSV, show progress.

Schedule the feed with cron, e.g.
    */10 * * * *  cd /srv/emailexp && .venv/bin/emailexp kpi refresh          # incremental
    30 3 * * *    cd /srv/emailexp && .venv/bin/emailexp kpi refresh --full   # nightly safety net
"""
from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from flask import current_app
from flask.cli import with_appcontext


@click.group("kpi")
def kpi_group() -> None:
    """KPI store: refresh from tracked data, CSV import/export, targets, progress."""


def _date(ctx, param, value):
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD") from None


def _fail(message: str) -> None:
    from emailexp.extensions import db

    db.session.rollback()
    click.echo(message, err=True)
    sys.exit(1)


@kpi_group.command("refresh")
@click.option("--since", callback=_date, help="Also recompute every period touching dates >= DATE (YYYY-MM-DD).")
@click.option("--full", is_flag=True, help="Recompute every period.")
@with_appcontext
def refresh_command(since: date | None, full: bool) -> None:
    """Compute the tracked KPIs into the store (incremental unless --full; the first run is full)."""
    from emailexp.extensions import db
    from emailexp.kpi.refresh import refresh_kpis

    result = refresh_kpis(db.session, timezone=current_app.config["TIMEZONE"], since=since, full=full)
    db.session.commit()
    click.echo(f"{'full' if result.full else 'incremental'} refresh: {result.periods} periods, "
               f"{result.values_written} values, {result.derived_written} derived, {result.seconds:.2f} s")


@kpi_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--targets", "kind", flag_value="targets", help="FILE holds targets (kpi,scope,scope_id,period,period_start,target).")
@click.option("--values", "kind", flag_value="values", default=True,
              help="FILE holds external values (kpi,scope,scope_id,period,period_start,value) [default].")
@with_appcontext
def import_command(file: Path, kind: str) -> None:
    """Import external KPI values (or --targets) from a CSV file; a bad row imports nothing."""
    from emailexp.extensions import db
    from emailexp.kpi.csvio import CsvError, import_targets_csv, import_values_csv

    try:
        result = (import_targets_csv if kind == "targets" else import_values_csv)(db.session, file)
    except CsvError as exc:
        _fail(str(exc))
    db.session.commit()
    click.echo(f"{file}: {result.created} created, {result.updated} updated, {result.unchanged} unchanged")


@kpi_group.command("export")
@click.option("--targets", "kind", flag_value="targets", help="Export targets instead of values.")
@click.option("--values", "kind", flag_value="values", default=True, help="Export values [default].")
@click.option("--kpi", default=None, help="Comma-separated KPI keys.")
@click.option("--scope", default=None, help="workspace, team, owner, team:<name> or owner:<id>.")
@click.option("--period", type=click.Choice(["day", "iso_week", "month", "quarter"]), default=None)
@click.option("--from", "date_from", callback=_date, help="First period start (YYYY-MM-DD).")
@click.option("--to", "date_to", callback=_date, help="Last period start (YYYY-MM-DD).")
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-", help="Default: stdout.")
@with_appcontext
def export_command(kind, kpi, scope, period, date_from, date_to, output) -> None:
    """Export KPI values (or --targets) as CSV."""
    from emailexp.errors import EmailexpError
    from emailexp.extensions import db
    from emailexp.kpi.csvio import export_targets_csv, export_values_csv

    try:
        if kind == "targets":
            export_targets_csv(db.session, output, period=period, date_from=date_from, date_to=date_to)
        else:
            export_values_csv(db.session, output, kpi=kpi, scope=scope, period=period, date_from=date_from,
                              date_to=date_to)
    except EmailexpError as exc:
        _fail(exc.one_line())


@kpi_group.command("progress")
@click.option("--period", type=click.Choice(["day", "iso_week", "month", "quarter"]), default="month",
              show_default=True)
@click.option("--date", "as_of", callback=_date, help="As of this date (default: today in the workspace timezone).")
@click.option("--scope", default=None, help="workspace, team, owner, team:<name> or owner:<id>.")
@click.option("--business-days", is_flag=True, help="Pace by Monday-Friday days instead of calendar days.")
@with_appcontext
def progress_command(period: str, as_of: date | None, scope: str | None, business_days: bool) -> None:
    """Show actual vs target, pace, forecast and status for every target of the period."""
    from emailexp.errors import EmailexpError
    from emailexp.extensions import db
    from emailexp.kpi.progress import kpi_progress

    as_of = as_of or datetime.now(ZoneInfo(current_app.config["TIMEZONE"])).date()
    try:
        items = kpi_progress(db.session, period=period, as_of=as_of, scope=scope, business_days=business_days)
    except EmailexpError as exc:
        _fail(exc.one_line())
    if not items:
        click.echo(f"no targets for the {period} containing {as_of}; set them with `emailexp kpi import --targets`")
        return
    click.echo(f"{'scope':<24} {'kpi':<24} {'actual':>12} {'target':>12} {'achieved':>9} {'forecast':>12}  status")
    for p in items:
        def fmt(x):
            if x is None:
                return "-"
            return f"{x:.1%}" if p.formula == "ratio" else f"{x:,.0f}"
        ach = f"{p.achievement:.0%}" if p.achievement is not None else "-"
        who = p.scope + (f":{p.scope_id}" if p.scope_id else "")
        click.echo(f"{who:<24} {p.kpi:<24} {fmt(p.actual):>12} {fmt(p.target):>12} {ach:>9} "
                   f"{fmt(p.forecast):>12}  {p.status or '-'}")


@kpi_group.command("review")
@click.option("--date", "as_of", callback=_date, help="As of this date (default: today).")
@with_appcontext
def review_command(as_of: date | None) -> None:
    """List review flags (KPI met but the goal behind it is not)."""
    from emailexp.extensions import db
    from emailexp.kpi.review import review_flags

    as_of = as_of or datetime.now(ZoneInfo(current_app.config["TIMEZONE"])).date()
    flags = review_flags(db.session, as_of=as_of,
                         attribution_window_days=current_app.config.get("ATTRIBUTION_WINDOW_DAYS", 14))
    for f in flags:
        click.echo(f"{f.kind}  {f.scope}{':' + f.scope_id if f.scope_id else ''}  {f.period} {f.period_start}  "
                   f"{f.message_ja}")
    if not flags:
        click.echo("no review flags")
