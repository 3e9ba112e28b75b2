"""Shared helper: JSON-safe ``to_dict`` for frozen result dataclasses."""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """Convert dataclasses, tuples, numpy scalars and dates into JSON-safe Python values.

    Non-finite floats (NaN, +-inf) become ``None``: an undefined quantity is ``null`` in JSON.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


class ToDictMixin:
    """Adds ``to_dict()`` (JSON-safe, recursive) to a dataclass."""

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self)
