"""Per-variant metrics: counted in the database, checked against counts made here from the generated data."""
from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from emailexp.errors import NotFoundError
from emailexp.ingestion.experiments import create_experiment, start_experiment
from emailexp.models import ClickEvent, Conversion, OpenEvent, Recipient, Send, SendLink
from emailexp.reports.metrics import experiment_metrics

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
FIELDS = ("sends", "unique_opens", "unique_human_opens", "total_opens", "clicks", "meetings", "deals", "deal_amount")


def seed(session, rng: random.Random, n_sends: int = 240):
    """Two running experiments and sends outside any; returns (experiment, expected counts per variant key)."""
    exp = create_experiment(session, {"name": "m", "variants": [{"key": "A"}, {"key": "B"}, {"key": "C"}]})
    other = create_experiment(session, {"name": "other", "variants": [{"key": "A"}, {"key": "B"}]})
    start_experiment(session, exp.id)
    start_experiment(session, other.id)
    session.flush()
    expected = {key: dict.fromkeys(FIELDS, 0) for key in ("A", "B", "C")}
    for key in expected:
        expected[key]["deal_amount"] = Decimal(0)
    ids = defaultdict(int)

    def next_id(kind):
        ids[kind] += 1
        return f"{kind}-{ids[kind]}"

    for i in range(n_sends):
        target = rng.random()
        if target < 0.7:
            experiment, variant = exp, exp.variants[rng.randrange(2)]  # C never gets a send
        elif target < 0.85:
            experiment, variant = other, other.variants[rng.randrange(2)]
        else:
            experiment = variant = None
        recipient = Recipient(external_id=f"lead-{i}")
        session.add(recipient)
        session.flush()
        sent_at = T0 + timedelta(minutes=i)
        opens = [rng.choice(["human", "machine", "unknown"]) for _ in range(rng.choice([0, 0, 1, 2, 3]))]
        send = Send(send_id=f"s-{i}", recipient_id=recipient.id, experiment_id=experiment and experiment.id,
                    variant_id=variant and variant.id, subject="s", sent_at=sent_at, local_weekday=sent_at.weekday(),
                    local_hour=sent_at.hour, payload_hash="0" * 64,
                    first_open_at=sent_at + timedelta(hours=1) if opens else None,
                    first_human_open_at=sent_at + timedelta(hours=2) if "human" in opens else None)
        session.add(send)
        session.flush()
        for verdict in opens:
            session.add(OpenEvent(send_id=send.id, opened_at=sent_at + timedelta(hours=1), verdict=verdict,
                                  reason="test", ua_family="x"))
        link = SendLink(send_id=send.id, position=0, url="https://example.com/")
        session.add(link)
        session.flush()
        n_clicks = rng.choice([0, 0, 0, 1, 2])
        for _ in range(n_clicks):
            session.add(ClickEvent(send_id=send.id, link_id=link.id, clicked_at=sent_at + timedelta(hours=3),
                                   verdict="human", reason="test", ua_family="x"))
        meetings = rng.choice([0, 0, 0, 1, 2])
        for _ in range(meetings):
            session.add(Conversion(conversion_id=next_id("m"), kind="meeting", recipient_id=recipient.id,
                                   send_id=send.id, attribution=rng.choice(["explicit", "window"]),
                                   occurred_at=sent_at + timedelta(days=1), payload_hash="0" * 64))
        deals = [Decimal(rng.randrange(0, 10**8)) / 100 for _ in range(rng.choice([0, 0, 0, 0, 1, 2]))]
        for amount in deals:
            session.add(Conversion(conversion_id=next_id("d"), kind="deal", recipient_id=recipient.id,
                                   send_id=send.id, attribution="window", amount=amount,
                                   occurred_at=sent_at + timedelta(days=2), payload_hash="0" * 64))
        # Unattributed conversions of the same recipient never count.
        if rng.random() < 0.2:
            session.add(Conversion(conversion_id=next_id("u"), kind="deal", recipient_id=recipient.id, send_id=None,
                                   attribution="unattributed", amount=Decimal("999.99"),
                                   occurred_at=sent_at + timedelta(days=30), payload_hash="0" * 64))
        if experiment is exp:
            e = expected[variant.key]
            e["sends"] += 1
            e["unique_opens"] += bool(opens)
            e["unique_human_opens"] += "human" in opens
            e["total_opens"] += len(opens)
            e["clicks"] += n_clicks
            e["meetings"] += meetings > 0
            e["deals"] += bool(deals)
            e["deal_amount"] += sum(deals, Decimal(0))
    session.commit()
    return exp, expected


def test_counts_per_variant(session):
    exp, expected = seed(session, random.Random(20261204))
    assert expected["A"]["sends"] > 50 and expected["A"]["deals"] > 0 and expected["B"]["meetings"] > 0
    metrics = experiment_metrics(session, exp.id)
    assert metrics.experiment_id == exp.id
    assert [v.key for v in metrics.variants] == ["A", "B", "C"]
    for v in metrics.variants:
        assert {f: getattr(v, f) for f in FIELDS} == expected[v.key], v.key
    assert metrics.variant("C").sends == 0 and metrics.variant("C").deal_amount == 0


def test_aggregates_in_a_few_queries_whatever_the_data(app, session):
    """GROUP BY in the database: the number of statements does not grow with the number of rows."""
    exp, _ = seed(session, random.Random(1), n_sends=120)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    engine = session.get_bind()
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        session.expire_all()
        experiment_metrics(session, exp.id)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 6, selects
    assert sum("GROUP BY" in s.upper() for s in selects) == 4


def test_unknown_experiment(session):
    with pytest.raises(NotFoundError):
        experiment_metrics(session, 12345)
    with pytest.raises(NotFoundError):
        experiment_metrics(session, 2**40)


def test_api_metrics(client, auth, session):
    exp, expected = seed(session, random.Random(99), n_sends=80)
    resp = client.get(f"/api/v1/experiments/{exp.id}/metrics", headers=auth)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["experiment_id"] == exp.id
    for row in body["variants"]:
        want = expected[row["key"]]
        assert set(row) == {"key", *FIELDS}
        assert {f: row[f] for f in FIELDS if f != "deal_amount"} == {f: want[f] for f in FIELDS if f != "deal_amount"}
        assert Decimal(str(row["deal_amount"])) == want["deal_amount"]
    assert client.get("/api/v1/experiments/4242/metrics", headers=auth).status_code == 404
