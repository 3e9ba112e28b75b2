"""Experiments: create, edit, start, stop, and the segments their variants target."""
from __future__ import annotations

import re
from datetime import UTC, datetime, time
from functools import lru_cache
from zoneinfo import available_timezones

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session, selectinload

from emailexp.errors import NotFoundError, StateError, ValidationError
from emailexp.models import Experiment, ExperimentStatus, PrimaryMetric, Segment, Variant, utcnow

#: Experiment ids are INTEGER columns; larger path ids are "not found", not a database error.
MAX_ID = 2**31 - 1

SEGMENT_KEY_RE = re.compile(r"[A-Za-z0-9_.\-]{1,120}")


def validate_segment_key(key, field: str = "segment") -> str:
    if not isinstance(key, str) or not SEGMENT_KEY_RE.fullmatch(key):
        raise ValidationError("a segment key is 1 to 120 characters of letters, digits, '_', '.' or '-'",
                              field=field)
    return key


def get_or_create_segment(session: Session, key: str, *, field: str = "segment") -> Segment:
    """The segment with this key, created (named after its key) on first use.

    Validates the key (1-120 chars of [A-Za-z0-9_.-]; ValidationError naming `field` otherwise).
    Safe against a concurrent creator: the insert runs in a savepoint and a unique-key collision
    falls back to reading the row the other transaction wrote. Flushes; never commits.
    """
    validate_segment_key(key, field)
    segment = session.scalar(sa.select(Segment).where(Segment.key == key))
    if segment is not None:
        return segment
    try:
        with session.begin_nested():
            segment = Segment(key=key, name=key)
            session.add(segment)
    except IntegrityError:
        segment = session.scalar(sa.select(Segment).where(Segment.key == key))
        if segment is None:  # pragma: no cover - the collision was not on the key
            raise
    return segment


# --- field checks -------------------------------------------------------------------------------
# Each returns the normalised value or raises ValidationError naming the field path.

EXPERIMENT_FIELDS = frozenset({
    "name", "hypothesis", "timezone", "primary_metric", "guardrails", "attribution_window_days",
    "baseline_rate", "mde_relative", "alpha", "power", "variants",
})
VARIANT_FIELDS = frozenset({"key", "subject", "send_weekday", "send_time", "segment", "weight", "is_control"})
GUARDRAIL_METRICS = ("meeting_rate", "deal_rate")
VARIANT_KEY_RE = re.compile(r"[A-Za-z0-9_\-]{1,64}")
SEND_TIME_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
MIN_VARIANTS, MAX_VARIANTS = 2, 8
MAX_WEIGHT = 1_000_000.0
MAX_HYPOTHESIS = 10_000


def _type_name(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "integer", float: "number"}.get(type(value), type(value).__name__)


def check_text(value, field: str, *, min_len: int = 0, max_len: int, index: int | None = None) -> str:
    """A string of min_len..max_len characters; NUL and unpaired surrogates are refused because
    PostgreSQL cannot store them. With min_len >= 1 a blank (whitespace-only) string is refused too."""
    if not isinstance(value, str):
        raise ValidationError(f"must be a string, not {_type_name(value)}", field=field, index=index)
    if "\x00" in value:
        raise ValidationError("must not contain the NUL character (\\u0000)", field=field, index=index)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("contains an unpaired surrogate; send valid Unicode text", field=field,
                              index=index) from None
    if min_len and not value.strip():
        raise ValidationError("must not be empty or blank", field=field, index=index)
    if not min_len <= len(value) <= max_len:
        raise ValidationError(f"is {len(value)} characters long; give {min_len} to {max_len}", field=field,
                              index=index)
    return value


def check_int(value, field: str, lo: int, hi: int, *, index: int | None = None) -> int:
    # JSON Schema counts 14.0 as an integer, so accept integral floats as well.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"must be an integer from {lo} to {hi}, not {_type_name(value)}", field=field,
                              index=index)
    if not lo <= value <= hi:
        raise ValidationError(f"is {value}; give an integer from {lo} to {hi}", field=field, index=index)
    return value


def check_number(value, field: str, lo: float, hi: float, *, lo_open: bool, hi_open: bool,
                 index: int | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"must be a number, not {_type_name(value)}", field=field, index=index)
    try:
        value = float(value)
    except OverflowError:
        raise ValidationError("is too large; give a number in the allowed range", field=field, index=index) from None
    too_low = value <= lo if lo_open else value < lo
    too_high = value >= hi if hi_open else value > hi
    if too_low or too_high or value != value:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValidationError(f"is {value:g}; give a number in {interval}", field=field, index=index)
    return value


def check_bool(value, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"must be true or false, not {_type_name(value)}", field=field)
    return value


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(value, field: str = "timezone") -> str:
    check_text(value, field, min_len=1, max_len=64)
    if value not in _timezones():
        raise ValidationError(f"{value!r} is not an IANA timezone; use a name such as 'Asia/Tokyo' or 'UTC'",
                              field=field)
    return value


def check_unknown_fields(data: dict, allowed: frozenset[str], prefix: str = "") -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}; allowed fields are {', '.join(sorted(allowed))}",
                              field=f"{prefix}{unknown[0]}")


def _check_fields(data: dict) -> dict:
    """Validate the top-level scalar fields present in `data` (variants are checked separately)."""
    out: dict = {}
    if "name" in data:
        out["name"] = check_text(data["name"], "name", min_len=1, max_len=200).strip()
    if "hypothesis" in data:
        out["hypothesis"] = check_text(data["hypothesis"], "hypothesis", max_len=MAX_HYPOTHESIS)
    if "timezone" in data:
        out["timezone"] = check_timezone(data["timezone"])
    if "primary_metric" in data:
        metric = data["primary_metric"]
        if metric not in tuple(PrimaryMetric):
            raise ValidationError(f"must be one of {', '.join(PrimaryMetric)}", field="primary_metric")
        out["primary_metric"] = str(metric)
    if "guardrails" in data:
        guardrails = data["guardrails"]
        if not isinstance(guardrails, list):
            raise ValidationError(f"must be a list of metric names, not {_type_name(guardrails)}",
                                  field="guardrails")
        for i, metric in enumerate(guardrails):
            if metric not in GUARDRAIL_METRICS:
                raise ValidationError(f"must be one of {', '.join(GUARDRAIL_METRICS)}", field=f"guardrails[{i}]")
            if metric in guardrails[:i]:
                raise ValidationError(f"{metric!r} is listed twice", field=f"guardrails[{i}]")
        out["guardrails"] = list(guardrails)
    if "attribution_window_days" in data:
        out["attribution_window_days"] = check_int(data["attribution_window_days"], "attribution_window_days",
                                                   1, 365)
    if "baseline_rate" in data:
        out["baseline_rate"] = None if data["baseline_rate"] is None else check_number(
            data["baseline_rate"], "baseline_rate", 0, 1, lo_open=True, hi_open=True)
    if "mde_relative" in data:
        out["mde_relative"] = None if data["mde_relative"] is None else check_number(
            data["mde_relative"], "mde_relative", 0, 10, lo_open=True, hi_open=False)
    if "alpha" in data:
        out["alpha"] = check_number(data["alpha"], "alpha", 0, 0.5, lo_open=True, hi_open=True)
    if "power" in data:
        out["power"] = check_number(data["power"], "power", 0.5, 1, lo_open=True, hi_open=True)
    return out


def _check_variants(session: Session, raw) -> list[dict]:
    """Validate the variant list; returns dicts ready for `Variant(**...)` (segment resolved to its id).

    If no variant is flagged `is_control`, the first one is the control; more than one is refused.
    """
    if not isinstance(raw, list):
        raise ValidationError(f"must be a list of {MIN_VARIANTS} to {MAX_VARIANTS} variants, not "
                              f"{_type_name(raw)}", field="variants")
    if not MIN_VARIANTS <= len(raw) <= MAX_VARIANTS:
        raise ValidationError(f"has {len(raw)} variants; give {MIN_VARIANTS} to {MAX_VARIANTS}", field="variants")
    variants: list[dict] = []
    seen_keys: dict[str, int] = {}
    control_index: int | None = None
    for i, item in enumerate(raw):
        path = f"variants[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(f"must be an object, not {_type_name(item)}", field=path)
        check_unknown_fields(item, VARIANT_FIELDS, prefix=f"{path}.")
        key = item.get("key")
        if not isinstance(key, str) or not VARIANT_KEY_RE.fullmatch(key):
            raise ValidationError("a variant key is 1 to 64 characters of letters, digits, '_' or '-' "
                                  "(e.g. \"A\")", field=f"{path}.key")
        if key in seen_keys:
            raise ValidationError(f"key {key!r} is already used by variants[{seen_keys[key]}]; keys must be unique",
                                  field=f"{path}.key")
        seen_keys[key] = i
        subject = item.get("subject")
        subject = "" if subject is None else check_text(subject, f"{path}.subject", max_len=500)
        weekday = item.get("send_weekday")
        if weekday is not None:
            weekday = check_int(weekday, f"{path}.send_weekday", 0, 6)
        send_time = item.get("send_time")
        if send_time is not None:
            match = SEND_TIME_RE.fullmatch(send_time) if isinstance(send_time, str) else None
            if match is None:
                raise ValidationError("must be a local time \"HH:MM\" from 00:00 to 23:59, or null",
                                      field=f"{path}.send_time")
            send_time = time(int(match[1]), int(match[2]))
        segment_key = item.get("segment")
        segment_id = None
        if segment_key is not None:
            segment_id = get_or_create_segment(session, segment_key, field=f"{path}.segment").id
        weight = item.get("weight", 1.0)
        weight = check_number(weight, f"{path}.weight", 0, MAX_WEIGHT, lo_open=True, hi_open=False)
        is_control = check_bool(item.get("is_control", False), f"{path}.is_control")
        if is_control:
            if control_index is not None:
                raise ValidationError(f"variants[{control_index}] is already the control; flag exactly one",
                                      field=f"{path}.is_control")
            control_index = i
        variants.append({"key": key, "subject": subject, "send_weekday": weekday, "send_time": send_time,
                         "segment_id": segment_id, "weight": weight, "is_control": is_control})
    if control_index is None:
        variants[0]["is_control"] = True
    return variants


# --- services -----------------------------------------------------------------------------------

def create_experiment(session: Session, data: dict, *, default_timezone: str = "UTC") -> Experiment:
    """Validate `data` (the API's POST body) and add a draft experiment with its variants. Flushes.

    `default_timezone` is the workspace TIMEZONE used when `data` has no timezone.
    """
    if not isinstance(data, dict):
        raise ValidationError("send a JSON object describing the experiment", field="body")
    check_unknown_fields(data, EXPERIMENT_FIELDS)
    if "name" not in data:
        raise ValidationError("is required: give the experiment a name of 1 to 200 characters", field="name")
    if "variants" not in data:
        raise ValidationError(f"is required: give {MIN_VARIANTS} to {MAX_VARIANTS} variants", field="variants")
    fields = _check_fields(data)
    variants = _check_variants(session, data["variants"])
    fields.setdefault("timezone", default_timezone)
    experiment = Experiment(status=ExperimentStatus.draft.value, **fields)
    experiment.variants = [Variant(**v) for v in variants]
    session.add(experiment)
    session.flush()
    return experiment


def update_experiment(session: Session, experiment_id: int, data: dict) -> Experiment:
    """Apply the fields present in `data`. Variants can only be replaced while the experiment is a draft
    (StateError otherwise); a replaced variant keeps its id when its key stays. Flushes."""
    if not isinstance(data, dict):
        raise ValidationError("send a JSON object with the fields to change", field="body")
    experiment = get_experiment(session, experiment_id)
    check_unknown_fields(data, EXPERIMENT_FIELDS)
    fields = _check_fields(data)
    if "variants" in data:
        if experiment.status != ExperimentStatus.draft:
            raise StateError(f"the experiment is {experiment.status}; variants can only be changed while it is "
                             "a draft (create a new experiment instead)", field="variants")
        new_variants = _check_variants(session, data["variants"])
        existing = {v.key: v for v in experiment.variants}
        kept: list[Variant] = []
        for spec in new_variants:
            variant = existing.get(spec["key"])
            if variant is None:
                variant = Variant(**spec)
            else:
                for name, value in spec.items():
                    setattr(variant, name, value)
            kept.append(variant)
        experiment.variants = kept
    for name, value in fields.items():
        setattr(experiment, name, value)
    session.flush()
    return experiment


def get_experiment(session: Session, experiment_id: int) -> Experiment:
    """The experiment, or NotFoundError (also for ids outside the integer column's range)."""
    if isinstance(experiment_id, bool) or not isinstance(experiment_id, int) or not 1 <= experiment_id <= MAX_ID:
        raise NotFoundError(f"experiment {experiment_id} does not exist", field="experiment_id")
    experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        raise NotFoundError(f"experiment {experiment_id} does not exist", field="experiment_id")
    return experiment


def list_experiments(session: Session, status: str | None = None) -> list[Experiment]:
    """All experiments, newest first, optionally only those with `status`."""
    query = sa.select(Experiment).order_by(Experiment.id.desc())
    if status is not None:
        if status not in tuple(ExperimentStatus):
            raise ValidationError(f"must be one of {', '.join(ExperimentStatus)}", field="status")
        query = query.where(Experiment.status == status)
    return list(session.scalars(query.options(selectinload(Experiment.variants))))


def start_experiment(session: Session, experiment_id: int, *, now: datetime | None = None) -> Experiment:
    """draft → running; StateError from any other state."""
    experiment = get_experiment(session, experiment_id)
    if experiment.status != ExperimentStatus.draft:
        raise StateError(f"the experiment is {experiment.status}; only a draft can be started", field="status")
    experiment.status = ExperimentStatus.running.value
    experiment.started_at = now or utcnow()
    session.flush()
    return experiment


def stop_experiment(session: Session, experiment_id: int, *, now: datetime | None = None) -> Experiment:
    """running → stopped; StateError from any other state."""
    experiment = get_experiment(session, experiment_id)
    if experiment.status != ExperimentStatus.running:
        raise StateError(f"the experiment is {experiment.status}; only a running experiment can be stopped",
                         field="status")
    experiment.status = ExperimentStatus.stopped.value
    experiment.stopped_at = now or utcnow()
    session.flush()
    return experiment


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def experiment_to_dict(experiment: Experiment) -> dict:
    """The API representation (see /tmp/briefs/api_shapes.md). Datetimes are ISO 8601 in UTC;
    a variant without a subject has `"subject": null`."""
    segment_ids = {v.segment_id for v in experiment.variants if v.segment_id is not None}
    segment_keys: dict[int, str] = {}
    if segment_ids:
        session = object_session(experiment)
        segment_keys = dict(session.execute(sa.select(Segment.id, Segment.key).where(Segment.id.in_(segment_ids))).all())
    return {
        "id": experiment.id,
        "name": experiment.name,
        "hypothesis": experiment.hypothesis,
        "status": experiment.status,
        "timezone": experiment.timezone,
        "primary_metric": experiment.primary_metric,
        "guardrails": list(experiment.guardrails),
        "attribution_window_days": experiment.attribution_window_days,
        "baseline_rate": experiment.baseline_rate,
        "mde_relative": experiment.mde_relative,
        "alpha": experiment.alpha,
        "power": experiment.power,
        "created_at": _iso(experiment.created_at),
        "started_at": _iso(experiment.started_at),
        "stopped_at": _iso(experiment.stopped_at),
        "variants": [
            {
                "id": v.id,
                "key": v.key,
                "subject": v.subject or None,
                "send_weekday": v.send_weekday,
                "send_time": None if v.send_time is None else v.send_time.strftime("%H:%M"),
                "segment": segment_keys.get(v.segment_id) if v.segment_id is not None else None,
                "weight": v.weight,
                "is_control": v.is_control,
            }
            for v in experiment.variants
        ],
    }
