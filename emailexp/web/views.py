"""Overview and experiment list. The report page is in report.py, insights in insights.py, KPIs in kpis.py.

The overview shows each experiment's verdict, but computing a report per experiment costs ~0.1 s
each on the demo (6 experiments: 0.7 s even without the data-quality queries), too slow for the
landing page. The overview therefore renders at once and `overview.js` fetches each verdict from
`/experiments/<id>/verdict.json`; without JavaScript the row links to the report.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask import current_app, render_template, request
from flask_babel import format_datetime
from flask_babel import gettext as _

from emailexp.extensions import db
from emailexp.ingestion import experiments as svc
from emailexp.models import ApiKey, ExperimentStatus
from emailexp.reports.history import recent_activity
from emailexp.web import bp
from emailexp.web.auth import login_required


def _list_experiments(status: str | None = None) -> list[dict]:
    return [svc.experiment_to_dict(e) for e in svc.list_experiments(db.session, status=status)]


@bp.route("/")
@login_required
def overview():
    experiments = _list_experiments()
    activity = recent_activity(db.session, current_app.config["TIMEZONE"])
    has_api_key = db.session.scalar(sa.select(sa.func.count(ApiKey.id))) > 0
    counts = {s.value: sum(1 for e in experiments if e["status"] == s.value) for s in ExperimentStatus}
    return render_template("overview.html", experiments=experiments[:20], activity=activity, counts=counts,
                           has_api_key=has_api_key)


@bp.route("/experiments")
@login_required
def experiments():
    status = request.args.get("status") or None
    if status not in (None, *[s.value for s in ExperimentStatus]):
        status = None
    return render_template("experiments/list.html", experiments=_list_experiments(status), status=status,
                           statuses=[s.value for s in ExperimentStatus])


@bp.app_template_filter("dt")
def datetime_filter(value, format: str = "medium") -> str:
    """A UTC datetime (or ISO string) shown in the workspace timezone and the user's language."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return format_datetime(value, format)


@bp.app_template_filter("pct")
def pct_filter(value, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{float(value) * 100:.{digits}f}%"


@bp.app_template_global()
def weekday_names() -> list[str]:
    return [_("Monday"), _("Tuesday"), _("Wednesday"), _("Thursday"), _("Friday"), _("Saturday"), _("Sunday")]


@bp.app_template_global()
def status_label(status: str) -> str:
    return {"draft": _("Draft"), "running": _("Running"), "stopped": _("Stopped")}.get(status, status)


@bp.app_template_global()
def metric_label(metric: str) -> str:
    return {"open_rate": _("Open rate"), "meeting_rate": _("Meeting rate"),
            "deal_rate": _("Deal rate")}.get(metric, metric)


@bp.app_template_global()
def lang_url(lang: str) -> str:
    """The current page in another language (only the path is kept: forms are not re-posted)."""
    args = {k: v for k, v in request.args.items() if k != "lang"}
    args["lang"] = lang
    from urllib.parse import urlencode

    return f"{request.path}?{urlencode(args)}"




@bp.app_template_global()
def role_label(role: str) -> str:
    return {"admin": _("Admin"), "marketer": _("Marketer"), "viewer": _("Viewer")}.get(role, role)


@bp.app_template_global("get_locale")
def _get_locale():
    from flask_babel import get_locale

    return get_locale()
