"""Field checks shared by the batch ingestion services (sends, conversions, owners).

Each check takes the raw JSON value and the field path used in error messages
(``sends[3].sent_at``) and returns the normalised value or raises `ValidationError`.
They are plain functions on purpose: they run once per field of up to 10,000 rows per request.
"""
from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.errors import ValidationError

#: How far in the future a timestamp may be (clock skew between the client and us).
MAX_FUTURE = timedelta(days=1)
#: Earliest accepted timestamp: older dates are typos (and tracking tokens carry unsigned epochs).
MIN_DATETIME = datetime(2000, 1, 1, tzinfo=UTC)


class BatchTooLargeError(ValidationError):
    """More rows than one request may carry; the client should split the batch."""

    status = 413
    code = "batch_too_large"


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def batch_rows(body, key: str, max_rows: int) -> list:
    """The list under `key` of a batch body, checked for type and size."""
    if not isinstance(body, dict):
        raise ValidationError(f'send a JSON object like {{"{key}": [...]}}', field=key)
    unknown = sorted(name for name in body if name != key)
    if unknown:
        raise ValidationError(f'unknown field {unknown[0]!r}; the body is {{"{key}": [...]}} and nothing else',
                              field=unknown[0])
    rows = body.get(key)
    if rows is None:
        raise ValidationError(f'"{key}" is missing: send a JSON object like {{"{key}": [...]}}', field=key)
    if not isinstance(rows, list):
        raise ValidationError(f'"{key}" must be a list of objects', field=key)
    if len(rows) > max_rows:
        raise BatchTooLargeError(f"{len(rows)} rows in one request; send at most {max_rows} per request",
                                 field=key)
    return rows


class Bad(Exception):
    """A field check failed. Raised by the checks below without the field's path, which the row
    loop adds once (`sends[3].sent_at`): building a path string per field of every valid row would
    cost more than the checks. `suffix` extends the path inside the field (`[2]` for links[2])."""

    def __init__(self, message: str, suffix: str = ""):
        super().__init__(message)
        self.message = message
        self.suffix = suffix

    def at(self, prefix: str, index: int, name: str) -> ValidationError:
        return ValidationError(self.message, field=f"{prefix}[{index}].{name}{self.suffix}", index=index)


def check_keys(row, allowed: frozenset[str], prefix: str, index: int) -> None:
    if not isinstance(row, dict):
        raise ValidationError("each row must be a JSON object", field=f"{prefix}[{index}]", index=index)
    if not allowed.issuperset(row):
        unknown = sorted(set(row) - allowed)[0]
        raise ValidationError(f"unknown field {unknown!r}; allowed fields are {', '.join(sorted(allowed))}",
                              field=f"{prefix}[{index}].{unknown}", index=index)


def text(value, *, max_len: int, required: bool = False) -> str | None:
    """A string of at most `max_len` characters; None, or blank when not required, gives None."""
    if value is None:
        if required:
            raise Bad("is required")
        return None
    if type(value) is not str:
        raise Bad(f"must be a string, not {type(value).__name__}")
    if len(value) > max_len:
        raise Bad(f"is {len(value)} characters long; the maximum is {max_len}")
    if not value or value.isspace():
        if required:
            raise Bad("must not be empty")
        return None
    return value


def external_id(value, *, required: bool = True, max_len: int = 200) -> str | None:
    """A client's id for a lead, owner or send: 1..max_len characters, no surrounding whitespace."""
    value = text(value, max_len=max_len, required=required)
    if value is not None and (value[0].isspace() or value[-1].isspace()):
        raise Bad("must not start or end with whitespace")
    return value


def recipient_external_id(value) -> str:
    value = external_id(value)
    if "@" in value:
        raise Bad("looks like an e-mail address; send your CRM's lead id instead "
                  "(emailexp never stores e-mail addresses)")
    return value


def aware_datetime(value, *, now: datetime) -> datetime:
    """An ISO 8601 timestamp with a UTC offset, returned in UTC, at most `MAX_FUTURE` after `now`."""
    if value is None:
        raise Bad("is required (ISO 8601 with offset, e.g. 2026-12-04T09:30:00+09:00)")
    if type(value) is not str:
        raise Bad("must be an ISO 8601 string such as 2026-12-04T09:30:00+09:00")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Bad(f"{value[:40]!r} is not an ISO 8601 date-time; use e.g. 2026-12-04T09:30:00+09:00") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise Bad(f"{value[:40]!r} has no UTC offset; add one, e.g. {value[:19]}+09:00")
    parsed = parsed.astimezone(UTC)
    if parsed < MIN_DATETIME:
        raise Bad("is before the year 2000; check the date")
    if parsed > now + MAX_FUTURE:
        raise Bad("is more than one day in the future; check the date and its UTC offset")
    return parsed


def optional_int(value) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise Bad(f"must be an integer id, not {type(value).__name__}")
    if not 1 <= value < 2**63:
        raise Bad("must be a positive integer id")
    return value


def amount(value) -> Decimal | None:
    """A non-negative money amount with at most 2 decimals (Numeric(16, 2))."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise Bad("must be a number")
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise Bad(f"{str(value)[:40]!r} is not a number") from None
    if not number.is_finite():
        raise Bad("must be a finite number")
    if number < 0:
        raise Bad("must be 0 or more")
    if number != number.quantize(Decimal("0.01")):
        raise Bad("has more than 2 decimal places")
    if number >= Decimal(10) ** 14:
        raise Bad("is too large (at most 99,999,999,999,999.99)")
    return number.quantize(Decimal("0.01"))


_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def payload_hash(fields: tuple) -> str:
    """SHA-256 of a canonical JSON of a row's normalised fields: tells a retry from a conflict."""
    return hashlib.sha256(_CANONICAL.encode(fields).encode("utf-8")).hexdigest()


def insert_ignoring_duplicates(session: Session, table: sa.Table, rows: list[dict], unique_column: str) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, so two requests creating the same lead do not fail."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        insert = sa.insert
    stmt = insert(table)
    if hasattr(stmt, "on_conflict_do_nothing"):
        stmt = stmt.on_conflict_do_nothing(index_elements=[unique_column])
    session.execute(stmt, rows)


def in_values(session: Session, column, values: list) -> sa.ColumnElement[bool]:
    """`column IN values` as ONE bound parameter, however many values: `= ANY(array)` on PostgreSQL,
    `IN (SELECT value FROM json_each(?))` on SQLite. An expanding IN list with thousands of
    parameters costs more to compile than the query costs to run, and hits bind-parameter limits."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        item_type = sa.BigInteger() if values and isinstance(values[0], int) else sa.Text()
        return column == sa.any_(sa.bindparam(None, list(values), type_=ARRAY(item_type)))
    if dialect == "sqlite":
        each = sa.func.json_each(sa.bindparam(None, json.dumps(list(values)), type_=sa.Text)) \
            .table_valued("value")
        return column.in_(sa.select(each.c.value))
    return column.in_(list(values))  # pragma: no cover - only SQLite and PostgreSQL are supported


def ids_by_key(session: Session, key_column, id_column, keys: list[str], *extra_columns) -> dict:
    """Map each existing key to its id (or to a tuple with `extra_columns`), in one query."""
    found: dict = {}
    if not keys:
        return found
    query = sa.select(key_column, id_column, *extra_columns).where(in_values(session, key_column, keys))
    for row in session.execute(query):
        found[row[0]] = row[1] if not extra_columns else tuple(row[1:])
    return found


def ensure_ids(session: Session, model, key_attr: str, keys: set[str], make) -> dict[str, int]:
    """key -> id of `model` rows for every key, inserting the missing ones (`make(key)` -> column
    values) in one statement."""
    if not keys:
        return {}
    key_column = getattr(model, key_attr)
    ids = ids_by_key(session, key_column, model.id, list(keys))
    missing = [make(key) for key in keys if key not in ids]
    if missing:
        insert_ignoring_duplicates(session, model.__table__, missing, key_column.key)
        ids.update(ids_by_key(session, key_column, model.id, [key for key in keys if key not in ids]))
    return ids
