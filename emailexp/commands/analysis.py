"""`emailexp analyze EXPERIMENT` and `emailexp insights`: the API's analyses as readable tables."""
from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import with_appcontext

from emailexp.errors import EmailexpError


def _pct(x, digits=2):
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def _pp(x, digits=2):
    return "—" if x is None else f"{100 * x:+.{digits}f}pp"


def _pp_raw(x, digits=2):
    """A value already in percentage points."""
    return "—" if x is None else f"{x:+.{digits}f}pp"


def _p(x):
    if x is None:
        return "—"
    return "<0.0001" if x < 1e-4 else f"{x:.4f}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def _resolve_experiment(session, ref: str) -> int:
    import sqlalchemy as sa

    from emailexp.models import Experiment

    if ref.isdigit():
        return int(ref)
    ids = session.scalars(sa.select(Experiment.id).where(Experiment.name == ref)).all()
    if len(ids) != 1:
        raise click.ClickException(f"EXPERIMENT: no single experiment named {ref!r}; give its id "
                                   "(see GET /api/v1/experiments)" if not ids else
                                   f"EXPERIMENT: {len(ids)} experiments are named {ref!r}; give the id")
    return ids[0]


@click.command("analyze")
@click.argument("experiment")
@click.option("--opens", type=click.Choice(["human", "all"]), default="human", show_default=True,
              help="Count human opens only, or every open including machine prefetches.")
@click.option("--correction", type=click.Choice(["holm", "bh"]), default="holm", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the same JSON as GET /experiments/{id}/analysis.")
@with_appcontext
def analyze_command(experiment: str, opens: str, correction: str, as_json: bool) -> None:
    """Analyse EXPERIMENT (id or exact name): rates, lifts, adjusted p-values, verdict."""
    from emailexp.extensions import db
    from emailexp.reports.experiment_report import build_experiment_report

    try:
        report = build_experiment_report(db.session, _resolve_experiment(db.session, experiment),
                                         opens=opens, correction=correction)
    except EmailexpError as exc:
        raise click.ClickException(exc.one_line()) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return
    click.echo(f"Experiment {report.experiment_id}: {report.name}  [{report.status}]  "
               f"opens counted: {report.opens}")
    a = report.analysis
    if a is None:
        click.echo("No analysis yet: " + ("; ".join(report.notes) or "no sends recorded."))
        return
    comp = {c.variant_key: c for c in a.comparisons}
    best = {b.key: b.prob_best for b in a.bayesian.arms}
    rows = []
    for arm in a.arms:
        c = comp.get(arm.key)
        rate = arm.open_rate if a.metric == "open_rate" else arm.meeting_rate
        rows.append([
            arm.key + (" (control)" if arm.is_control else ""), f"{arm.sends:,}",
            f"{_pct(rate.rate)} [{_pct(rate.ci_lower)}, {_pct(rate.ci_upper)}]",
            "—" if c is None else f"{_pp(c.diff)} [{_pp(c.diff_ci_lower)}, {_pp(c.diff_ci_upper)}]",
            "—" if c is None else f"{_pct(c.lift, 1)} [{_pct(c.lift_ci_lower, 1)}, {_pct(c.lift_ci_upper, 1)}]",
            "—" if c is None else _p(c.p_value_adjusted),
            _pct(best.get(arm.key), 1),
            f"{_pct(arm.meeting_rate.rate, 3)}",
        ])
    click.echo(_table(["variant", "sends", f"{a.metric} (95% CI)", "difference", "lift", f"p ({a.correction})",
                       "P(best)", "meeting rate"], rows))
    click.echo(f"Sample ratio: p = {_p(a.srm.p_value)}" + ("  MISMATCH" if a.srm.mismatch else "  ok"))
    for s in a.sequential:
        click.echo(f"Sequential ({s.method}): {s.variant_key} vs {s.control_key}: always-valid p = "
                   f"{_p(s.p_value)}, boundary crossed: {'yes' if s.crossed else 'no'}")
    click.echo("")
    click.echo(f"Verdict: {a.verdict.kind} — {a.verdict.message}")


@click.command("insights")
@click.option("--from", "date_from", help="First send date (YYYY-MM-DD), inclusive.")
@click.option("--to", "date_to", help="Last send date (YYYY-MM-DD), inclusive.")
@click.option("--segment", help="Only this segment key.")
@click.option("--metric", type=click.Choice(["open_rate", "meeting_rate"]), default="open_rate", show_default=True)
@click.option("--top", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--json", "as_json", is_flag=True, help="Print the same JSON as GET /insights.")
@with_appcontext
def insights_command(date_from, date_to, segment, metric, top, as_json) -> None:
    """Which weekday, hour band, segment and subject features open best (regression over all sends)."""
    from emailexp.extensions import db
    from emailexp.reports.insights import build_insights, parse_insights_query

    tz = current_app.config["TIMEZONE"]
    try:
        query = parse_insights_query({"from": date_from, "to": date_to, "segment": segment, "metric": metric},
                                     timezone=tz)
        result = build_insights(db.session, query, timezone=tz)
    except EmailexpError as exc:
        raise click.ClickException(exc.one_line()) from None
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    m = result.model
    if m is None:
        click.echo(f"No model: {result.message}")
        return
    click.echo(f"{metric}: {m.n_sends:,} sends in {m.n_cells:,} cells; dispersion {m.dispersion:.2f} "
               f"(scale used {m.scale_used:.2f}); {m.n_campaign_effects} campaign effects")
    click.echo("")
    click.echo("Top conditions per segment (predicted rate, 95% CI):")
    for seg, conds in m.top_conditions.items():
        for i, c in enumerate(conds[:top], 1):
            click.echo(f"  {seg:<16} {i}. {c.weekday_name} "
                       f"{c.hour_band:<10} {_pct(c.rate)} [{_pct(c.ci_lower)}, {_pct(c.ci_upper)}]")
    click.echo("")
    click.echo("Average marginal effects vs reference (percentage points):")
    rows = [[e.factor, str(e.level), str(e.reference), f"{_pp_raw(e.effect_pp)} [{_pp_raw(e.ci_lower_pp)}, {_pp_raw(e.ci_upper_pp)}]"]
            for e in m.marginal_effects if e.factor != "subject"]
    click.echo(_table(["factor", "level", "reference", "effect (95% CI)"], rows))
    click.echo("")
    click.echo("Likelihood-ratio tests per factor:")
    click.echo(_table(["factor", "df", "F", "p"],
                      [[t.factor, f"{t.df_num}, {t.df_denom}", f"{t.f_statistic:.2f}" if t.f_statistic is not None else "—", _p(t.p_value)]
                       for t in m.factor_tests]))
