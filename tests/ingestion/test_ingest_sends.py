"""ingest_sends as a service: what it stores, what it derives, what it refuses."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from emailexp.errors import ConflictError, ValidationError
from emailexp.ingestion.sends import check_sends, ingest_sends
from emailexp.models import Owner, Recipient, Segment, Send, SendLink
from emailexp.tracking.tokens import read_click_token, read_open_token, tracking_key

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
KEY = tracking_key("service-test-secret")


def ingest(session, rows, **kwargs):
    options = {"public_url": "http://t.test", "tracking_key": KEY, "workspace_tz": "Asia/Tokyo", "now": NOW}
    return ingest_sends(session, rows, **(options | kwargs))


def row(i=0, **fields):
    base = {"send_id": f"s-{i}", "recipient_id": f"lead-{i}", "subject": "Hello",
            "sent_at": "2026-12-04T09:30:00+09:00"}
    return {**base, **fields}


def count(session, model):
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def test_stores_sends_with_local_weekday_and_hour_in_workspace_timezone(session):
    # 2026-11-29T23:30Z is Monday 08:30 in Tokyo (Sunday 23:30 in UTC).
    result = ingest(session, [row(0, sent_at="2026-11-29T23:30:00Z", campaign="nl", links=["https://e.com/a"])])
    session.commit()
    assert (result.created, result.existing) == (1, 0)
    send = session.scalar(sa.select(Send))
    assert (send.local_weekday, send.local_hour) == (0, 8)
    assert send.sent_at == datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
    assert send.campaign == "nl" and send.subject == "Hello" and len(send.payload_hash) == 64
    assert session.scalars(sa.select(SendLink.url)).all() == ["https://e.com/a"]


def test_urls_are_signed_tokens_for_the_stored_send(session):
    result = ingest(session, [row(0, links=["https://e.com/a", "https://e.com/b"])])
    send = session.scalar(sa.select(Send))
    item = result.items[0]
    opened = read_open_token(KEY, item["pixel_url"].removeprefix("http://t.test/o/").removesuffix(".gif"))
    assert opened.send_pk == send.id and opened.sent_at == send.sent_at
    clicked = read_click_token(KEY, item["links"][1]["tracked_url"].removeprefix("http://t.test/c/"))
    assert (clicked.send_pk, clicked.position) == (send.id, 1)
    assert [link["url"] for link in item["links"]] == ["https://e.com/a", "https://e.com/b"]


def test_experiment_sends_use_experiment_timezone_and_variant_subject(session, experiment_factory):
    experiment = experiment_factory(timezone="America/New_York")
    # 2026-12-04T14:30Z is Friday 09:30 in New York (23:30 in Tokyo).
    ingest(session, [row(0, subject=None, experiment_id=experiment.id, variant="B", sent_at="2026-12-04T14:30:00Z")])
    send = session.scalar(sa.select(Send))
    assert (send.local_weekday, send.local_hour) == (4, 9)
    assert send.subject == "Subject B"
    assert send.variant_id == next(v.id for v in experiment.variants if v.key == "B")


@pytest.mark.parametrize("status", ["draft", "stopped"])
def test_experiment_must_be_running(session, experiment_factory, status):
    experiment = experiment_factory(status=status)
    with pytest.raises(ValidationError) as err:
        ingest(session, [row(0), row(1, experiment_id=experiment.id, variant="A")])
    assert (err.value.field, err.value.index) == ("sends[1].experiment_id", 1)
    assert status in err.value.message


def test_unknown_experiment_and_variant(session, experiment_factory):
    experiment = experiment_factory()
    with pytest.raises(ValidationError) as err:
        ingest(session, [row(0, experiment_id=experiment.id + 100, variant="A")])
    assert err.value.field == "sends[0].experiment_id"
    with pytest.raises(ValidationError) as err:
        ingest(session, [row(0, experiment_id=experiment.id, variant="Z")])
    assert err.value.field == "sends[0].variant" and "A, B" in err.value.message


def test_segments_owners_and_recipients_are_created_once(session):
    ingest(session, [row(0, recipient_id="lead-1", segment="smb", owner_id="rep-7"),
                     row(1, recipient_id="lead-1", owner_id="rep-7"),
                     row(2, recipient_id="lead-2", segment="ent", owner_id="rep-8")])
    session.commit()
    assert count(session, Segment) == 2 and count(session, Owner) == 2 and count(session, Recipient) == 2
    owner = session.scalar(sa.select(Owner).where(Owner.external_id == "rep-7"))
    assert owner.name == "rep-7"
    segments = dict(session.execute(sa.select(Send.send_id, Segment.key)
                                    .join(Segment, Segment.id == Send.segment_id)).all())
    # s-1 gave no segment: it takes its recipient's segment.
    assert segments == {"s-0": "smb", "s-1": "smb", "s-2": "ent"}


def test_known_recipient_without_segment_gets_one_and_keeps_an_existing_one(session):
    ingest(session, [row(0, recipient_id="lead-1"), row(1, recipient_id="lead-2", segment="smb")])
    session.commit()
    ingest(session, [row(2, recipient_id="lead-1", segment="ent"), row(3, recipient_id="lead-2", segment="ent")])
    session.commit()
    keys = dict(session.execute(sa.select(Recipient.external_id, Segment.key)
                                .join(Segment, Segment.id == Recipient.segment_id)).all())
    assert keys == {"lead-1": "ent", "lead-2": "smb"}
    send_segment = session.scalar(sa.select(Segment.key).join(Send, Send.segment_id == Segment.id)
                                  .where(Send.send_id == "s-3"))
    assert send_segment == "ent"


def test_large_overlapping_batches_look_up_thousands_of_ids_at_once(session):
    first = ingest(session, [row(i, recipient_id=f"lead-{i % 7}") for i in range(0, 1500)])
    session.commit()
    second = ingest(session, [row(i, recipient_id=f"lead-{i % 7}") for i in range(1000, 2500)])
    session.commit()
    assert (first.created, second.created, second.existing) == (1500, 1000, 500)
    assert first.items[1200] == second.items[200]
    assert count(session, Send) == 2500 and count(session, Recipient) == 7


def test_conflict_with_stored_send_names_the_row(session):
    ingest(session, [row(0)])
    session.commit()
    with pytest.raises(ConflictError) as err:
        ingest(session, [row(1), row(0, subject="Different")])
    assert (err.value.field, err.value.index) == ("sends[1]", 1)


def test_in_batch_repeat_is_existing_but_a_changed_repeat_conflicts(session):
    result = ingest(session, [row(0), row(0)])
    assert (result.created, result.existing) == (1, 1) and result.items[0] == result.items[1]
    with pytest.raises(ConflictError) as err:
        ingest(session, [row(5), row(6), row(5, sent_at="2026-12-04T10:30:00+09:00")])
    assert err.value.index == 2


def test_check_sends_reads_but_never_writes(session, experiment_factory):
    stopped = experiment_factory(status="stopped")
    assert check_sends(session, [row(0), row(1)], workspace_tz="UTC", now=NOW) == 2
    with pytest.raises(ValidationError):
        check_sends(session, [row(0, experiment_id=stopped.id, variant="A")], workspace_tz="UTC", now=NOW)
    session.commit()
    assert count(session, Send) == 0 and count(session, Recipient) == 0
