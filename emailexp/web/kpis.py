"""KPI dashboard: team and individual progress side by side, trends against targets, review flags,
and a drill-down team → person → the experiments and sends behind the numbers.

Numbers come from the KPI store (`emailexp.kpi`: progress, values, targets, review flags); the
drill-down list of sends is one GROUP BY over the owner's sends in the period.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app, render_template, request
from flask_babel import get_locale
from flask_babel import gettext as _

from emailexp.errors import ValidationError
from emailexp.extensions import db
from emailexp.kpi.periods import period_end, period_start
from emailexp.kpi.progress import kpi_progress
from emailexp.kpi.review import review_flags
from emailexp.kpi.store import list_targets, list_values
from emailexp.models import Owner, Team
from emailexp.reports.drilldown import owner_sends_breakdown
from emailexp.web import bp, charts
from emailexp.web.auth import login_required
from emailexp.web.texts import money, num, pct

DASHBOARD_KPIS = ("unique_human_open_rate", "meetings", "meeting_rate", "deals", "deal_amount")
PERIODS = ("month", "iso_week", "quarter")
TREND_PERIODS = 6


def kpi_value_text(kpi_unit: str, value) -> str:
    if value is None:
        return "—"
    if kpi_unit == "%":
        return pct(value, 1 if value >= 0.1 else 2)
    if kpi_unit == "円":
        return money(value)
    return num(value, 0 if float(value) == int(value) else 1)


def status_text(status: str | None) -> str:
    return {"on_track": _("On track"), "at_risk": _("At risk"), "off_track": _("Off track")}.get(
        status or "", _("No forecast yet"))


def period_label(period: str) -> str:
    return {"month": _("Month"), "iso_week": _("Week"), "quarter": _("Quarter")}.get(period, period)


def _today() -> date:
    return datetime.now(ZoneInfo(current_app.config["TIMEZONE"])).date()


def _parse(args) -> tuple[str, date, dict[str, str]]:
    errors = {}
    period = args.get("period") or "month"
    if period not in PERIODS:
        errors["period"] = _("Choose month, week or quarter.")
        period = "month"
    as_of = _today()
    raw = args.get("as_of")
    if raw:
        try:
            as_of = date.fromisoformat(raw)
        except ValueError:
            errors["as_of"] = _("Enter the date as YYYY-MM-DD.")
    return period, as_of, errors


def _name(progress) -> str:
    return progress.name_ja if get_locale() and get_locale().language == "ja" else progress.name_en


def trend_charts(scope: str, scope_label: str, period: str, as_of: date) -> list:
    """Actual vs target over the last TREND_PERIODS periods for meetings and the open rate."""
    starts = [period_start(as_of, period)]
    for _i in range(TREND_PERIODS - 1):
        starts.insert(0, period_start(starts[0] - timedelta(days=1), period))
    scope_type, _sep, scope_name = scope.partition(":")
    targets = {(t["kpi"], t["period_start"]): t["target"] for t in list_targets(
        db.session, period=period, date_from=starts[0], date_to=starts[-1])
        if t["scope"] == scope_type and (t["scope_id"] or "") == scope_name}
    out = []
    for kpi, label, fmt in (("meetings", _("Meetings"), lambda v: num(v)),
                            ("unique_human_open_rate", _("Open rate"), lambda v: pct(v, 1)),
                            ("meeting_rate", _("Meeting rate"), lambda v: pct(v, 2))):
        values = {v["period_start"]: v["value"] for v in list_values(
            db.session, kpi=kpi, scope=scope, period=period, date_from=starts[0], date_to=starts[-1])}
        actual = [(s, values.get(s.isoformat())) for s in starts]
        target = [(s, targets.get((kpi, s.isoformat()))) for s in starts]
        if all(v is None for _s, v in actual + target):
            continue
        out.append(charts.line_chart(
            [charts.Series(_("Actual"), actual), charts.Series(_("Target"), target)],
            chart_id=f"trend-{kpi}", title=_("%(kpi)s: actual against target (%(scope)s)", kpi=label, scope=scope_label),
            desc=_("%(kpi)s per %(period)s for the last %(n)d periods, actual (solid) and target (dashed).",
                   kpi=label, period=period_label(period).lower(), n=TREND_PERIODS),
            x_label=period_label(period), y_label=label, fmt=fmt, x_fmt=lambda d: d.isoformat()[:7 if period == "month" else 10],
            width=520, height=240))
    return out


@bp.route("/kpis")
@login_required
def kpis():
    timezone = current_app.config["TIMEZONE"]
    period, as_of, errors = _parse(request.args)
    team_filter = request.args.get("team") or None
    owner_filter = request.args.get("owner") or None
    teams = list(db.session.scalars(sa.select(Team).order_by(Team.name)))
    owners = list(db.session.scalars(sa.select(Owner).order_by(Owner.external_id)))
    owner_by_ext = {o.external_id: o for o in owners}
    team_by_name = {t.name: t for t in teams}
    if team_filter and team_filter not in team_by_name:
        errors["team"] = _("There is no team “%(name)s”.", name=team_filter)
        team_filter = None
    if owner_filter and owner_filter not in owner_by_ext:
        errors["owner"] = _("There is no person “%(name)s”.", name=owner_filter)
        owner_filter = None
    if owner_filter:  # a person is shown inside their own team
        owner_team = next((t.name for t in teams if t.id == owner_by_ext[owner_filter].team_id), None)
        team_filter = owner_team
    try:
        progress = kpi_progress(db.session, period=period, as_of=as_of)
        flags = review_flags(db.session, as_of=as_of)
    except ValidationError as exc:  # pragma: no cover - inputs are validated above
        errors[exc.field or "form"] = exc.message
        progress, flags = [], []

    cells: dict[tuple[str, str | None], dict[str, object]] = defaultdict(dict)
    kpi_names: dict[str, str] = {}
    units: dict[str, str] = {}
    for p in progress:
        if p.kpi in DASHBOARD_KPIS:
            cells[(p.scope, p.scope_id)][p.kpi] = p
            kpi_names[p.kpi] = _name(p)
            units[p.kpi] = p.unit
    kpi_keys = [k for k in DASHBOARD_KPIS if k in kpi_names]

    # team → its members, side by side
    groups = []
    team_of = {o.external_id: o.team_id for o in owners}
    for team in teams:
        if team_filter and team.name != team_filter:
            continue
        members = [o for o in owners if o.team_id == team.id and (not owner_filter or o.external_id == owner_filter)]
        columns = [("team", team.name, team.name)] + [("owner", o.external_id, o.name) for o in members]
        if any(cells.get((s, i)) for s, i, _n in columns):
            groups.append({"team": team, "columns": columns})
    loners = [o for o in owners if o.team_id is None and (not owner_filter or o.external_id == owner_filter)]
    if not team_filter and any(cells.get(("owner", o.external_id)) for o in loners):
        groups.append({"team": None, "columns": [("owner", o.external_id, o.name) for o in loners]})
    workspace = cells.get(("workspace", None), {})

    start = period_start(as_of, period)
    end = period_end(start, period)
    drill_owner = owner_by_ext.get(owner_filter) if owner_filter else None
    behind = owner_sends_breakdown(db.session, drill_owner.id, start, end, timezone) if drill_owner else None
    if drill_owner:
        trend_scope, trend_label = f"owner:{drill_owner.external_id}", drill_owner.name
    elif team_filter:
        trend_scope, trend_label = f"team:{team_filter}", team_filter
    else:
        trend_scope, trend_label = "workspace", _("Workspace")
    try:
        trends = trend_charts(trend_scope, trend_label, period, as_of)
    except ValidationError:  # the KPI definitions are not seeded (a database made without the migrations)
        trends = []
    lang = get_locale().language if get_locale() else "en"
    def scope_name(scope: str, scope_id: str | None) -> str | None:
        if scope == "owner" and scope_id in owner_by_ext:
            return owner_by_ext[scope_id].name
        return scope_id

    flag_rows = [{"text": f.message_ja if lang == "ja" else f.message_en, "scope": f.scope,
                  "scope_id": scope_name(f.scope, f.scope_id),
                  "period": f.period, "period_start": f.period_start, "kind": f.kind} for f in flags]
    return render_template(
        "kpis.html", period=period, periods=PERIODS, as_of=as_of, start=start, end=end, errors=errors,
        groups=groups, cells=cells, kpi_keys=kpi_keys, kpi_names=kpi_names, units=units, workspace=workspace,
        flags=flag_rows, trends=trends, team_filter=team_filter, drill_owner=drill_owner, behind=behind,
        team_of=team_of, teams=teams, has_progress=bool(progress),
        value_text=kpi_value_text, status_text=status_text, period_label=period_label,
        fmt=dict(num=num, pct=pct)), 400 if errors else 200
