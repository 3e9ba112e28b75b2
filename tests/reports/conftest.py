"""Builders that write sends with known outcomes straight into the database (Core executemany)."""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime, time, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from emailexp.models import Conversion, Experiment, Recipient, Segment, Send, Variant


class Builder:
    def __init__(self, session):
        self.session = session
        self.next_send = 1
        self.next_recipient = 1
        self.next_conversion = 1
        self.segments: dict[str, int] = {}

    def segment(self, key: str) -> int:
        if key not in self.segments:
            seg = Segment(key=key, name=key)
            self.session.add(seg)
            self.session.flush()
            self.segments[key] = seg.id
        return self.segments[key]

    def experiment(self, name="exp", variants=(("A", 1.0), ("B", 1.0)), status="stopped",
                   primary_metric="open_rate", mde_relative=0.10) -> tuple[Experiment, dict[str, int]]:
        exp = Experiment(name=name, timezone="Asia/Tokyo", status=status, primary_metric=primary_metric,
                         mde_relative=mde_relative, guardrails=["meeting_rate"])
        for i, (key, weight) in enumerate(variants):
            exp.variants.append(Variant(key=key, subject=f"subject {key}", weight=weight, is_control=i == 0,
                                        send_time=time(9, 0)))
        self.session.add(exp)
        self.session.flush()
        return exp, {v.key: v.id for v in exp.variants}

    def sends(self, *, n: int, opened: np.ndarray | int, experiment_id=None, variant_id=None, segment=None,
              subject="hello", campaign=None, start: datetime, spread_days: float = 1.0, rng=None,
              meetings: np.ndarray | int = 0, deals: np.ndarray | int = 0, amount: float = 0.0,
              weekday=None, hour=None, human=True) -> None:
        """Insert n sends; `opened`/`meetings`/`deals` are boolean arrays or counts (the first k)."""
        rng = rng or np.random.default_rng(0)
        def as_mask(x):
            if isinstance(x, (int, np.integer)):
                m = np.zeros(n, dtype=bool)
                m[:x] = True
                return m
            return np.asarray(x, dtype=bool)
        opened, meetings, deals = as_mask(opened), as_mask(meetings), as_mask(deals)
        seg_id = self.segment(segment) if segment else None
        rec_rows, send_rows, conv_rows = [], [], []
        offsets = np.sort(rng.uniform(0, spread_days * 86400, n))
        for i in range(n):
            rid = self.next_recipient
            self.next_recipient += 1
            rec_rows.append({"id": rid, "external_id": f"lead-{rid}", "segment_id": seg_id})
            sent_at = start + timedelta(seconds=float(offsets[i]))
            local = sent_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
            first = sent_at + timedelta(hours=2) if opened[i] else None
            sid = self.next_send
            self.next_send += 1
            send_rows.append({
                "id": sid, "send_id": f"s-{sid}", "recipient_id": rid, "experiment_id": experiment_id,
                "variant_id": variant_id, "subject": subject, "segment_id": seg_id, "campaign": campaign,
                "sent_at": sent_at, "local_weekday": local.weekday() if weekday is None else weekday,
                "local_hour": local.hour if hour is None else hour,
                "first_open_at": first, "first_human_open_at": first if human else None,
                "first_click_at": None, "payload_hash": hashlib.sha256(str(sid).encode()).hexdigest(),
            })
            for kind, mask, amt in (("meeting", meetings, None), ("deal", deals, amount)):
                if mask[i]:
                    cid = self.next_conversion
                    self.next_conversion += 1
                    conv_rows.append({"id": cid, "conversion_id": f"c-{cid}", "kind": kind, "recipient_id": rid,
                                      "send_id": sid, "attribution": "explicit", "amount": amt,
                                      "occurred_at": sent_at + timedelta(days=3), "payload_hash": "x" * 64})
        self.session.execute(sa.insert(Recipient), rec_rows)
        self.session.execute(sa.insert(Send), send_rows)
        if conv_rows:
            self.session.execute(sa.insert(Conversion), conv_rows)
        self.session.flush()


@pytest.fixture
def builder(session):
    return Builder(session)


START = datetime(2026, 10, 5, 0, 0, tzinfo=UTC)
