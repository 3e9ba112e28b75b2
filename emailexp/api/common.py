"""Helpers shared by the API route modules."""
from __future__ import annotations

import json
import math

from flask import request

from emailexp.errors import ValidationError


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"the number {literal[:40]} is too large")
    return value


def json_body() -> dict:
    """The request body as a JSON object, or ValidationError(field="body") saying what to send.

    Stricter than `request.get_json()`: the Content-Type must be application/json, the body must
    be UTF-8 JSON whose top level is an object, and the non-standard constants NaN/Infinity that
    Python's json module would otherwise accept are refused, like decimals too large for a float
    (1e400), so validators only ever see finite numbers. Integers stay exact Python ints.
    """
    if not request.is_json:
        raise ValidationError("send a JSON object with 'Content-Type: application/json'", field="body")
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ValidationError("the request body is empty; send a JSON object", field="body")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant,
                          parse_float=_finite_float)
    except UnicodeDecodeError:
        raise ValidationError("the body is not UTF-8; send UTF-8 encoded JSON", field="body") from None
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"the body is not valid JSON ({exc}); send a JSON object", field="body") from None
    if not isinstance(data, dict):
        raise ValidationError(f"the body must be a JSON object, not {type(data).__name__}", field="body")
    return data
