"""The experiment report page and its CSV/JSON exports.

Everything is computed by `emailexp.reports.experiment_report` (aggregated in the database);
this module only arranges it for the page: per-variant rows, charts (charts.py), banners and
the switches `?opens=human|all` and `?correction=holm|bh`. The cumulative open rate is
cumulated here from the report's daily increments (a few rows per day).
"""
from __future__ import annotations

import csv
import io
import json
import threading
from collections import OrderedDict, defaultdict
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Response, abort, current_app, jsonify, render_template, request
from flask_babel import format_date
from flask_babel import gettext as _

from emailexp.errors import NotFoundError
from emailexp.extensions import db
from emailexp.ingestion import experiments as svc
from emailexp.models import Conversion, OpenEvent, Segment, Send
from emailexp.reports.experiment_report import (build_experiment_report, opens_by_hours_since_send,
                                                user_agent_families)
from emailexp.web import bp, charts
from emailexp.web.auth import login_required
from emailexp.web.designer import send_snippets
from emailexp.web.texts import (interval, machine_reason_label, metric_name, money, num, pct, pp, pvalue,
                                signed_pct, verdict_headline, verdict_sentence)

OPENS = ("human", "all")
CORRECTIONS = ("holm", "bh")
#: Buckets of the "opens by hours since send" chart: (label, first hour, last hour inclusive).
HOUR_BUCKETS = ((0, 0), (1, 1), (2, 2), (3, 3), (4, 5), (6, 11), (12, 23), (24, 47), (48, 71), (72, 72))
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def report_options(args) -> tuple[str, str, list[str]]:
    """`opens` and `correction` from the query string; unknown values fall back with a message."""
    problems = []
    opens = args.get("opens") or "human"
    if opens not in OPENS:
        problems.append(_("“opens” must be “human” or “all”; showing human opens."))
        opens = "human"
    correction = args.get("correction") or "holm"
    if correction not in CORRECTIONS:
        problems.append(_("“correction” must be “holm” or “bh”; showing Holm."))
        correction = "holm"
    return opens, correction, problems


def _experiment_or_404(experiment_id: int) -> dict:
    try:
        return svc.experiment_to_dict(svc.get_experiment(db.session, experiment_id))
    except NotFoundError:
        abort(404)


def variant_rows(experiment: dict, report) -> list[dict]:
    """One dict per variant with every number the table and the CSV show (raw values, not text)."""
    analysis = report.analysis
    subjects = {v["key"]: v["subject"] for v in experiment["variants"]}
    summaries = {a.key: a for a in analysis.arms} if analysis else {}
    comparisons = {c.variant_key: c for c in analysis.comparisons} if analysis else {}
    bayes = {a.key: a for a in analysis.bayesian.arms} if analysis else {}
    rows = []
    for arm in report.arms:
        s, c, b = summaries.get(arm.key), comparisons.get(arm.key), bayes.get(arm.key)
        rows.append({
            "key": arm.key, "subject": subjects.get(arm.key) or "", "is_control": arm.is_control,
            "sends": arm.sends, "opens": arm.opens,
            "open_rate": s.open_rate.rate if s else (arm.opens / arm.sends if arm.sends else None),
            "open_rate_ci_lower": s.open_rate.ci_lower if s else None,
            "open_rate_ci_upper": s.open_rate.ci_upper if s else None,
            "diff": c.diff if c else None,
            "lift": c.lift if c else None, "lift_ci_lower": c.lift_ci_lower if c else None,
            "lift_ci_upper": c.lift_ci_upper if c else None,
            "p_value": c.p_value if c else None, "p_value_adjusted": c.p_value_adjusted if c else None,
            "significant": bool(c.significant) if c else False, "test": c.test if c else None,
            "prob_best": b.prob_best if b else None, "expected_loss": b.expected_loss if b else None,
            "meetings": arm.meetings,
            "meeting_rate": s.meeting_rate.rate if s else (arm.meetings / arm.sends if arm.sends else None),
            "meeting_rate_ci_lower": s.meeting_rate.ci_lower if s else None,
            "meeting_rate_ci_upper": s.meeting_rate.ci_upper if s else None,
            "deals": arm.deals, "deal_amount": arm.deal_amount,
        })
    return rows


def cumulative_series(report) -> list[charts.Series]:
    """Cumulative open rate per variant per local day, from the daily increments."""
    by_key: dict[str, list] = defaultdict(list)
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for d in sorted(report.daily, key=lambda d: d.day):
        t = totals[d.key]
        t[0] += d.sends
        t[1] += d.opens
        by_key[d.key].append((d.day, t[1] / t[0] if t[0] else None))
    return [charts.Series(a.key, by_key.get(a.key, [])) for a in report.arms]


def hour_bucket_labels() -> list[str]:
    """Short bucket labels (the axis title says "hours"): 0, 1, ..., 4–5, ..., 72+."""
    return [f"{lo}+" if lo == 72 else (str(lo) if lo == hi else f"{lo}–{hi}") for lo, hi in HOUR_BUCKETS]


def hours_series(histogram: dict[str, list[int]], keys: list[str]) -> list[charts.Series]:
    """Share of each variant's opened sends by hours from send to first open, in buckets."""
    out = []
    for key in keys:
        counts = histogram.get(key) or []
        total = sum(counts)
        points = []
        for i, (lo, hi) in enumerate(HOUR_BUCKETS):
            n = sum(counts[lo:hi + 1])
            points.append((i, n / total if total else None))
        out.append(charts.Series(key, points))
    return out


def _day(value) -> str:
    return format_date(value, "M/d")


def build_charts(experiment: dict, report, histogram) -> dict:
    analysis = report.analysis
    out = {}
    metric = metric_name(experiment["primary_metric"])
    if analysis and analysis.comparisons:
        rows = [charts.ForestRow(c.variant_key, c.lift, c.lift_ci_lower, c.lift_ci_upper,
                                 _("adjusted p %(p)s", p=pvalue(c.p_value_adjusted)))
                for c in analysis.comparisons]
        out["forest"] = charts.forest_plot(
            rows, chart_id="lift", title=_("Lift against the control (%(metric)s)", metric=metric),
            desc=_("Relative lift of each variant's %(metric)s over the control %(control)s with its %(level)s "
                   "interval; the dashed line is no difference.", metric=metric, control=analysis.control_key,
                   level=pct(1 - analysis.alpha, 0)),
            axis_label=_("Relative lift against the control"),
            headers=(_("Variant"), _("Lift"), _("Lower"), _("Upper"), _("Adjusted p-value")), fmt=signed_pct)
    series = cumulative_series(report)
    if any(s.points for s in series):
        out["cumulative"] = charts.line_chart(
            series, chart_id="cumulative", title=_("Cumulative open rate by day"),
            desc=_("Open rate of all sends so far, per variant, by local send day (%(opens)s opens).",
                   opens=_("human") if report.opens == "human" else _("all")),
            x_label=_("Send day"), y_label=_("Open rate"), fmt=lambda v: pct(v, 1), x_fmt=_day)
    keys = [a.key for a in report.arms]
    if any(sum(v) for v in histogram.values()):
        out["hours"] = charts.bar_chart(
            hour_bucket_labels(), hours_series(histogram, keys), chart_id="hours",
            title=_("When opens happen: hours from send to first open"),
            desc=_("Share of each variant's opened sends by the hours between sending and the first open."),
            x_label=_("Hours after sending (h)"), y_label=_("Share of opened sends"), fmt=lambda v: pct(v, 0))
    return out


class ReportCache:
    """Reports already computed, reused while the data behind them cannot have changed.

    At 1M sends a report costs ~2.5-3 s to compute (see benchmarks/report_page.py), mostly the report
    service's GROUP BY over the experiment's sends. Every change that can alter a report inserts a row
    (a send, an open event - implied opens of clicks included - or a conversion) or edits the
    experiment, so the key is the experiment's own state plus the highest id of those three tables
    (primary-key lookups, microseconds) and the current UTC hour (the report's "last 7 days" send
    rate moves with the clock). Per app and per process, least recently used first out.
    """

    def __init__(self, size: int = 32):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def _cache() -> ReportCache | None:
    if not current_app.config.get("REPORT_CACHE", True):
        return None
    return current_app.extensions.setdefault("emailexp_report_cache", ReportCache())


def data_fingerprint(experiment: dict) -> tuple:
    """What a report depends on: the experiment (status, variants, weights...) and the newest rows."""
    watermarks = db.session.execute(sa.select(
        sa.select(sa.func.max(Send.id)).scalar_subquery(),
        sa.select(sa.func.max(OpenEvent.id)).scalar_subquery(),
        sa.select(sa.func.max(Conversion.id)).scalar_subquery())).one()
    hour = datetime.now(UTC).strftime("%Y-%m-%d %H")
    return (json.dumps(experiment, sort_keys=True, default=str), tuple(watermarks), hour)


def _report_or_404(experiment_id: int, opens: str, correction: str, *, include_quality: bool | str = True,
                   experiment: dict | None = None):
    cache = _cache()
    key = None
    if cache is not None:
        experiment = experiment or _experiment_or_404(experiment_id)
        key = ("report", experiment_id, opens, correction, include_quality, data_fingerprint(experiment))
        hit = cache.get(key)
        if hit is not None:
            return hit
    try:
        report = build_experiment_report(db.session, experiment_id, opens=opens, correction=correction,
                                         include_quality=include_quality)
    except NotFoundError:
        abort(404)
    if cache is not None:
        cache.put(key, report)
    return report


def _hours_histogram(experiment: dict, opens: str) -> dict[str, list[int]]:
    cache = _cache()
    key = ("hours", experiment["id"], opens, data_fingerprint(experiment)) if cache is not None else None
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        return hit
    histogram = opens_by_hours_since_send(db.session, experiment["id"], opens=opens)
    if cache is not None:
        cache.put(key, histogram)
    return histogram


@bp.route("/experiments/<int:experiment_id>")
@login_required
def experiment_detail(experiment_id: int):
    experiment = _experiment_or_404(experiment_id)
    opens, correction, problems = report_options(request.args)
    # the reasons for machine opens need a join over all open events: large experiments get them on request
    report = _report_or_404(experiment_id, opens, correction, experiment=experiment,
                            include_quality="full" if request.args.get("reasons") == "1" else True)
    histogram = _hours_histogram(experiment, opens)
    analysis = report.analysis
    verdict = analysis.verdict if analysis else None
    quality = report.quality
    context = dict(
        experiment=experiment, report=report, analysis=analysis, opens=opens, correction=correction,
        problems=problems, rows=variant_rows(experiment, report), charts=build_charts(experiment, report, histogram),
        verdict=verdict,
        verdict_text=verdict_sentence(verdict, analysis, stopped=report.status == "stopped") if verdict else _("No sends recorded for this experiment "
                                                                           "yet."),
        verdict_label=verdict_headline(verdict.kind, verdict.winner_key, analysis.control_key) if verdict
        else _("No data yet"),
        machine_reasons=[(machine_reason_label(r), n) for r, n in list((quality.machine_reasons or {}).items())[:4]]
        if quality else [],
        snippets=send_snippets(experiment) if experiment["status"] in ("draft", "running") else None,
        total_sends=sum(a.sends for a in report.arms),
        segment_names=dict(db.session.execute(sa.select(Segment.key, Segment.name)).all()),
        metric=metric_name(experiment["primary_metric"]),
        fmt=dict(num=num, pct=pct, signed_pct=signed_pct, pp=pp, pvalue=pvalue, money=money, interval=interval),
    )
    return render_template("experiments/report.html", **context), 400 if problems else 200


@bp.route("/experiments/<int:experiment_id>/user-agents")
@login_required
def experiment_user_agents(experiment_id: int):
    """The user-agent families of the experiment's opens with their classification (a separate page:
    one more join of open events with sends, ~0.6 s at 1M sends on SQLite, that the report does not need)."""
    experiment = _experiment_or_404(experiment_id)
    return render_template("experiments/user_agents.html", experiment=experiment,
                           user_agents=user_agent_families(db.session, experiment_id, limit=50), num=num)


@bp.route("/experiments/<int:experiment_id>/verdict.json")
@login_required
def experiment_verdict(experiment_id: int):
    """The translated verdict alone (the overview loads these lazily); no data-quality queries."""
    _experiment_or_404(experiment_id)
    report = _report_or_404(experiment_id, "human", "holm", include_quality=False)
    if report.analysis is None:
        return jsonify({"kind": "insufficient_data", "label": _("No data yet"),
                        "text": _("No sends recorded for this experiment yet.")})
    v = report.analysis.verdict
    return jsonify({"kind": v.kind, "label": verdict_headline(v.kind, v.winner_key, report.analysis.control_key),
                    "text": verdict_sentence(v, report.analysis, stopped=report.status == "stopped")})


def safe_cell(value) -> object:
    """A CSV cell that a spreadsheet will not run: text starting with = + - @ tab or CR gets a leading '."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


CSV_COLUMNS = ("experiment_id", "experiment", "opens", "correction", "variant", "is_control", "subject", "sends",
               "opened_sends", "open_rate", "open_rate_ci_lower", "open_rate_ci_upper", "lift", "lift_ci_lower",
               "lift_ci_upper", "p_value", "p_value_adjusted", "prob_best", "meetings", "meeting_rate", "deals",
               "deal_amount", "verdict", "verdict_winner")


@bp.route("/experiments/<int:experiment_id>/report.csv")
@login_required
def experiment_report_csv(experiment_id: int):
    """Per-variant rows, UTF-8 with BOM (Excel reads Japanese), cells safe against formula injection.

    Rates are proportions (0..1) as in the JSON export; lift is relative to the control.
    """
    experiment = _experiment_or_404(experiment_id)
    opens, correction, problems = report_options(request.args)
    if problems:
        return Response(" ".join(problems) + "\n", status=400, mimetype="text/plain")
    report = _report_or_404(experiment_id, opens, correction, include_quality=False)
    verdict = report.analysis.verdict if report.analysis else None
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in variant_rows(experiment, report):
        values = {**row, "experiment_id": experiment_id, "experiment": experiment["name"], "opens": opens,
                  "correction": correction, "variant": row["key"], "is_control": "true" if row["is_control"] else
                  "false", "opened_sends": row["opens"], "verdict": verdict.kind if verdict else "insufficient_data",
                  "verdict_winner": (verdict.winner_key or "") if verdict else ""}
        writer.writerow([safe_cell("" if values.get(c) is None else values.get(c)) for c in CSV_COLUMNS])
    body = "\ufeff" + buf.getvalue()
    response = Response(body.encode("utf-8"), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="experiment-{experiment_id}-report.csv"'
    return response


@bp.route("/experiments/<int:experiment_id>/report.json")
@login_required
def experiment_report_json(experiment_id: int):
    _experiment_or_404(experiment_id)
    opens, correction, problems = report_options(request.args)
    if problems:
        return jsonify({"error": "validation_error", "message": " ".join(problems),
                        "field": "opens" if "opens" in problems[0] else "correction"}), 400
    report = _report_or_404(experiment_id, opens, correction)
    response = jsonify(report.to_dict())
    response.headers["Content-Disposition"] = f'attachment; filename="experiment-{experiment_id}-report.json"'
    return response


@bp.app_template_global()
def format_day(value) -> str:
    return "—" if value is None else format_date(value, "medium")


@bp.app_template_global()
def segment_comparisons(segment) -> dict:
    return {c.variant_key: c for c in segment.comparisons}


@bp.app_template_global()
def report_url(experiment_id: int, **changes) -> str:
    """The report URL keeping the current switches, with `changes` applied."""
    from flask import url_for

    args = {k: request.args.get(k) for k in ("opens", "correction") if request.args.get(k) in (*OPENS, *CORRECTIONS)}
    args.update({k: v for k, v in changes.items()})
    args = {k: v for k, v in args.items() if v and not (k == "opens" and v == "human")
            and not (k == "correction" and v == "holm")}
    return url_for("web.experiment_detail", experiment_id=experiment_id, **args)
