"""ingest_conversions: attribution rules, amounts, idempotency."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from emailexp.errors import ConflictError, ValidationError
from emailexp.ingestion.conversions import ingest_conversions
from emailexp.ingestion.sends import ingest_sends
from emailexp.models import Conversion, Owner, Recipient
from emailexp.tracking.tokens import tracking_key

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def send(session, send_id, recipient, days_ago, **extra):
    sent_at = (NOW - timedelta(days=days_ago)).isoformat()
    ingest_sends(session, [{"send_id": send_id, "recipient_id": recipient, "subject": "Hi", "sent_at": sent_at,
                            **extra}],
                 public_url="http://t.test", tracking_key=tracking_key("k"), workspace_tz="UTC", now=NOW)
    session.commit()


def convert(session, rows, window=14):
    return ingest_conversions(session, rows, default_window_days=window, now=NOW)


def conversion(cid="c-1", recipient="lead-1", days_ago=0, **extra):
    return {"conversion_id": cid, "kind": "meeting", "recipient_id": recipient,
            "occurred_at": (NOW - timedelta(days=days_ago)).isoformat(), **extra}


def test_explicit_send_wins_over_a_later_one(session):
    send(session, "s-old", "lead-1", 10)
    send(session, "s-new", "lead-1", 2)
    result = convert(session, [conversion(send_id="s-old")])
    assert result.items == [{"conversion_id": "c-1", "send_id": "s-old", "attribution": "explicit"}]


def test_window_picks_the_latest_send_at_or_before_the_conversion(session):
    send(session, "s-10", "lead-1", 10)
    send(session, "s-3", "lead-1", 3)
    send(session, "s-after", "lead-1", 0.5)       # after the conversion: not a cause
    send(session, "s-other", "lead-2", 1)         # another recipient
    result = convert(session, [conversion(days_ago=1)])
    assert result.items[0] == {"conversion_id": "c-1", "send_id": "s-3", "attribution": "window"}


def test_outside_the_window_is_unattributed(session):
    send(session, "s-20", "lead-1", 20)
    result = convert(session, [conversion(), conversion("c-2", days_ago=6)], window=14)
    assert [item["attribution"] for item in result.items] == ["unattributed", "window"]
    assert result.items[0]["send_id"] is None and result.items[1]["send_id"] == "s-20"


def test_experiment_window_applies_to_its_sends(session, experiment_factory):
    experiment = experiment_factory(window=30)
    send(session, "s-exp", "lead-1", 20, experiment_id=experiment.id, variant="A", subject=None)
    send(session, "s-plain", "lead-2", 20)
    result = convert(session, [conversion(recipient="lead-1"), conversion("c-2", recipient="lead-2")], window=14)
    assert [(i["send_id"], i["attribution"]) for i in result.items] == [("s-exp", "window"), (None, "unattributed")]


def test_named_send_must_belong_to_the_recipient_and_exist(session):
    send(session, "s-1", "lead-1", 1)
    with pytest.raises(ValidationError) as err:
        convert(session, [conversion(), conversion("c-2", recipient="lead-2", send_id="s-1")])
    assert (err.value.field, err.value.index) == ("conversions[1].send_id", 1)
    with pytest.raises(ValidationError) as err:
        convert(session, [conversion(send_id="s-missing")])
    assert err.value.field == "conversions[0].send_id"


def test_deal_amount_and_owner_are_stored_and_unknown_recipients_created(session):
    result = convert(session, [conversion(kind="deal", recipient="lead-9", amount=1200000, owner_id="rep-7"),
                               conversion("c-2", kind="deal", amount="99.5")])
    session.commit()
    assert result.created == 2
    stored = {c.conversion_id: c for c in session.scalars(sa.select(Conversion))}
    assert stored["c-1"].amount == Decimal("1200000") and stored["c-2"].amount == Decimal("99.50")
    assert session.scalar(sa.select(Owner.external_id).where(Owner.id == stored["c-1"].owner_id)) == "rep-7"
    recipient = session.scalar(sa.select(Recipient.external_id).where(Recipient.id == stored["c-1"].recipient_id))
    assert recipient == "lead-9"


@pytest.mark.parametrize(("extra", "field"), [
    ({"amount": 100}, "amount"),                          # meetings have no amount
    ({"kind": "deal", "amount": -1}, "amount"),
    ({"kind": "deal", "amount": 1.234}, "amount"),
    ({"kind": "deal", "amount": True}, "amount"),
    ({"kind": "sale"}, "kind"),
    ({"kind": None}, "kind"),
    ({"recipient_id": "someone@example.com"}, "recipient_id"),
    ({"occurred_at": "2026-12-01T10:00:00"}, "occurred_at"),
    ({"conversion_id": ""}, "conversion_id"),
    ({"send_id": 5}, "send_id"),
    ({"extra": 1}, "extra"),
])
def test_invalid_fields(session, extra, field):
    with pytest.raises(ValidationError) as err:
        convert(session, [conversion("c-0"), conversion(**extra)])
    assert (err.value.field, err.value.index) == (f"conversions[1].{field}", 1)


def test_retry_keeps_the_first_attribution_and_conflict_names_the_row(session):
    send(session, "s-1", "lead-1", 5)
    first = convert(session, [conversion()])
    session.commit()
    send(session, "s-2", "lead-1", 1)       # a newer send does not re-attribute a stored conversion
    again = convert(session, [conversion()])
    assert (again.created, again.existing, again.items) == (0, 1, first.items)
    with pytest.raises(ConflictError) as err:
        convert(session, [conversion("c-9"), conversion(kind="deal")])
    assert (err.value.field, err.value.index) == ("conversions[1]", 1)
