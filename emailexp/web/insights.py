"""The insights page: which weekday, time of day and subject features go with more opens (or meetings).

The numbers come from `emailexp.reports.insights.build_insights` (cells aggregated in the database,
a quasi-binomial GLM in analysis/). This module arranges them: one weekday x hour-band heatmap per
segment, the top conditions, subject-feature effects, factor tests, and a suggested next test that
is derived from the model in the open (see `suggest_next_tests`).
"""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app, render_template, request
from flask_babel import gettext as _

from emailexp.analysis import sample_size_per_arm
from emailexp.analysis.hour_bands import HOUR_BANDS
from emailexp.analysis.regression import WEEKDAY_NAMES
from emailexp.errors import ValidationError
from emailexp.extensions import db
from emailexp.models import Segment
from emailexp.reports.insights import METRICS, build_insights, parse_insights_query
from emailexp.web import bp, charts
from emailexp.web.auth import login_required
from emailexp.web.texts import (factor_label, feature_label, hour_band_label, interval, metric_name, num, pct, pp,
                                pvalue)

FEATURE_FACTORS = ("length_band", "has_question", "has_number", "has_brackets", "has_personalization", "has_emoji")
#: Above this many sends per variant (or 20x the segment's history) a suggested test is not worth running.
MAX_TEST_SENDS = 200_000


def _band_short(band: str) -> str:
    lo, hi = next((lo, hi) for name, lo, hi in HOUR_BANDS if name == band)
    return f"{lo}–{hi}"


def weekday_label(index: int) -> str:
    from emailexp.web.views import weekday_names

    return weekday_names()[index]


@dataclass(frozen=True)
class Suggestion:
    segment: str
    kind: str            # "switch" | "head_to_head" | "keep" | "not_worth_testing"
    best: object         # PredictedRate
    other: object | None  # PredictedRate (the most-used condition, or the runner-up)
    overlap: bool
    sends_per_variant: int | None
    text: str


def _condition(pr) -> str:
    return f"{weekday_label(pr.weekday)} {hour_band_label(pr.hour_band)}"


def _sends_needed(a, b, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Sends per variant for a two-arm test to detect the model's difference between two conditions."""
    if a.rate is None or b.rate is None or a.rate == b.rate or not 0 < b.rate < 1 or not 0 < a.rate < 1:
        return None
    try:
        return sample_size_per_arm(b.rate, a.rate - b.rate, relative=False, alpha=alpha, power=power).sends_per_arm
    except (ValueError, ArithmeticError):
        return None


def suggest_next_tests(model) -> list[Suggestion]:
    """Per segment: the best condition (highest predicted rate with observed sends) against the
    condition used most so far. If the most-used one is already the best, the runner-up is the
    challenger. Overlapping intervals mean the model cannot separate them: test head to head, with
    the sends per variant needed to detect the predicted difference (alpha 5 %, power 80 %)."""
    out = []
    for segment, top in model.top_conditions.items():
        if not top:
            continue
        best = top[0]
        observed = [p for p in model.predicted_rates if p.segment == segment and p.status == "estimated"
                    and p.observed_sends > 0 and p.rate is not None]
        if not observed:
            continue
        current = max(observed, key=lambda p: (p.observed_sends, -p.weekday))
        same = (current.weekday, current.hour_band) == (best.weekday, best.hour_band)
        other = (top[1] if len(top) > 1 else None) if same else current
        if other is None:
            continue
        overlap = (best.ci_lower is not None and other.ci_upper is not None and best.ci_lower <= other.ci_upper)
        n = _sends_needed(best, other)
        n_text = num(n) if n else "—"
        segment_sends = sum(p.observed_sends for p in observed)
        if overlap and (n is None or n > max(MAX_TEST_SENDS, 20 * segment_sends)):
            # a difference this small is not worth a test: say so instead of proposing millions of sends
            out.append(Suggestion(segment, "not_worth_testing", best, other, overlap, n, _(
                "%(best)s and %(other)s predict nearly the same rate (%(rate)s and %(other_rate)s): a test would "
                "need about %(n)s sends per variant. Keep %(current)s and test something else, such as the subject.",
                best=_condition(best), other=_condition(other), rate=pct(best.rate), other_rate=pct(other.rate),
                n=n_text, current=_condition(current))))
            continue
        if same:
            kind = "head_to_head" if overlap else "keep"
            text = (_("Your most-used condition, %(best)s (%(rate)s), is already the best the model sees. The runner-up "
                      "%(other)s (%(other_rate)s) has an overlapping interval, so test the two against each other: "
                      "about %(n)s sends per variant.", best=_condition(best), rate=pct(best.rate),
                      other=_condition(other), other_rate=pct(other.rate), n=n_text) if overlap else
                    _("Keep %(best)s (%(rate)s): it is your most-used condition and its interval lies above the "
                      "runner-up %(other)s (%(other_rate)s).", best=_condition(best), rate=pct(best.rate),
                      other=_condition(other), other_rate=pct(other.rate)))
        else:
            kind = "head_to_head" if overlap else "switch"
            text = (_("Test %(best)s (%(rate)s) against %(other)s (%(other_rate)s), the condition you use most. Their "
                      "intervals overlap, so the data cannot tell them apart yet: about %(n)s sends per variant "
                      "detect the predicted difference of %(diff)s.", best=_condition(best), rate=pct(best.rate),
                      other=_condition(other), other_rate=pct(other.rate), n=n_text,
                      diff=pp((best.rate or 0) - (other.rate or 0)).lstrip("+")) if overlap else
                    _("Test %(best)s (%(rate)s) against %(other)s (%(other_rate)s), the condition you use most. The "
                      "model puts %(best)s clearly higher (the intervals do not overlap); a randomised test of about "
                      "%(n)s sends per variant confirms it before you move all sends.", best=_condition(best),
                      rate=pct(best.rate), other=_condition(other), other_rate=pct(other.rate), n=n_text))
        out.append(Suggestion(segment, kind, best, other, overlap, n, text))
    return out


def heatmaps(model, segment_names: dict[str, str]) -> list:
    """One weekday x hour-band heatmap of predicted rates per segment; cells without sends stay empty."""
    bands = [name for name, _lo, _hi in HOUR_BANDS]
    by_segment: dict[str, dict[tuple[int, str], object]] = {}
    for p in model.predicted_rates:
        by_segment.setdefault(p.segment, {})[(p.weekday, p.hour_band)] = p
    out = []
    metric = metric_name("open_rate" if model.outcome == "opens" else "meeting_rate")
    for i, (segment, cells) in enumerate(sorted(by_segment.items())):
        values = []
        for wd in range(7):
            row = []
            for band in bands:
                p = cells.get((wd, band))
                ok = p is not None and p.observed_sends > 0 and p.status == "estimated" and p.rate is not None
                row.append(p.rate if ok else None)
            values.append(row)
        name = segment_names.get(segment, segment)
        out.append((segment, name, charts.heatmap(
            [weekday_label(wd) for wd in range(7)], [_band_short(b) for b in bands], values,
            chart_id=f"heat-{i}", title=_("Predicted %(metric)s by weekday and time of day: %(segment)s",
                                           metric=metric, segment=name),
            desc=_("Model-predicted %(metric)s for each weekday (rows) and local send hour band (columns) in segment "
                   "%(segment)s, darker is higher, the best cell is outlined; hatched cells had no sends.",
                   metric=metric, segment=name),
            corner_label=_("Weekday"), fmt=lambda v: pct(v, 1), missing=_("no sends"), cell=58)))
    return out


def effect_status(status: str) -> str:
    return {"estimated": _("estimated"), "not_estimable": _("not estimable (no separate data)"),
            "separated": _("all or nothing (no interval)"), "aliased": _("not estimable (aliased)"),
            "empty": _("no data")}.get(status, status)


@bp.route("/insights")
@login_required
def insights():
    timezone = current_app.config["TIMEZONE"]
    segments = list(db.session.scalars(sa.select(Segment).order_by(Segment.key).limit(500)))
    form = {"from": request.args.get("from", ""), "to": request.args.get("to", ""),
            "segment": request.args.get("segment", ""), "metric": request.args.get("metric", "open_rate")}
    errors: dict[str, str] = {}
    result = None
    try:
        query = parse_insights_query(request.args, timezone=timezone)
    except ValidationError as exc:
        field = exc.field or "form"
        errors[field] = {
            "from": _("Enter the start date as YYYY-MM-DD, not after the end date."),
            "to": _("Enter the end date as YYYY-MM-DD."),
            "metric": _("Choose open rate or meeting rate."),
            "segment": _("Choose a segment from the list."),
        }.get(field, exc.message)
        query = None
    if query is not None and query.segment and query.segment not in {s.key for s in segments}:
        errors["segment"] = _("There is no segment “%(segment)s”. Choose one from the list.", segment=query.segment)
        query = None
    if query is not None:
        result = build_insights(db.session, query, timezone=timezone)
    model = result.model if result else None
    segment_names = {s.key: s.name for s in segments}
    context = dict(form=form, errors=errors, segments=segments, metrics=list(METRICS), result=result, model=model,
                   timezone=timezone, segment_names=segment_names)
    if model is not None:
        effects = [m for m in model.marginal_effects if m.factor in FEATURE_FACTORS]
        context.update(
            heatmaps=heatmaps(model, segment_names),
            suggestions=suggest_next_tests(model),
            feature_effects=[(feature_label(m.factor, m.level), m) for m in effects],
            condition_effects=[m for m in model.marginal_effects if m.factor in ("weekday", "hour_band", "segment")],
            metric=metric_name("open_rate" if model.outcome == "opens" else "meeting_rate"),
        )
        if effects:
            rows = [charts.ForestRow(label, m.effect_pp / 100 if m.effect_pp is not None else None,
                                     m.ci_lower_pp / 100 if m.ci_lower_pp is not None else None,
                                     m.ci_upper_pp / 100 if m.ci_upper_pp is not None else None, m.status)
                    for label, m in context["feature_effects"]]
            context["feature_chart"] = charts.forest_plot(
                rows, chart_id="features", title=_("Subject features: effect on the %(metric)s", metric=context["metric"]),
                desc=_("Average marginal effect of each subject feature in percentage points, with its interval; "
                       "the dashed line is no effect."),
                axis_label=_("Percentage points"), headers=(_("Feature"), _("Effect"), _("Lower"), _("Upper"), ""),
                fmt=lambda v: pp(v), width=720)
    def level_label(factor: str, level: str) -> str:
        if factor == "weekday" and level in WEEKDAY_NAMES:
            return weekday_label(WEEKDAY_NAMES.index(level))
        if factor == "hour_band":
            return hour_band_label(level)
        if factor == "segment":
            return segment_names.get(level, level)
        return level

    status = 400 if errors else 200
    return render_template("insights.html", fmt=dict(num=num, pct=pct, pp=pp, pvalue=pvalue, interval=interval),
                           level_label=level_label, effect_status=effect_status, max_test_sends=MAX_TEST_SENDS,
                           feature_label_ref=lambda ref: feature_label("length_band", ref),
                           factor_label=factor_label, hour_band_label=hour_band_label, weekday_label=weekday_label,
                           weekday_short=WEEKDAY_NAMES, **context), status
