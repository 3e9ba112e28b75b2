"""Experiments API: CRUD, start/stop, assignment and per-variant metrics."""
from __future__ import annotations

from flask import current_app, jsonify, request

from emailexp.api import bp
from emailexp.api.auth import require_api_key
from emailexp.api.common import json_body
from emailexp.errors import ValidationError
from emailexp.extensions import db
from emailexp.ingestion.assignment import assign_recipients
from emailexp.ingestion.experiments import (check_unknown_fields, create_experiment, experiment_to_dict,
                                            get_experiment, list_experiments, start_experiment, stop_experiment,
                                            update_experiment)
from emailexp.models import utcnow
from emailexp.reports.metrics import experiment_metrics, metrics_to_dict


@bp.post("/experiments")
@require_api_key
def create():
    experiment = create_experiment(db.session, json_body(), default_timezone=current_app.config["TIMEZONE"])
    db.session.commit()
    return jsonify(experiment_to_dict(experiment)), 201, {"Location": f"{bp.url_prefix}/experiments/{experiment.id}"}


@bp.get("/experiments")
@require_api_key
def index():
    unknown = sorted(set(request.args) - {"status"})
    if unknown:
        raise ValidationError(f"unknown query parameter {unknown[0]!r}; the only filter is ?status=",
                              field=unknown[0])
    experiments = list_experiments(db.session, status=request.args.get("status"))
    return jsonify({"experiments": [experiment_to_dict(e) for e in experiments]})


@bp.get("/experiments/<int:experiment_id>")
@require_api_key
def show(experiment_id: int):
    return jsonify(experiment_to_dict(get_experiment(db.session, experiment_id)))


@bp.patch("/experiments/<int:experiment_id>")
@require_api_key
def update(experiment_id: int):
    experiment = update_experiment(db.session, experiment_id, json_body())
    db.session.commit()
    return jsonify(experiment_to_dict(experiment))


@bp.post("/experiments/<int:experiment_id>/start")
@require_api_key
def start(experiment_id: int):
    experiment = start_experiment(db.session, experiment_id)
    db.session.commit()
    return jsonify(experiment_to_dict(experiment))


@bp.post("/experiments/<int:experiment_id>/stop")
@require_api_key
def stop(experiment_id: int):
    experiment = stop_experiment(db.session, experiment_id)
    db.session.commit()
    return jsonify(experiment_to_dict(experiment))


@bp.post("/experiments/<int:experiment_id>/assignments")
@require_api_key
def assignments(experiment_id: int):
    body = json_body()
    check_unknown_fields(body, frozenset({"recipients"}))
    if "recipients" not in body:
        raise ValidationError('is required: send {"recipients": [{"id": "lead-42", "segment": "enterprise"}]}',
                              field="recipients")
    result = assign_recipients(db.session, experiment_id, body["recipients"], utcnow(),
                               max_batch=current_app.config["MAX_BATCH_SIZE"])
    db.session.rollback()  # read-only: end the transaction (and SQLite's write lock) now
    return jsonify({"assignments": result})


@bp.get("/experiments/<int:experiment_id>/metrics")
@require_api_key
def metrics(experiment_id: int):
    return jsonify(metrics_to_dict(experiment_metrics(db.session, experiment_id)))
