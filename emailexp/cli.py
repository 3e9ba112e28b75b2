"""The `emailexp` command: a Flask CLI group, so `emailexp db upgrade` works too."""
from __future__ import annotations

import os
import sys

import click
from flask import Flask
from flask.cli import FlaskGroup, with_appcontext


def _create_app():
    from emailexp import create_app

    return create_app(os.environ.get("EMAILEXP_ENV", "development"))


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=True, load_dotenv=False)
def main() -> None:
    """emailexp: open-rate experiments for e-mail campaigns."""


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to bind.")
@click.option("--workers", default=None, type=click.IntRange(1, 64),
              help="Worker processes (default: 2 x CPU cores + 1).")
def serve_command(host: str, port: int, workers: int | None) -> None:
    """Serve the app with gunicorn and production settings."""
    argv = gunicorn_argv(host, port, workers)
    os.environ.setdefault("EMAILEXP_ENV", "production")
    if not os.environ.get("EMAILEXP_SECRET_KEY"):
        raise click.ClickException("EMAILEXP_SECRET_KEY is not set; production mode refuses to start without it "
                                   "(python -c 'import secrets; print(secrets.token_hex(32))')")
    os.execvp(argv[0], argv)


def gunicorn_argv(host: str, port: int, workers: int | None) -> list[str]:
    """The production server command: the settings in `emailexp/gunicorn_conf.py` plus the bind
    address and the worker count. benchmarks/ and the process-level tests serve with exactly
    these; the WSGI target is always the last item."""
    workers = workers or (2 * (os.cpu_count() or 1) + 1)
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    return [gunicorn, "--config", "python:emailexp.gunicorn_conf", "--bind", f"{host}:{port}",
            "--workers", str(workers), "wsgi:app"]


@click.command("create-api-key")
@click.argument("name")
@with_appcontext
def create_api_key_command(name: str) -> None:
    """Create an API key called NAME and print it once (only its hash is stored)."""
    from emailexp.extensions import db
    from emailexp.ingestion.apikeys import create_api_key
    from emailexp.errors import EmailexpError

    try:
        key = create_api_key(db.session, name)
        db.session.commit()
    except EmailexpError as exc:
        db.session.rollback()
        raise click.ClickException(exc.one_line()) from None
    click.echo(key)


def register(app: Flask) -> None:
    app.cli.add_command(serve_command)
    app.cli.add_command(create_api_key_command)
    from emailexp.commands.imports import import_group
    app.cli.add_command(import_group)
    from emailexp.commands.analysis import analyze_command, insights_command
    app.cli.add_command(analyze_command)
    app.cli.add_command(insights_command)
    from emailexp.commands.users import create_user_command
    app.cli.add_command(create_user_command)
    from emailexp.commands.demo import demo_command
    app.cli.add_command(demo_command)
    from emailexp.commands.kpi import kpi_group
    app.cli.add_command(kpi_group)
