"""`emailexp demo`: load thirteen weeks of simulated e-mail history with planted effects (docs/demo-data.md),
then fill the KPI store from it (built-in definitions, a full refresh, monthly targets), in one transaction."""
from __future__ import annotations

import time
from datetime import UTC, datetime

import click
from flask import current_app
from flask.cli import with_appcontext


def _parse_now(_ctx, _param, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("give an ISO 8601 datetime such as 2025-03-14T12:00:00+09:00") from None
    if parsed.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. 2025-03-14T12:00:00+09:00 (a naive time is ambiguous)")
    return parsed.astimezone(UTC)


@click.command("demo")
@click.option("--seed", default=7, show_default=True, type=int, help="Random seed; the documented effects use 7.")
@click.option("--scale", default=1.0, show_default=True, type=click.FloatRange(0.01, 10.0),
              help="Multiplies recipients and sends (1.0 = about 137,000 sends).")
@click.option("--reset/--no-reset", default=False, show_default=True,
              help="Delete the existing experiments, sends, events, conversions, recipients, owners, teams and "
                   "segments first (users and API keys are kept). Without it a non-empty database is refused.")
@click.option("--now", "now", default=None, callback=_parse_now, metavar="DATETIME",
              help="End of the simulated history (ISO 8601 with offset); default: the current time.")
@with_appcontext
def demo_command(seed: int, scale: float, reset: bool, now: datetime | None) -> None:
    """Load a simulated Japanese B2B inside-sales history with planted, documented effects."""
    from emailexp.demo.load import database_has_data, delete_demo_data, load_demo
    from emailexp.errors import EmailexpError
    from emailexp.extensions import db
    from emailexp.kpi.definitions import ensure_builtin_kpis
    from emailexp.kpi.demo import seed_demo_targets
    from emailexp.kpi.refresh import refresh_kpis

    started = time.perf_counter()
    session = db.session
    now = now or datetime.now(UTC)
    timezone = current_app.config["TIMEZONE"]
    try:
        if database_has_data(session):
            if not reset:
                raise click.ClickException("the database already has data; run `emailexp demo --reset` to delete "
                                           "it and load the demo (users and API keys are kept)")
            deleted = delete_demo_data(session)
            click.echo("Deleted " + ", ".join(f"{n:,} {t}" for t, n in deleted.items() if n))
        summary = load_demo(session, now=now, seed=seed, scale=scale,
                            tracking_secret=current_app.config["SECRET_KEY"])
        # the KPI store, in the same transaction: a reset must not leave values of the deleted history.
        # The refresh runs at the real time (its watermark); the targets are for the demo's months.
        ensure_builtin_kpis(session)
        kpi_started = time.perf_counter()
        kpis = refresh_kpis(session, timezone=timezone, full=True)
        n_targets = seed_demo_targets(session, now, timezone=timezone)
        kpi_seconds = time.perf_counter() - kpi_started
        session.commit()
    except EmailexpError as exc:
        session.rollback()
        raise click.ClickException(exc.one_line()) from None
    except BaseException:
        session.rollback()
        raise
    elapsed = time.perf_counter() - started

    click.echo(f"Loaded the demo (seed {seed}, scale {scale:g}) in {elapsed:.1f} s "
               f"(generate {summary.generate_seconds:.1f} s, insert {summary.insert_seconds:.1f} s).")
    click.echo("  " + ", ".join(f"{t} {n:,}" for t, n in summary.counts.items()))
    click.echo(f"KPI store: full refresh ({kpis.values_written:,} values) and {n_targets:,} monthly targets "
               f"in {kpi_seconds:.1f} s; see `emailexp kpi progress --date {_local_date(now, timezone)}` and "
               f"`emailexp kpi review --date {_local_date(now, timezone)}`.")
    click.echo("Experiments (planted truth -> expected verdict):")
    for exp in summary.experiments:
        click.echo(f"  #{exp.id} [{exp.status}] {exp.name}")
        click.echo(f"      {exp.truth} -> {exp.expected_verdict}")
    _echo_sample_urls(summary)
    click.echo("Next: create an API key with `emailexp create-api-key demo` and a web user with "
               "`emailexp create-user admin --role admin`. The planted effects are listed in docs/demo-data.md.")


def _local_date(now: datetime, timezone: str) -> str:
    from zoneinfo import ZoneInfo

    return now.astimezone(ZoneInfo(timezone)).date().isoformat()


def _echo_sample_urls(summary) -> None:
    from emailexp.tracking.tokens import click_url, pixel_url, tracking_key

    key = tracking_key(current_app.config["SECRET_KEY"])
    public = current_app.config["PUBLIC_URL"]
    click.echo(f"Sample send {summary.sample_send_id} (sent {summary.sample_sent_at.isoformat()}):")
    click.echo(f"  pixel URL: {pixel_url(public, key, summary.sample_send_pk, summary.sample_sent_at)}")
    for position in summary.sample_link_positions:
        click.echo(f"  click URL (link {position}): "
                   f"{click_url(public, key, summary.sample_send_pk, summary.sample_sent_at, position)}")
    click.echo("  (these URLs verify only while the server runs with the same EMAILEXP_SECRET_KEY)")
