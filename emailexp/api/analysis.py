"""GET /experiments/{id}/analysis and GET /insights."""
from __future__ import annotations

from flask import current_app, jsonify, request

from emailexp.api import bp
from emailexp.api.auth import require_api_key
from emailexp.errors import ValidationError
from emailexp.extensions import db
from emailexp.reports.experiment_report import build_experiment_report
from emailexp.reports.insights import build_insights, parse_insights_query


@bp.get("/experiments/<int:experiment_id>/analysis")
@require_api_key
def experiment_analysis(experiment_id: int):
    opens = request.args.get("opens", "human")
    correction = request.args.get("correction", "holm")
    quality = request.args.get("quality", "summary")
    if quality not in ("summary", "full"):
        raise ValidationError("must be summary or full (full adds open events by verdict and reason, "
                              "a join over every open event of the experiment)", field="quality")
    unknown = sorted(set(request.args) - {"opens", "correction", "quality"})
    if unknown:
        raise ValidationError("unknown query parameter; use opens, correction or quality", field=unknown[0])
    report = build_experiment_report(db.session, experiment_id, opens=opens, correction=correction,
                                     include_quality="full" if quality == "full" else True)
    return jsonify(report.to_dict())


@bp.get("/insights")
@require_api_key
def insights():
    unknown = sorted(set(request.args) - {"from", "to", "segment", "metric"})
    if unknown:
        raise ValidationError("unknown query parameter; use from, to, segment or metric", field=unknown[0])
    query = parse_insights_query(request.args, timezone=current_app.config["TIMEZONE"])
    result = build_insights(db.session, query, timezone=current_app.config["TIMEZONE"])
    return jsonify(result.to_dict())
