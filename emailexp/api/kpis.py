"""KPI store API under /api/v1/kpis: definitions, values (read; import of external values), targets,
progress, review flags, refresh."""
from __future__ import annotations

from datetime import date, datetime

from flask import current_app, jsonify, request

from emailexp.api import bp
from emailexp.api.auth import require_api_key
from emailexp.api.common import json_body
from emailexp.errors import ValidationError
from emailexp.extensions import db
from emailexp.kpi.definitions import create_definition, definition_to_dict, list_definitions
from emailexp.kpi.progress import kpi_progress
from emailexp.kpi.refresh import refresh_kpis
from emailexp.kpi.review import review_flags
from emailexp.kpi.store import (import_values, list_targets, list_values, parse_date, parse_target_rows,
                                parse_value_rows, set_targets)


def _check_args(allowed: set[str]) -> None:
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        raise ValidationError(f"unknown query parameter; use {', '.join(sorted(allowed))}", field=unknown[0])


def _date_arg(name: str, default: date | None = None) -> date | None:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    return parse_date(value, field=name)


def _today() -> date:
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(current_app.config["TIMEZONE"])).date()


@bp.get("/kpis/definitions")
@require_api_key
def kpi_definitions():
    # read-only: the built-ins are seeded by migration 0002 (create_all databases: ensure_builtin_kpis)
    return jsonify({"definitions": [definition_to_dict(d) for d in list_definitions(db.session)]})


@bp.post("/kpis/definitions")
@require_api_key
def kpi_create_definition():
    kpi = create_definition(db.session, json_body())
    db.session.commit()
    return jsonify(definition_to_dict(kpi)), 201


@bp.get("/kpis/values")
@require_api_key
def kpi_values():
    _check_args({"kpi", "scope", "period", "from", "to", "limit"})
    limit = request.args.get("limit", "10000")
    if not limit.isdigit() or not 1 <= int(limit) <= 100_000:
        raise ValidationError("limit must be an integer from 1 to 100000", field="limit")
    rows = list_values(db.session, kpi=request.args.get("kpi"), scope=request.args.get("scope"),
                       period=request.args.get("period"), date_from=_date_arg("from"), date_to=_date_arg("to"),
                       limit=int(limit))
    return jsonify({"values": rows, "truncated": len(rows) == int(limit)})


@bp.post("/kpis/values")
@require_api_key
def kpi_import_values():
    """Idempotent, atomic bulk import of external values keyed by (kpi, scope, period)."""
    rows = parse_value_rows(db.session, json_body().get("values"))
    result = import_values(db.session, rows)
    db.session.commit()
    return jsonify({"created": result.created, "updated": result.updated, "unchanged": result.unchanged}), \
        (201 if result.created else 200)


@bp.get("/kpis/targets")
@require_api_key
def kpi_targets():
    _check_args({"period", "from", "to"})
    period = request.args.get("period")
    return jsonify({"targets": list_targets(db.session, period=period, date_from=_date_arg("from"),
                                            date_to=_date_arg("to"))})


@bp.put("/kpis/targets")
@require_api_key
def kpi_set_targets():
    rows = parse_target_rows(db.session, json_body().get("targets"))
    result = set_targets(db.session, rows)
    db.session.commit()
    return jsonify({"created": result.created, "updated": result.updated, "unchanged": result.unchanged})


@bp.get("/kpis/progress")
@require_api_key
def kpi_progress_view():
    _check_args({"period", "date", "scope", "kpi", "pace"})
    pace = request.args.get("pace", "linear")
    if pace not in ("linear", "business_days"):
        raise ValidationError("pace must be linear or business_days", field="pace")
    as_of = _date_arg("date", _today())
    items = kpi_progress(db.session, period=request.args.get("period", "month"), as_of=as_of,
                         scope=request.args.get("scope"), kpi=request.args.get("kpi"),
                         business_days=pace == "business_days")
    return jsonify({"as_of": as_of.isoformat(), "pace": pace, "progress": [p.to_dict() for p in items]})


@bp.get("/kpis/review")
@require_api_key
def kpi_review():
    _check_args({"date"})
    as_of = _date_arg("date", _today())
    flags = review_flags(db.session, as_of=as_of,
                         attribution_window_days=current_app.config.get("ATTRIBUTION_WINDOW_DAYS", 14))
    return jsonify({"as_of": as_of.isoformat(), "flags": [f.to_dict() for f in flags]})


@bp.post("/kpis/refresh")
@require_api_key
def kpi_refresh():
    """Body (optional): {"since": "YYYY-MM-DD"} or {"full": true}."""
    body = json_body() if request.get_data(cache=True).strip() else {}
    full = body.get("full", False)
    if not isinstance(full, bool):
        raise ValidationError("full must be true or false", field="full")
    since = parse_date(body["since"], field="since") if body.get("since") is not None else None
    result = refresh_kpis(db.session, timezone=current_app.config["TIMEZONE"], since=since, full=full)
    db.session.commit()
    return jsonify({"full": result.full, "periods": result.periods, "values_written": result.values_written,
                    "derived_written": result.derived_written, "seconds": round(result.seconds, 3)})
