"""JSON errors for the API: every 4xx names the field that caused it."""
from __future__ import annotations

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from emailexp.errors import EmailexpError


def error_response(status: int, code: str, message: str, field: str | None = None, **extra):
    body = {"error": code, "message": message, "field": field, **extra}
    return jsonify(body), status


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(EmailexpError)
    def _domain_error(exc: EmailexpError):
        from emailexp.extensions import db

        db.session.rollback()
        if _wants_json():
            return jsonify(exc.to_dict()), exc.status
        return exc.one_line(), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if not _wants_json():
            return exc
        field = None
        if exc.code == 413:
            field = "body"
        elif exc.code == 415:
            field = "Content-Type"
        elif exc.code == 401:
            field = "Authorization"
        response, status = error_response(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"),
                                          exc.description or exc.name, field)
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        if exc.code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="emailexp"'
        return response, status
