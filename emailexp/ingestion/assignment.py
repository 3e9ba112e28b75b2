"""Deterministic assignment of recipients to the variants of an experiment.

How a recipient gets a variant
------------------------------
u = SHA-256(salt || 0x1F || recipient_id) read as a 53-bit fraction, uniform in [0, 1); the variant
is the one whose slice of [0, 1) contains u, slices laid out in variant order with widths
proportional to `weight` among the variants *eligible* for the recipient (`choose_variant`).

* Deterministic: nothing is stored. The same recipient id and segment in the same experiment
  give the same variant in every call, whatever else is in the batch.
* Weighted: u is uniform, so each eligible variant gets weight / sum(eligible weights) of a segment
  in expectation (the counts are multinomial; balance within a segment is "within binomial noise",
  not exact, because exact balance needs state or batch-dependent ranking, which would break the
  previous point).
* Segment targeting: a variant with a target segment only receives recipients of that segment;
  variants without one receive everybody. Recipients of a segment are therefore split over the
  untargeted variants plus those targeting their segment; a recipient no variant accepts is a 422.
* Independent across experiments: the salt is `emailexp-assign:{experiment.id}:{created_at}` (UTC,
  microseconds), so two experiments hash the same recipient to unrelated u's. It derives from
  stored columns only, not from the app secret, so rotating EMAILEXP_SECRET_KEY never reshuffles a
  running experiment; it is not a secret (knowing a recipient's variant in advance is harmless).
  Changing a draft's variants or weights can move recipients; a running experiment's cannot change.

scheduled_at is the next occurrence after `now`, in the experiment's timezone, of the variant's
slot: weekday + time → that weekday at that time; time only → the next day (today included) at
that time; weekday only → the next instant on that weekday, rounded up to the whole minute (now,
if today is that weekday); neither → null. A slot time that falls in a DST gap is the same instant
as the time after the jump (02:30 in a 02:00→03:00 gap is 03:30); an ambiguous time is its first
occurrence.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.errors import StateError, ValidationError
from emailexp.ingestion.experiments import SEGMENT_KEY_RE, check_text, get_experiment
from emailexp.models import ExperimentStatus, Segment

RECIPIENT_FIELDS = frozenset({"id", "segment"})


class BatchTooLargeError(ValidationError):
    """More recipients than one request may carry (413, like the other batch endpoints)."""

    status = 413
    code = "batch_too_large"

DEFAULT_MAX_BATCH = 10_000
_SCALE = float(2**53)


def assignment_salt(experiment_id: int, created_at: datetime) -> str:
    """The per-experiment salt (see the module docstring)."""
    return f"emailexp-assign:{experiment_id}:{created_at.astimezone(UTC).isoformat(timespec='microseconds')}"


def hash_unit(salt: str, recipient_id: str) -> float:
    """A uniform number in [0, 1) from the salt and the recipient id (53 bits of SHA-256)."""
    digest = hashlib.sha256(f"{salt}\x1f{recipient_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / _SCALE


def choose_variant(u: float, weighted: Sequence[tuple[str, float]]) -> str:
    """The key whose slice of [0, 1) contains u; slices in the given order, widths ∝ weights (> 0)."""
    if not weighted:
        raise ValueError("no variant to choose from")
    total = sum(weight for _, weight in weighted)
    threshold = u * total
    cumulative = 0.0
    for key, weight in weighted:
        cumulative += weight
        if threshold < cumulative:
            return key
    return weighted[-1][0]  # u * total rounded up to the total


def next_slot(now: datetime, tz: ZoneInfo, weekday: int | None, at: time | None) -> datetime | None:
    """The next occurrence after `now` of a weekday/time slot, aware in `tz` (see module docstring)."""
    if weekday is None and at is None:
        return None
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local_now = now.astimezone(tz)
    if at is None:
        ceil = local_now.replace(second=0, microsecond=0)
        if ceil < local_now:
            ceil += timedelta(minutes=1)
        if ceil.date().weekday() == weekday:
            return ceil.astimezone(tz)
        day = local_now.date() + timedelta(days=1)
        while day.weekday() != weekday:
            day += timedelta(days=1)
        return _local(day, time(0, 0), tz)
    day = local_now.date()
    for _ in range(9):  # today + at most 7 more days always contains the slot
        if weekday is None or day.weekday() == weekday:
            candidate = _local(day, at, tz)
            if candidate > now:
                return candidate
        day += timedelta(days=1)
    raise AssertionError("unreachable: a weekly slot always recurs within 8 days")  # pragma: no cover


def _local(day, at: time, tz: ZoneInfo) -> datetime:
    # Round trip through UTC to normalise times in a DST gap to a real wall-clock time.
    naive = datetime.combine(day, at)
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)


def _check_recipients(recipients, max_batch: int) -> list[tuple[str, str | None]]:
    if not isinstance(recipients, list):
        raise ValidationError('send {"recipients": [{"id": "lead-42", "segment": "enterprise"}, ...]}',
                              field="recipients")
    if len(recipients) > max_batch:
        raise BatchTooLargeError(f"{len(recipients)} recipients in one request; send at most {max_batch} per "
                                 "request", field="recipients")
    rows: list[tuple[str, str | None]] = []
    first_seen: dict[str, int] = {}
    for i, item in enumerate(recipients):
        path = f"recipients[{i}]"
        if not isinstance(item, dict):
            raise ValidationError("each recipient must be an object like {\"id\": \"lead-42\"}", field=path, index=i)
        unknown = sorted(set(item) - RECIPIENT_FIELDS)
        if unknown:
            raise ValidationError(f"unknown field {unknown[0]!r}; allowed fields are id, segment",
                                  field=f"{path}.{unknown[0]}", index=i)
        if "id" not in item:
            raise ValidationError("is required: the recipient's id in your CRM (never an e-mail address)",
                                  field=f"{path}.id", index=i)
        rid = check_text(item["id"], f"{path}.id", min_len=1, max_len=200, index=i)
        if "@" in rid:
            raise ValidationError("looks like an e-mail address; send your CRM's id for the lead instead "
                                  "(no personal data is stored)", field=f"{path}.id", index=i)
        segment = item.get("segment")
        if segment is not None and (not isinstance(segment, str) or not SEGMENT_KEY_RE.fullmatch(segment)):
            raise ValidationError("a segment key is 1 to 120 characters of letters, digits, '_', '.' or '-', "
                                  "or null", field=f"{path}.segment", index=i)
        if rid in first_seen:
            j = first_seen[rid]
            if rows[j][1] != segment:
                raise ValidationError(f"recipient {rid!r} is also at recipients[{j}] with another segment; "
                                      "send one segment per recipient", field=f"{path}.segment", index=i)
        else:
            first_seen[rid] = i
        rows.append((rid, segment))
    return rows


def assign_recipients(session: Session, experiment_id: int, recipients: list[dict], now: datetime, *,
                      max_batch: int = DEFAULT_MAX_BATCH) -> list[dict]:
    """Assign each recipient ({"id", "segment"?}) to a variant; one dict per input row, in order:
    {"recipient_id", "segment", "variant", "scheduled_at"} (scheduled_at: ISO 8601 in the experiment's
    timezone, or None). Reads only; writes nothing. Draft and running experiments can be assigned
    (a draft's assignments change if its variants do); a stopped one raises StateError.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    experiment = get_experiment(session, experiment_id)
    if experiment.status == ExperimentStatus.stopped:
        raise StateError("the experiment is stopped; assign recipients to a draft or running experiment",
                         field="status")
    rows = _check_recipients(recipients, max_batch)

    variants = list(experiment.variants)
    segment_ids = {v.segment_id for v in variants if v.segment_id is not None}
    segment_key_of: dict[int, str] = {}
    if segment_ids:
        segment_key_of = dict(session.execute(
            sa.select(Segment.id, Segment.key).where(Segment.id.in_(segment_ids))).all())
    tz = ZoneInfo(experiment.timezone)
    slots: dict[str, str | None] = {}
    for v in variants:
        slot = next_slot(now, tz, v.send_weekday, v.send_time)
        slots[v.key] = None if slot is None else slot.isoformat()
    untargeted = [(v.key, v.weight) for v in variants if v.segment_id is None]
    eligible_by_segment: dict[str | None, list[tuple[str, float]]] = {None: untargeted}
    for v in variants:
        if v.segment_id is not None:
            key = segment_key_of[v.segment_id]
            eligible_by_segment.setdefault(key, [])
    for seg in eligible_by_segment:
        if seg is not None:
            eligible_by_segment[seg] = [(v.key, v.weight) for v in variants
                                        if v.segment_id is None or segment_key_of[v.segment_id] == seg]

    salt = assignment_salt(experiment.id, experiment.created_at)
    out: list[dict] = []
    for i, (rid, segment) in enumerate(rows):
        eligible = eligible_by_segment.get(segment, untargeted)
        if not eligible:
            targeted = sorted(set(segment_key_of.values()))
            raise ValidationError(
                f"no variant of this experiment accepts {'recipients without a segment' if segment is None else f'segment {segment!r}'}"
                f"; its variants target only {', '.join(targeted)}", field=f"recipients[{i}].segment", index=i)
        key = choose_variant(hash_unit(salt, rid), eligible)
        out.append({"recipient_id": rid, "segment": segment, "variant": key, "scheduled_at": slots[key]})
    return out
