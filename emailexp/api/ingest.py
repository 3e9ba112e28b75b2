"""POST /sends, POST /conversions, PUT and GET /owners: the data the client pushes in.

Each request is one transaction: the service validates the whole batch, the view commits once,
and any error rolls everything back (the error handler does it), so a rejected batch writes nothing.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime

from flask import current_app, jsonify
from sqlalchemy.exc import IntegrityError

from emailexp.api import bp
from emailexp.api.auth import require_api_key
from emailexp.api.common import json_body
from emailexp.errors import ConflictError
from emailexp.extensions import db
from emailexp.ingestion._rows import batch_rows
from emailexp.ingestion.conversions import ingest_conversions
from emailexp.ingestion.owners import list_owners, upsert_owners
from emailexp.ingestion.sends import send_answers, store_sends
from emailexp.tracking.tokens import tracking_key


def _commit(key: str) -> None:
    try:
        db.session.commit()
    except IntegrityError:
        # Only a concurrent request inserting the same ids gets here; the batch is idempotent.
        db.session.rollback()
        raise ConflictError("another request stored some of these rows at the same moment; retry the batch "
                            "(retries are safe)", field=key) from None


@bp.post("/sends")
@require_api_key
def post_sends():
    config = current_app.config
    rows = batch_rows(json_body(), "sends", config["MAX_BATCH_SIZE"])
    # End the API-key lookup's transaction: on SQLite every transaction holds the write lock
    # (BEGIN IMMEDIATE), and validation and token signing need no database.
    db.session.rollback()
    try:
        stored = store_sends(db.session, rows, workspace_tz=config["TIMEZONE"], now=datetime.now(UTC))
    except IntegrityError:
        db.session.rollback()
        raise ConflictError("another request stored some of these sends at the same moment; retry the batch "
                            "(retries are safe)", field="sends") from None
    _commit("sends")
    items = send_answers(stored, public_url=config["PUBLIC_URL"], tracking_key=tracking_key(config["SECRET_KEY"]))
    # Serialised directly rather than through jsonify: its key sorting costs noticeable time on
    # 10,000 items, and this answer reads better in its natural order.
    body = json.dumps({"created": stored.created, "existing": stored.existing, "sends": items},
                      separators=(",", ":"))
    return current_app.response_class(body, status=201 if stored.created else 200, mimetype="application/json")


@bp.post("/conversions")
@require_api_key
def post_conversions():
    config = current_app.config
    rows = batch_rows(json_body(), "conversions", config["MAX_BATCH_SIZE"])
    try:
        result = ingest_conversions(db.session, rows, default_window_days=config.get("ATTRIBUTION_WINDOW_DAYS", 14),
                                    now=datetime.now(UTC))
    except IntegrityError:
        db.session.rollback()
        raise ConflictError("another request stored some of these conversions at the same moment; retry the "
                            "batch (retries are safe)", field="conversions") from None
    _commit("conversions")
    return jsonify({"created": result.created, "existing": result.existing, "conversions": result.items}), \
        201 if result.created else 200


@bp.put("/owners")
@require_api_key
def put_owners():
    rows = batch_rows(json_body(), "owners", current_app.config["MAX_BATCH_SIZE"])
    try:
        owners = upsert_owners(db.session, rows)
    except IntegrityError:
        db.session.rollback()
        raise ConflictError("another request changed these owners at the same moment; retry", field="owners") \
            from None
    _commit("owners")
    return jsonify({"owners": owners})


@bp.get("/owners")
@require_api_key
def get_owners():
    return jsonify({"owners": list_owners(db.session)})
