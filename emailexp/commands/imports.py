"""`emailexp import sends FILE` and `emailexp import conversions FILE`: CSV import.

The file is checked completely first, so a bad line imports nothing; then it is imported in
batches of --batch-size rows, one transaction each. Re-running after an interruption is safe:
rows already imported are recognised by their id and skipped. The CSV formats are documented in
`emailexp.ingestion.csv_import`.
"""
from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext


@click.group("import")
def import_group() -> None:
    """Import sends or conversions from CSV files (UTF-8, header line; see --help of each)."""


def _run(kind: str, path: Path, batch_size: int) -> None:
    from emailexp.extensions import db
    from emailexp.ingestion.csv_import import CsvImportError, check_csv, import_csv
    from emailexp.tracking.tokens import tracking_key

    config = current_app.config
    options = {"batch_size": batch_size, "now": datetime.now(UTC), "workspace_tz": config["TIMEZONE"],
               "default_window_days": config.get("ATTRIBUTION_WINDOW_DAYS", 14)}
    session = db.session
    try:
        total = check_csv(session, path, kind, **options)
        session.rollback()  # the check only read; end its transaction before writing
        created = existing = 0
        with click.progressbar(length=total, label=f"Importing {kind}") as bar:
            for rows, new, old in import_csv(session, path, kind, public_url=config["PUBLIC_URL"],
                                             tracking_key=tracking_key(config["SECRET_KEY"]), **options):
                session.commit()
                created, existing = created + new, existing + old
                bar.update(rows)
    except CsvImportError as exc:
        session.rollback()
        click.echo(str(exc), err=True)
        sys.exit(1)
    except Exception:
        session.rollback()
        raise
    click.echo(f"{path}: {total} {kind} rows, {created} created, {existing} already imported")


_BATCH_SIZE = click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 10_000),
                           help="Rows per transaction.")
_FILE = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@import_group.command("sends")
@_FILE
@_BATCH_SIZE
@with_appcontext
def import_sends_command(file: Path, batch_size: int) -> None:
    """Import sends from FILE.

    Header: send_id,recipient_id,segment,owner_id,experiment_id,variant,subject,campaign,sent_at,links
    (links separated by spaces; sent_at ISO 8601 with offset, e.g. 2026-12-04T09:30:00+09:00).
    """
    _run("sends", file, batch_size)


@import_group.command("conversions")
@_FILE
@_BATCH_SIZE
@with_appcontext
def import_conversions_command(file: Path, batch_size: int) -> None:
    """Import conversions (meetings and deals) from FILE.

    Header: conversion_id,kind,recipient_id,send_id,occurred_at,amount,owner_id
    (kind: meeting or deal; amount only for deals).
    """
    _run("conversions", file, batch_size)
