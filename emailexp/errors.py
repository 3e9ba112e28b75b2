"""Errors a user or client can cause. Services raise them; the API, web and CLI layers render them."""
from __future__ import annotations


class EmailexpError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None,
                 line: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.index = index
        self.line = line

    def to_dict(self) -> dict:
        body = {"error": self.code, "message": self.message, "field": self.field}
        if self.index is not None:
            body["index"] = self.index
        return body

    def one_line(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class ValidationError(EmailexpError):
    status = 422
    code = "validation_error"


class ConflictError(EmailexpError):
    status = 409
    code = "conflict"


class NotFoundError(EmailexpError):
    status = 404
    code = "not_found"


class StateError(EmailexpError):
    """The request is valid but the object is in the wrong state (e.g. starting a stopped experiment)."""

    status = 409
    code = "invalid_state"
