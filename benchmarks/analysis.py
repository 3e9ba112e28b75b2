"""Benchmark: /analysis and /insights at 1,000,000 sends, against a row-level statsmodels Logit.

    python benchmarks/analysis.py [--sends 1000000] [--database-url URL]

Fills a fresh database (a temporary SQLite file by default) with N sends over eight weeks, half
in one three-variant experiment and half in 30 campaigns with habitual send slots (planted
subject, weekday, hour, segment and campaign effects; human and machine opens), then times,
server-side through the Flask app:
- GET /api/v1/experiments/{id}/analysis (aggregation in the database + statistics);
- GET /api/v1/insights (cell aggregation in the database + the quasi-binomial GLM and its LR tests);
- a row-level statsmodels Logit on the same N sends with the same design matrix (one row per send),
  and the largest absolute difference between its coefficients and the aggregated fit's.
Prints the figures; the last line is one JSON object. Bars: /analysis < 1 s, /insights >= 10x faster
than the row-level fit, coefficients equal to 1e-6.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SEGMENTS = ["enterprise", "mid_market", "smb", "public_sector"]
SUBJECTS = ["【ご案内】新機能のお知らせ", "営業効率を30%上げる方法をご存じですか？", "{{name}}様へ：導入事例のご紹介"]


N_CAMPAIGNS = 30


def fill(session, n: int, seed: int = 11) -> int:
    """Half the sends in one three-variant experiment, half in 30 non-experiment campaigns.

    Each campaign has its own subject, segment mix and habitual send slot (confounded with its
    own quality), as real campaign calendars are; weekday/hour effects and a segment x hour
    interaction are planted on top. Opens: human with a delay, plus Apple-MPP-like prefetches.
    Rows are built with numpy and inserted with Core executemany (COPY is not used, so the figure
    also says how long a plain bulk load takes).
    """
    from emailexp.models import Experiment, OpenEvent, Recipient, Segment, Send, Variant

    rng = np.random.default_rng(seed)
    tz = ZoneInfo("Asia/Tokyo")
    for i, key in enumerate(SEGMENTS):
        session.add(Segment(id=i + 1, key=key, name=key))
    exp = Experiment(id=1, name="benchmark", timezone="Asia/Tokyo", status="running", mde_relative=0.05)
    for i, subject in enumerate(SUBJECTS):
        exp.variants.append(Variant(id=i + 1, key="ABC"[i], subject=subject, weight=1.0, is_control=i == 0))
    session.add(exp)
    session.flush()

    n_rec = n // 2
    chunk = 50_000
    for lo in range(0, n_rec, chunk):
        session.execute(sa.insert(Recipient), [
            {"id": i + 1, "external_id": f"lead-{i + 1}", "segment_id": int(i % 4) + 1}
            for i in range(lo, min(n_rec, lo + chunk))])

    in_exp = rng.random(n) < 0.5
    variant = np.where(in_exp, rng.integers(0, 3, n), -1)
    campaign = np.where(in_exp, -1, rng.integers(0, N_CAMPAIGNS, n))
    recipient = rng.integers(1, n_rec + 1, n)
    segment = (recipient - 1) % 4
    day = rng.integers(0, 56, n)
    slots = np.array([7, 8, 9, 10, 12, 13, 15, 17, 19])
    habitual = rng.choice(slots, N_CAMPAIGNS)
    hour = np.where(in_exp, rng.choice(slots, n),
                    np.where(rng.random(n) < 0.7, habitual[np.maximum(campaign, 0)], rng.choice(slots, n)))
    base_local = datetime(2026, 9, 1, tzinfo=tz)
    weekday = (np.array([(base_local + timedelta(days=int(d))).weekday() for d in range(56)]))[day]
    campaign_effect = rng.normal(0, 0.3, N_CAMPAIGNS)
    logit = (-1.2 + np.where(in_exp, np.array([0.0, 0.25, 0.1])[np.maximum(variant, 0)],
                             campaign_effect[np.maximum(campaign, 0)])
             + np.array([0.1, 0.0, -0.1, -0.2])[segment] + np.where(hour <= 9, 0.2, 0.0)
             + np.where((segment == 2) & (hour >= 12) & (hour <= 13), 0.3, 0.0)
             + np.where(weekday == 1, 0.1, 0.0))
    human = rng.random(n) < 1 / (1 + np.exp(-logit))
    machine = rng.random(n) < 0.3
    sent_s = (base_local.timestamp() + day * 86400 + hour * 3600 + (np.arange(n) % 3600)).astype(np.int64)
    human_s = sent_s + (rng.exponential(6, n) * 3600).astype(np.int64)
    machine_s = sent_s + 180
    subjects = SUBJECTS + [f"キャンペーン{c + 1}のご案内" for c in range(N_CAMPAIGNS)]

    def ts(x):
        return datetime.fromtimestamp(int(x), UTC)

    oid = 1
    for lo in range(0, n, chunk):
        idx = range(lo, min(n, lo + chunk))
        rows, opens = [], []
        for i in idx:
            sent = ts(sent_s[i])
            t_h = ts(human_s[i]) if human[i] else None
            t_m = ts(machine_s[i]) if machine[i] else None
            first = t_m if t_m is not None else t_h
            if t_h is not None and t_m is not None:
                first = min(t_h, t_m)
            exp_row = bool(in_exp[i])
            rows.append({"id": i + 1, "send_id": f"b-{i + 1}", "recipient_id": int(recipient[i]),
                         "experiment_id": 1 if exp_row else None,
                         "variant_id": int(variant[i]) + 1 if exp_row else None,
                         "subject": subjects[variant[i]] if exp_row else subjects[3 + campaign[i]],
                         "campaign": None if exp_row else f"campaign-{campaign[i] + 1:02d}",
                         "segment_id": int(segment[i]) + 1, "sent_at": sent, "local_weekday": int(weekday[i]),
                         "local_hour": int(hour[i]), "first_open_at": first, "first_human_open_at": t_h,
                         "payload_hash": "0" * 64})
            if t_m is not None:
                opens.append({"id": oid, "send_id": i + 1, "opened_at": t_m, "verdict": "machine",
                              "reason": "apple_mpp_prefetch", "ua_family": "apple_mail", "ip_hash": None})
                oid += 1
            if t_h is not None:
                opens.append({"id": oid, "send_id": i + 1, "opened_at": t_h, "verdict": "human",
                              "reason": "mail_client", "ua_family": "outlook", "ip_hash": None})
                oid += 1
        session.execute(sa.insert(Send), rows)
        session.execute(sa.insert(OpenEvent), opens)
    session.commit()
    if session.get_bind().dialect.name == "postgresql":
        for table in ("sends", "open_events", "recipients", "segments", "experiments", "variants"):
            session.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                    f"(SELECT max(id) FROM {table}))"))
    session.execute(sa.text("ANALYZE"))
    session.commit()
    return n


def timed(fn, repeat=3):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def run(url: str, args) -> dict:
    from emailexp import create_app
    from emailexp.extensions import db
    from emailexp.ingestion.apikeys import create_api_key

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": False})
    with app.app_context():
        db.create_all()
        t0 = time.perf_counter()
        fill(db.session, args.sends)
        fill_s = time.perf_counter() - t0
        key = create_api_key(db.session, "bench")
        db.session.commit()
    print(f"filled {args.sends:,} sends in {fill_s:.1f} s ({url.split(':')[0]})", flush=True)

    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}

    def get(path):
        resp = client.get(path, headers=headers)
        assert resp.status_code == 200, (path, resp.status_code, resp.get_data(as_text=True)[:500])
        return resp.get_json()

    analysis_s, analysis = timed(lambda: get("/api/v1/experiments/1/analysis"))
    print(f"/analysis: {analysis_s:.3f} s  verdict={analysis['verdict']['kind']}", flush=True)
    insights_s, insights = timed(lambda: get("/api/v1/insights"))
    print(f"/insights: {insights_s:.3f} s  cells={insights['model']['n_cells']}", flush=True)

    result = {"sends": args.sends, "database": url.split(":")[0], "analysis_seconds": round(analysis_s, 4),
              "insights_seconds": round(insights_s, 4)}
    if not args.skip_row_level:
        from row_level import row_level_comparison

        with app.app_context():
            row_s, max_diff = row_level_comparison(db.session, app.config["TIMEZONE"], insights)
        print(f"row-level Logit: {row_s:.2f} s, max |coef difference| = {max_diff:.2e}", flush=True)
        result.update({"row_level_logit_seconds": round(row_s, 3), "speedup": round(row_s / insights_s, 1),
                       "max_coef_difference": max_diff})
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--skip-row-level", action="store_true")
    args = parser.parse_args()

    from _db import scratch_database

    with scratch_database(args.database_url, "bench_analysis") as url:
        result = run(url, args)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
