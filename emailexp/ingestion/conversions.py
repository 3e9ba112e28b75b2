"""Ingest conversions (meetings 商談 and deals 成約) from the CRM/SFA and attribute them to sends.

Attribution, decided once when the conversion is first ingested and stored with it:
1. `explicit`: the client named a send_id; it must exist and belong to the same recipient.
2. `window`: otherwise the recipient's latest send with `sent_at <= occurred_at` whose attribution
   window still covers `occurred_at` (`occurred_at - sent_at <= window`); the window is the send's
   experiment's `attribution_window_days`, or `default_window_days` for sends outside experiments.
   Ties on `sent_at` go to the send ingested last.
3. `unattributed`: no such send.
Idempotent on `conversion_id` and atomic per batch, like sends.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.errors import ConflictError, ValidationError
from emailexp.ingestion import _rows as v
from emailexp.ingestion.sends import IngestResult
from emailexp.models import Attribution, Conversion, ConversionKind, Experiment, Owner, Recipient, Send

CONVERSION_FIELDS = frozenset({"conversion_id", "kind", "recipient_id", "send_id", "occurred_at", "amount",
                               "owner_id"})
KINDS = frozenset(k.value for k in ConversionKind)


@dataclass(slots=True)
class PreparedConversion:
    index: int
    conversion_id: str
    kind: str
    recipient_id: str
    send_id: str | None
    occurred_at: datetime
    amount: Decimal | None
    owner_id: str | None
    payload_hash: str


def prepare_conversions(rows: list, *, now: datetime, field: str = "conversions") -> list[PreparedConversion]:
    """Check every row without touching the database; raise ValidationError at the first bad one."""
    prepared = []
    for i, row in enumerate(rows):
        v.check_keys(row, CONVERSION_FIELDS, field, i)
        get = row.get
        name = "conversion_id"
        try:
            conversion_id = v.external_id(get("conversion_id"))
            name = "kind"
            kind = get("kind")
            if kind is None:
                raise v.Bad("is required: 'meeting' or 'deal'")
            if kind not in KINDS:
                raise v.Bad(f"{str(kind)[:40]!r} is not a conversion kind; use 'meeting' or 'deal'")
            name = "recipient_id"
            recipient_id = v.recipient_external_id(get("recipient_id"))
            name = "send_id"
            send_id = v.external_id(get("send_id"), required=False)
            name = "occurred_at"
            occurred_at = v.aware_datetime(get("occurred_at"), now=now)
            name = "amount"
            amount = v.amount(get("amount"))
            if amount is not None and kind != ConversionKind.deal:
                raise v.Bad("only deals have an amount; leave it out for meetings")
            name = "owner_id"
            owner_id = v.external_id(get("owner_id"), required=False, max_len=120)
        except v.Bad as bad:
            raise bad.at(field, i, name) from None
        digest = v.payload_hash((conversion_id, kind, recipient_id, send_id, occurred_at.isoformat(),
                                 None if amount is None else str(amount), owner_id))
        prepared.append(PreparedConversion(i, conversion_id, kind, recipient_id, send_id, occurred_at, amount,
                                           owner_id, digest))
    return prepared


def _window_candidates(session: Session, recipient_pks: list[int], until: datetime, since: datetime):
    """recipient pk -> [(sent_at, send pk, client send_id, window days or None)], newest first."""
    by_recipient: dict[int, list] = defaultdict(list)
    query = (sa.select(Send.recipient_id, Send.sent_at, Send.id, Send.send_id, Experiment.attribution_window_days)
             .outerjoin(Experiment, Experiment.id == Send.experiment_id)
             .where(v.in_values(session, Send.recipient_id, recipient_pks), Send.sent_at <= until,
                    Send.sent_at >= since))
    for recipient_pk, sent_at, send_pk, send_id, window in session.execute(query):
        by_recipient[recipient_pk].append((sent_at, send_pk, send_id, window))
    for sends in by_recipient.values():
        sends.sort(reverse=True)
    return by_recipient


def ingest_conversions(session: Session, rows: list, *, default_window_days: int, now: datetime,
                       field: str = "conversions", dry_run: bool = False) -> IngestResult:
    """Validate, attribute and store a batch of conversions.

    Items: `{"conversion_id", "send_id": <attributed client send id or null>, "attribution"}` per row,
    in input order. Raises ValidationError (422: bad field, unknown send, send of another
    recipient) or ConflictError (409: a conversion_id stored with different content); never commits.
    """
    prepared = prepare_conversions(rows, now=now, field=field)
    first: dict[str, PreparedConversion] = {}
    for row in prepared:
        seen = first.get(row.conversion_id)
        if seen is None:
            first[row.conversion_id] = row
        elif seen.payload_hash != row.payload_hash:
            raise ConflictError(f"conversion_id {row.conversion_id!r} appears twice in this batch with different "
                                f"content (first at index {seen.index})", field=f"{field}[{row.index}]",
                                index=row.index)
    stored: dict[str, tuple] = {}
    if first:
        query = (sa.select(Conversion.conversion_id, Conversion.payload_hash, Send.send_id, Conversion.attribution)
                 .outerjoin(Send, Send.id == Conversion.send_id)
                 .where(v.in_values(session, Conversion.conversion_id, list(first))))
        for conversion_id, digest, send_id, attribution in session.execute(query):
            stored[conversion_id] = (digest, send_id, attribution)
    for row in prepared:
        known = stored.get(row.conversion_id)
        if known is not None and known[0] != row.payload_hash:
            raise ConflictError(f"conversion_id {row.conversion_id!r} was already ingested with different content; "
                                "use a new conversion_id for a different conversion", field=f"{field}[{row.index}]",
                                index=row.index)
    new = [row for conversion_id, row in first.items() if conversion_id not in stored]

    # Explicit sends: they must exist and belong to the conversion's recipient.
    named: dict[str, tuple[int, str]] = {}
    wanted = list({r.send_id for r in new if r.send_id})
    if wanted:
        query = (sa.select(Send.send_id, Send.id, Recipient.external_id)
                 .join(Recipient, Recipient.id == Send.recipient_id).where(v.in_values(session, Send.send_id, wanted)))
        for send_id, send_pk, recipient in session.execute(query):
            named[send_id] = (send_pk, recipient)
    for row in new:
        if row.send_id is None:
            continue
        send = named.get(row.send_id)
        if send is None:
            raise ValidationError(f"send {row.send_id!r} does not exist; ingest it first or leave send_id out",
                                  field=f"{field}[{row.index}].send_id", index=row.index)
        if send[1] != row.recipient_id:
            raise ValidationError(f"send {row.send_id!r} went to another recipient, not {row.recipient_id!r}",
                                  field=f"{field}[{row.index}].send_id", index=row.index)
    if dry_run:
        return IngestResult(len(new), len(prepared) - len(new), [])

    answers: dict[str, tuple[str | None, str]] = {cid: (known[1], known[2]) for cid, known in stored.items()}
    if new:
        owner_ids = v.ensure_ids(session, Owner, "external_id", {r.owner_id for r in new if r.owner_id},
                            lambda key: {"external_id": key, "name": key, "created_at": now})
        recipient_ids = v.ensure_ids(session, Recipient, "external_id", {r.recipient_id for r in new},
                                lambda key: {"external_id": key, "segment_id": None, "created_at": now})
        windowed = [r for r in new if r.send_id is None]
        candidates = {}
        if windowed:
            max_window = max(default_window_days, session.scalar(
                sa.select(sa.func.max(Experiment.attribution_window_days))) or 0)
            candidates = _window_candidates(
                session, list({recipient_ids[r.recipient_id] for r in windowed}),
                until=max(r.occurred_at for r in windowed),
                since=min(r.occurred_at for r in windowed) - timedelta(days=max_window))
        params = []
        for row in new:
            recipient_pk = recipient_ids[row.recipient_id]
            if row.send_id is not None:
                send_pk, send_id, attribution = named[row.send_id][0], row.send_id, Attribution.explicit
            else:
                send_pk = send_id = None
                attribution = Attribution.unattributed
                for sent_at, pk, client_id, window in candidates.get(recipient_pk, ()):
                    if sent_at <= row.occurred_at and \
                            row.occurred_at - sent_at <= timedelta(days=window or default_window_days):
                        send_pk, send_id, attribution = pk, client_id, Attribution.window
                        break
            answers[row.conversion_id] = (send_id, attribution.value)
            params.append({
                "conversion_id": row.conversion_id, "kind": row.kind, "recipient_id": recipient_pk,
                "send_id": send_pk, "attribution": attribution.value,
                "owner_id": owner_ids[row.owner_id] if row.owner_id else None, "amount": row.amount,
                "occurred_at": row.occurred_at, "payload_hash": row.payload_hash, "created_at": now,
            })
        session.execute(sa.insert(Conversion.__table__), params)

    items = [{"conversion_id": row.conversion_id, "send_id": answers[row.conversion_id][0],
              "attribution": answers[row.conversion_id][1]} for row in prepared]
    return IngestResult(len(new), len(prepared) - len(new), items)
