"""Benchmark: a full KPI refresh over 1,000,000 sends spread over a year.

Generates sends (with the first-open/first-click cache columns filled), recipients, owners in teams and
attributed meetings/deals with Core executemany into a fresh database, then times
`refresh_kpis(full=True)` + commit: every tracked KPI for workspace, team and owner scopes and
day/ISO week/month/quarter periods. An incremental refresh with nothing new and a second full refresh
(every value already stored) are timed too. Clicks: a link and click events (scanner clicks on ~6 % of
sends, human clicks on ~3 %) so that the human click rate has its real join to aggregate.

    .venv/bin/python benchmarks/kpi_refresh.py                      # fresh SQLite file in a temp dir
    .venv/bin/python benchmarks/kpi_refresh.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

On PostgreSQL the tables are created in a throw-away schema (bench_<random>) that is dropped afterwards,
also on failure; the SQLite file lives in a temporary directory that is deleted.
Last line of output: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from datetime import UTC, datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sqlalchemy as sa  # noqa: E402
from _db import scratch_database  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from emailexp.db import configure_engine, engine_options  # noqa: E402
from emailexp.kpi.refresh import refresh_kpis  # noqa: E402
from emailexp.models import Base, ClickEvent, Conversion, Owner, Recipient, Send, SendLink, Team  # noqa: E402
from emailexp.models.kpi import KpiValue  # noqa: E402

TZ = "Asia/Tokyo"


def generate(engine: sa.Engine, n_sends: int, n_owners: int, n_teams: int, seed: int) -> dict:
    rng = random.Random(seed)
    # the whole history (deals up to ~55 days after the last send) lies in the past, so that nothing counts
    # as "recorded since the last refresh" except what a real feed would see
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=365 + 60)
    span = 365 * 86400
    n_recipients = max(1, n_sends // 5)
    chunk = 50_000
    with engine.begin() as conn:
        conn.execute(sa.insert(Team.__table__), [{"name": f"team-{t}", "created_at": start} for t in range(n_teams)])
        team_ids = [r[0] for r in conn.execute(sa.select(Team.id).order_by(Team.id))]
        conn.execute(sa.insert(Owner.__table__), [
            {"external_id": f"rep-{o}", "name": f"rep {o}", "team_id": team_ids[o % n_teams] if o % 17 else None,
             "created_at": start} for o in range(n_owners)])
        owner_ids = [r[0] for r in conn.execute(sa.select(Owner.id).order_by(Owner.id))]
        for lo in range(0, n_recipients, chunk):
            conn.execute(sa.insert(Recipient.__table__), [
                {"id": i + 1, "external_id": f"lead-{i}", "created_at": start}
                for i in range(lo, min(n_recipients, lo + chunk))])
    conversions = []
    n_clicks = 0
    with engine.begin() as conn:
        for lo in range(0, n_sends, chunk):
            rows = []
            links = []
            clicks = []
            for i in range(lo, min(n_sends, lo + chunk)):
                sent = start + timedelta(seconds=rng.randrange(span))
                opened = sent + timedelta(minutes=rng.randrange(1, 5000)) if rng.random() < 0.28 else None
                human = opened + timedelta(minutes=rng.randrange(1, 60)) if opened and rng.random() < 0.12 else None
                scanner = sent + timedelta(seconds=rng.randrange(2, 30)) if rng.random() < 0.06 else None
                clicked = min([t for t in (human, scanner) if t is not None], default=None)
                if clicked is not None:
                    links.append({"id": i + 1, "send_id": i + 1, "position": 0, "url": "https://example.co.jp/"})
                    for at, verdict in ((scanner, "machine"), (human, "human")):
                        if at is not None:
                            clicks.append({"send_id": i + 1, "link_id": i + 1, "clicked_at": at, "verdict": verdict,
                                           "reason": "bench", "ua_family": "bench", "ip_hash": None})
                owner = owner_ids[rng.randrange(n_owners)] if rng.random() < 0.97 else None
                rows.append({"id": i + 1, "send_id": f"s-{i}", "recipient_id": rng.randrange(n_recipients) + 1,
                             "subject": "件名", "owner_id": owner, "sent_at": sent,
                             "local_weekday": 0, "local_hour": 0, "first_open_at": opened,
                             "first_human_open_at": opened, "first_click_at": clicked,
                             "payload_hash": "0" * 64, "created_at": sent})
                if rng.random() < 0.02:
                    met = sent + timedelta(days=rng.randrange(0, 14), hours=rng.randrange(24))
                    conversions.append((i + 1, rows[-1]["recipient_id"], "meeting", met, None))
                    if rng.random() < 0.3:
                        conversions.append((i + 1, rows[-1]["recipient_id"], "deal",
                                            met + timedelta(days=rng.randrange(1, 40)), rng.randrange(1, 500) * 10_000))
            conn.execute(sa.insert(Send.__table__), rows)
            if links:
                conn.execute(sa.insert(SendLink.__table__), links)
                conn.execute(sa.insert(ClickEvent.__table__), clicks)
                n_clicks += len(clicks)
        crow = [{"conversion_id": f"c-{k}", "kind": kind, "recipient_id": rid, "send_id": sid,
                 "attribution": "explicit", "amount": amount, "occurred_at": at, "payload_hash": "0" * 64,
                 "created_at": at} for k, (sid, rid, kind, at, amount) in enumerate(conversions)]
        for lo in range(0, len(crow), chunk):
            conn.execute(sa.insert(Conversion.__table__), crow[lo:lo + chunk])
    return {"conversions": len(conversions), "click_events": n_clicks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file in a temp dir")
    parser.add_argument("--sends", type=int, default=1_000_000)
    parser.add_argument("--owners", type=int, default=100)
    parser.add_argument("--teams", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    # a plain `kill` must still drop the schema and the temp dir (the `finally` below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    with scratch_database(args.database_url, "bench_kpi") as url:
        run(url, args)


def run(url: str, args) -> None:
    engine = sa.create_engine(url, **engine_options(url))
    configure_engine(engine)
    try:
        Base.metadata.create_all(engine)
        t0 = time.perf_counter()
        info = generate(engine, args.sends, args.owners, args.teams, args.seed)
        gen_s = time.perf_counter() - t0
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
        print(f"generated {args.sends} sends, {info['conversions']} conversions, {info['click_events']} click events "
              f"in {gen_s:.1f} s", flush=True)

        with Session(engine) as session:
            t0 = time.perf_counter()
            result = refresh_kpis(session, timezone=TZ, full=True)
            session.commit()
            full_s = time.perf_counter() - t0
            n_values = session.scalar(sa.select(sa.func.count()).select_from(KpiValue))
        print(f"full refresh: {full_s:.2f} s, {result.values_written} values, {result.periods} periods", flush=True)
        with Session(engine) as session:
            t0 = time.perf_counter()
            refresh_kpis(session, timezone=TZ)
            session.commit()
            incr_s = time.perf_counter() - t0
        print(f"incremental refresh with nothing new: {incr_s:.2f} s", flush=True)
        with Session(engine) as session:
            t0 = time.perf_counter()
            refresh_kpis(session, timezone=TZ, full=True)
            session.commit()
            again_s = time.perf_counter() - t0
        print(f"full refresh again (every value exists): {again_s:.2f} s", flush=True)
        print(json.dumps({"sends": args.sends, "backend": engine.dialect.name, "refresh_seconds": round(full_s, 2),
                          "incremental_noop_seconds": round(incr_s, 2), "refresh_again_seconds": round(again_s, 2),
                          "values": n_values,
                          "cpus": os.cpu_count()}))
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
