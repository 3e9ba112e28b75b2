"""Assignment of recipients to variants: deterministic, weighted, per segment, independent across
experiments, with the next send slot in the experiment's timezone."""
from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, time

import pytest
from scipy import stats

from emailexp.errors import StateError, ValidationError
from emailexp.ingestion.assignment import assign_recipients, choose_variant, hash_unit, next_slot
from emailexp.ingestion.experiments import create_experiment, start_experiment, stop_experiment

NOW = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)  # Friday 10:00 in Tokyo
FIXED_CREATED = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def make_experiment(session, variants, *, timezone="Asia/Tokyo", created_at=FIXED_CREATED, name="e"):
    experiment = create_experiment(session, {"name": name, "timezone": timezone, "variants": variants})
    # A fixed creation time fixes the salt, so the statistical checks below are a seeded, repeatable case.
    experiment.created_at = created_at
    session.commit()
    return experiment


def test_weighted_shares_within_each_segment(session):
    exp = make_experiment(session, [
        {"key": "A", "weight": 1}, {"key": "B", "weight": 2}, {"key": "C", "weight": 1, "segment": "ent"}])
    n = 20_000
    segments = ["ent", "smb", None]
    recipients = [{"id": f"lead-{i}", "segment": segments[i % 3]} for i in range(3 * n)]
    out = assign_recipients(session, exp.id, recipients, NOW, max_batch=3 * n)
    assert [a["recipient_id"] for a in out] == [r["id"] for r in recipients]
    expected = {"ent": {"A": 0.25, "B": 0.5, "C": 0.25}, "smb": {"A": 1 / 3, "B": 2 / 3},
                None: {"A": 1 / 3, "B": 2 / 3}}
    for segment in segments:
        counts = Counter(a["variant"] for a in out if a["segment"] == segment)
        assert sum(counts.values()) == n
        assert set(counts) == set(expected[segment])  # C only ever gets "ent" recipients
        for key, share in expected[segment].items():
            # Each share within binomial noise of its weight (two-sided exact test, alpha = 0.001)...
            assert stats.binomtest(counts[key], n, share).pvalue > 0.001, (segment, key, counts)
            assert abs(counts[key] / n - share) < 4 * (share * (1 - share) / n) ** 0.5
        # ...and jointly (chi-square goodness of fit).
        keys = sorted(expected[segment])
        observed = [counts[k] for k in keys]
        assert stats.chisquare(observed, [n * expected[segment][k] for k in keys]).pvalue > 0.001


def test_same_recipient_same_variant_whatever_the_batch(session):
    exp = make_experiment(session, [{"key": "A"}, {"key": "B"}, {"key": "C", "weight": 0.5}],
                          created_at=datetime.now(UTC))
    rng = random.Random(7)
    recipients = [{"id": f"r{i}", "segment": rng.choice(["x", "y", None])} for i in range(3000)]
    whole = {a["recipient_id"]: a["variant"] for a in assign_recipients(session, exp.id, recipients, NOW)}
    shuffled = recipients[:]
    rng.shuffle(shuffled)
    for start in range(0, 3000, 250):
        batch = shuffled[start:start + 250] + [{"id": f"other-{start}-{j}"} for j in range(rng.randint(0, 50))]
        rng.shuffle(batch)
        for a in assign_recipients(session, exp.id, batch, NOW):
            if a["recipient_id"] in whole:
                assert a["variant"] == whole[a["recipient_id"]]
    # After a restart of the session (re-loaded from the database) too.
    session.expire_all()
    again = assign_recipients(session, exp.id, recipients[:100], NOW)
    assert all(a["variant"] == whole[a["recipient_id"]] for a in again)
    # Starting the experiment does not reshuffle.
    start_experiment(session, exp.id)
    assert all(a["variant"] == whole[a["recipient_id"]]
               for a in assign_recipients(session, exp.id, recipients[:100], NOW))


def test_experiments_are_independent(session):
    variants = [{"key": "A"}, {"key": "B"}]
    first = make_experiment(session, variants, name="first")
    second = make_experiment(session, variants, name="second", created_at=FIXED_CREATED)
    recipients = [{"id": f"lead-{i}"} for i in range(10_000)]
    a = assign_recipients(session, first.id, recipients, NOW)
    b = assign_recipients(session, second.id, recipients, NOW)
    table = Counter((x["variant"], y["variant"]) for x, y in zip(a, b, strict=True))
    contingency = [[table[("A", "A")], table[("A", "B")]], [table[("B", "A")], table[("B", "B")]]]
    chi2, p, _, _ = stats.chi2_contingency(contingency)
    assert p > 0.01, contingency
    # Not the same split: about half the recipients land on a different key.
    differ = sum(x["variant"] != y["variant"] for x, y in zip(a, b, strict=True))
    assert 0.45 < differ / len(a) < 0.55


def test_segment_targeted_variants_only_get_their_segment(session):
    exp = make_experiment(session, [{"key": "E", "segment": "ent"}, {"key": "S", "segment": "smb"},
                                    {"key": "all"}])
    recipients = [{"id": f"x{i}", "segment": ["ent", "smb", "other", None][i % 4]} for i in range(4000)]
    out = assign_recipients(session, exp.id, recipients, NOW)
    by_segment: dict = {}
    for a in out:
        by_segment.setdefault(a["segment"], Counter())[a["variant"]] += 1
    assert set(by_segment["ent"]) == {"E", "all"}
    assert set(by_segment["smb"]) == {"S", "all"}
    assert set(by_segment["other"]) == {"all"} and set(by_segment[None]) == {"all"}


def test_recipient_no_variant_accepts_is_refused(session):
    exp = make_experiment(session, [{"key": "E", "segment": "ent"}, {"key": "S", "segment": "smb"}])
    with pytest.raises(ValidationError) as info:
        assign_recipients(session, exp.id, [{"id": "a", "segment": "ent"}, {"id": "b", "segment": "other"}], NOW)
    assert (info.value.field, info.value.index) == ("recipients[1].segment", 1)


def test_choose_variant_slices():
    weighted = [("A", 1.0), ("B", 2.0), ("C", 1.0)]
    assert [choose_variant(u, weighted) for u in (0.0, 0.2499, 0.25, 0.7499, 0.75, 0.999999)] == [
        "A", "A", "B", "B", "C", "C"]
    with pytest.raises(ValueError):
        choose_variant(0.5, [])
    u = hash_unit("salt", "lead-1")
    assert 0 <= u < 1 and u == hash_unit("salt", "lead-1") and u != hash_unit("salt2", "lead-1")


TOKYO = "Asia/Tokyo"


@pytest.mark.parametrize(("tz", "now", "weekday", "at", "expected"), [
    (TOKYO, NOW, 1, time(9, 30), "2026-12-08T09:30:00+09:00"),   # next Tuesday
    (TOKYO, NOW, 4, time(9, 30), "2026-12-11T09:30:00+09:00"),   # today (Fri) but 09:30 has passed
    (TOKYO, NOW, 4, time(10, 0), "2026-12-11T10:00:00+09:00"),   # exactly now: the next one
    (TOKYO, NOW, 4, time(10, 1), "2026-12-04T10:01:00+09:00"),   # later today
    (TOKYO, NOW, None, time(11, 0), "2026-12-04T11:00:00+09:00"),
    (TOKYO, NOW, None, time(9, 0), "2026-12-05T09:00:00+09:00"),
    (TOKYO, NOW, 0, None, "2026-12-07T00:00:00+09:00"),          # weekday only: start of that day
    (TOKYO, datetime(2026, 12, 4, 1, 0, 20, tzinfo=UTC), 4, None, "2026-12-04T10:01:00+09:00"),  # today: now
    (TOKYO, NOW, None, None, None),
    # Friday 2026-12-04 23:30 UTC is already Saturday 08:30 in Tokyo.
    (TOKYO, datetime(2026, 12, 4, 23, 30, tzinfo=UTC), 4, time(9, 0), "2026-12-11T09:00:00+09:00"),
    # New York springs forward on Sunday 2026-03-08 at 02:00: 02:30 does not exist, 03:30 EDT does.
    ("America/New_York", datetime(2026, 3, 7, 17, 0, tzinfo=UTC), 6, time(2, 30), "2026-03-08T03:30:00-04:00"),
    ("America/New_York", datetime(2026, 3, 7, 17, 0, tzinfo=UTC), None, time(9, 0), "2026-03-08T09:00:00-04:00"),
])
def test_next_slot(tz, now, weekday, at, expected):
    from zoneinfo import ZoneInfo

    slot = next_slot(now, ZoneInfo(tz), weekday, at)
    assert (slot.isoformat() if slot else None) == expected
    if slot is not None:
        assert slot > now


def test_api_assignments(client, auth):
    exp = client.post("/api/v1/experiments", headers=auth, json={
        "name": "slots", "timezone": "Asia/Tokyo", "variants": [
            {"key": "A", "send_weekday": 1, "send_time": "09:30"}, {"key": "B", "segment": "enterprise"}]}).get_json()
    url = f"/api/v1/experiments/{exp['id']}/assignments"
    resp = client.post(url, headers=auth, json={"recipients": [{"id": "lead-42", "segment": "enterprise"},
                                                               {"id": "lead-43"}, {"id": "lead-44", "segment": None}]})
    assert resp.status_code == 200, resp.get_json()
    rows = resp.get_json()["assignments"]
    assert [(r["recipient_id"], r["segment"]) for r in rows] == [("lead-42", "enterprise"), ("lead-43", None),
                                                                  ("lead-44", None)]
    assert rows[1]["variant"] == rows[2]["variant"] == "A"  # B only takes enterprise
    for r in rows:
        if r["variant"] == "A":
            slot = datetime.fromisoformat(r["scheduled_at"])
            assert slot.utcoffset().total_seconds() == 9 * 3600 and slot.weekday() == 1
            assert (slot.hour, slot.minute) == (9, 30) and slot > datetime.now(UTC)
        else:
            assert r["scheduled_at"] is None
    # Same answer on a repeat call.
    assert client.post(url, headers=auth, json={"recipients": [{"id": "lead-42", "segment": "enterprise"}]}
                       ).get_json()["assignments"][0] == rows[0]


@pytest.mark.parametrize(("body", "status", "field", "index"), [
    ({}, 422, "recipients", None),
    ({"recipients": "lead-1"}, 422, "recipients", None),
    ({"recipients": [], "extra": 1}, 422, "extra", None),
    ({"recipients": [{"id": "ok"}, "lead-1"]}, 422, "recipients[1]", 1),
    ({"recipients": [{"id": "ok"}, {}]}, 422, "recipients[1].id", 1),
    ({"recipients": [{"id": "ok"}, {"id": ""}]}, 422, "recipients[1].id", 1),
    ({"recipients": [{"id": "ok"}, {"id": 42}]}, 422, "recipients[1].id", 1),
    ({"recipients": [{"id": "ok"}, {"id": "x" * 201}]}, 422, "recipients[1].id", 1),
    ({"recipients": [{"id": "ok"}, {"id": "taro@example.com"}]}, 422, "recipients[1].id", 1),
    ({"recipients": [{"id": "ok"}, {"id": "b", "segment": "a b"}]}, 422, "recipients[1].segment", 1),
    ({"recipients": [{"id": "ok"}, {"id": "b", "email": "x"}]}, 422, "recipients[1].email", 1),
    ({"recipients": [{"id": "b", "segment": "x"}, {"id": "b", "segment": "y"}]}, 422, "recipients[1].segment", 1),
    ({"recipients": [{"id": f"r{i}"} for i in range(10_001)]}, 413, "recipients", None),
])
def test_api_assignment_validation(client, auth, body, status, field, index):
    exp = client.post("/api/v1/experiments", headers=auth,
                      json={"name": "v", "variants": [{"key": "A"}, {"key": "B"}]}).get_json()
    resp = client.post(f"/api/v1/experiments/{exp['id']}/assignments", headers=auth, json=body)
    assert resp.status_code == status, resp.get_json()
    error = resp.get_json()
    assert error["field"] == field and error.get("index") == index and error["message"]


def test_assignment_state_and_existence(client, auth, session):
    exp = make_experiment(session, [{"key": "A"}, {"key": "B"}])
    body = {"recipients": [{"id": "lead-1"}]}
    assert client.post("/api/v1/experiments/999/assignments", headers=auth, json=body).status_code == 404
    url = f"/api/v1/experiments/{exp.id}/assignments"
    assert client.post(url, headers=auth, json=body).status_code == 200  # draft: a preview
    start_experiment(session, exp.id)
    session.commit()
    assert client.post(url, headers=auth, json=body).status_code == 200
    stop_experiment(session, exp.id)
    session.commit()
    resp = client.post(url, headers=auth, json=body)
    assert resp.status_code == 409 and resp.get_json()["error"] == "invalid_state"
    with pytest.raises(StateError):
        assign_recipients(session, exp.id, body["recipients"], NOW)
