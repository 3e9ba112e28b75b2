"""Ingest throughput: POST /api/v1/sends against plain SQLAlchemy Core executemany.

    .venv/bin/python benchmarks/ingest.py                          # SQLite files, gunicorn on 127.0.0.1
    .venv/bin/python benchmarks/ingest.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python benchmarks/ingest.py --test-client            # in-process Flask test client

Both runs get a fresh database (a new SQLite file in a temporary directory, or a new PostgreSQL
schema; both are removed afterwards)
and the same generated rows: --rows sends (default 200,000) to 20,000 leads in 8 segments, 40
owners, each send with 2 links, in batches of --batch-size (5,000), one transaction per batch.

* API: JSON bodies are serialised before the clock starts; one client posts them one after the
  other over a keep-alive connection to `emailexp serve`'s gunicorn settings (benchmarks/_server.py)
  and checks every answer (201, `created` = batch size). Includes HTTP, JSON, auth, validation,
  idempotency lookup, recipient/segment/owner upserts, token URLs in the answer, commit.
* Core: the same rows already as Python values (datetimes, weekday/hour computed), inserted with
  `connection.execute(insert(table), rows)`: recipients new in the batch, sends, send_links; the
  send primary keys for the links come from one SELECT per batch. Segments and owners up front.

The last line is one JSON object: {"api_sends_per_s", "core_sends_per_s", "ratio", ...}. Bar: ratio >= 0.5.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa  # noqa: E402
from _db import scratch_database  # noqa: E402

SECRET = "benchmark-secret-" + "x" * 32
TZ = ZoneInfo("Asia/Tokyo")
CREATED = re.compile(rb'\{\s*"created"\s*:\s*(\d+)\s*,')


def generate(n: int) -> list[dict]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    rows = []
    for i in range(n):
        sent_at = (start + timedelta(seconds=13 * i)).astimezone(TZ)
        rows.append({"send_id": f"bench-{i:07d}", "recipient_id": f"lead-{i % 20000:05d}",
                     "segment": f"seg-{i % 8}", "owner_id": f"rep-{i % 40:02d}", "subject": f"年末のご挨拶 {i % 50}",
                     "campaign": "bench-2026-12", "sent_at": sent_at.isoformat(),
                     "links": [f"https://example.com/p/{i % 100}", "https://example.com/pricing"]})
    return rows


def prepare(url: str) -> str:
    """Create the tables and an API key; return the key."""
    from emailexp import create_app
    from emailexp.extensions import db
    from emailexp.ingestion.apikeys import create_api_key

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": SECRET, "TIMEZONE": "Asia/Tokyo"})
    with app.app_context():
        db.create_all()
        key = create_api_key(db.session, "benchmark")
        db.session.commit()
        db.engine.dispose()
    return key


def check(status: int, body: bytes, expected: int) -> None:
    if status != 201:
        raise SystemExit(f"POST /api/v1/sends answered {status}: {body[:500]!r}")
    # jsonify sorts keys, so the answer starts with {"created": N; parse all of it only if not.
    match = CREATED.match(body)
    created = int(match.group(1)) if match else json.loads(body)["created"]
    if created != expected:
        raise SystemExit(f"expected {expected} created, got {created}")


def run_api(url: str, rows: list[dict], batch: int, *, test_client: bool, workers: int, clients: int) -> float:
    key = prepare(url)
    bodies = [(json.dumps({"sends": rows[i:i + batch]}).encode(), len(rows[i:i + batch]))
              for i in range(0, len(rows), batch)]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if test_client:
        from emailexp import create_app

        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": SECRET, "TIMEZONE": "Asia/Tokyo",
                          "PUBLIC_URL": "http://127.0.0.1:8000"})
        client = app.test_client()
        started = time.perf_counter()
        for body, n in bodies:
            resp = client.post("/api/v1/sends", data=body, headers=headers)
            check(resp.status_code, resp.data, n)
        return time.perf_counter() - started
    from _server import install_signal_handlers, start_server

    install_signal_handlers()
    with start_server(database_url=url, secret_key=SECRET, workers=max(workers, clients),
                      env={"EMAILEXP_TIMEZONE": "Asia/Tokyo"}) as server:
        queue = list(reversed(bodies))
        lock = threading.Lock()
        errors: list[BaseException] = []

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
            try:
                while True:
                    with lock:
                        if not queue or errors:
                            return
                        body, n = queue.pop()
                    conn.request("POST", "/api/v1/sends", body=body, headers=headers)
                    resp = conn.getresponse()
                    check(resp.status, resp.read(), n)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)
            finally:
                conn.close()

        threads = [threading.Thread(target=client) for _ in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"API run failed: {errors[0]}")
    return elapsed


def run_core(url: str, rows: list[dict], batch: int) -> float:
    from emailexp.models import Base, Owner, Recipient, Segment, Send, SendLink

    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":  # the same connection settings the app uses
        from emailexp import db as dbsetup

        engine.dispose()
        engine = sa.create_engine(url, **dbsetup.engine_options(url))
        dbsetup.configure_engine(engine)
    Base.metadata.create_all(engine)
    now = datetime.now(UTC)
    typed = [(r["send_id"], r["recipient_id"], r["segment"], r["owner_id"], r["subject"], r["campaign"],
              datetime.fromisoformat(r["sent_at"]), r["links"]) for r in rows]
    segments = sorted({r[2] for r in typed})
    owners = sorted({r[3] for r in typed})
    sends, links, recipients = Send.__table__, SendLink.__table__, Recipient.__table__
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.insert(Segment.__table__), [{"key": k, "name": k, "created_at": now} for k in segments])
        conn.execute(sa.insert(Owner.__table__), [{"external_id": k, "name": k, "created_at": now} for k in owners])
        segment_ids = dict(conn.execute(sa.select(Segment.key, Segment.id)).all())
        owner_ids = dict(conn.execute(sa.select(Owner.external_id, Owner.id)).all())
    recipient_ids: dict[str, int] = {}
    for start in range(0, len(typed), batch):
        chunk = typed[start:start + batch]
        with engine.begin() as conn:
            new = {r[1]: segment_ids[r[2]] for r in chunk if r[1] not in recipient_ids}
            if new:
                conn.execute(sa.insert(recipients), [{"external_id": k, "segment_id": s, "created_at": now}
                                                     for k, s in new.items()])
                recipient_ids.update(conn.execute(sa.select(recipients.c.external_id, recipients.c.id)
                                                  .where(recipients.c.id > (max(recipient_ids.values(), default=0))))
                                     .all())
            conn.execute(sa.insert(sends), [
                {"send_id": r[0], "recipient_id": recipient_ids[r[1]], "experiment_id": None, "variant_id": None,
                 "subject": r[4], "segment_id": segment_ids[r[2]], "owner_id": owner_ids[r[3]], "campaign": r[5],
                 "sent_at": r[6], "local_weekday": r[6].weekday(), "local_hour": r[6].hour,
                 "payload_hash": "0" * 64, "created_at": now} for r in chunk])
            pks = dict(conn.execute(sa.select(sends.c.send_id, sends.c.id)
                                    .where(sends.c.send_id.between(chunk[0][0], chunk[-1][0]))).all())
            conn.execute(sa.insert(links), [{"send_id": pks[r[0]], "position": p, "url": u}
                                            for r in chunk for p, u in enumerate(r[7])])
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        stored = conn.scalar(sa.select(sa.func.count()).select_from(sends))
    engine.dispose()
    if stored != len(rows):
        raise SystemExit(f"core run stored {stored} sends, expected {len(rows)}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL URL (a fresh schema per run); default: SQLite files")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--clients", type=int, default=1,
                        help="concurrent client connections posting batches (default 1: one after the other)")
    parser.add_argument("--test-client", action="store_true", help="use Flask's test client instead of gunicorn")
    args = parser.parse_args()
    os.environ.setdefault("EMAILEXP_SECRET_KEY", SECRET)

    rows = generate(args.rows)
    with scratch_database(args.database_url, "bench_api") as api_url, \
            scratch_database(args.database_url, "bench_core") as core_url:
        api_s = run_api(api_url, rows, args.batch_size, test_client=args.test_client, workers=args.workers,
                        clients=args.clients)
        core_s = run_core(core_url, rows, args.batch_size)
    backend = "postgresql" if args.database_url else "sqlite"
    api_rate, core_rate = args.rows / api_s, args.rows / core_s
    print(f"{backend}: {args.rows} sends in batches of {args.batch_size}")
    server = "test client" if args.test_client else f"gunicorn, {max(args.workers, args.clients)} workers"
    print(f"  API ({server}, {args.clients} client(s)): {api_s:8.2f} s  {api_rate:10.0f} sends/s")
    print(f"  Core executemany:      {core_s:8.2f} s  {core_rate:10.0f} sends/s")
    print(json.dumps({"api_sends_per_s": round(api_rate, 1), "core_sends_per_s": round(core_rate, 1),
                      "ratio": round(api_rate / core_rate, 3), "database": backend,
                      "server": "test_client" if args.test_client else "gunicorn", "rows": args.rows,
                      "batch_size": args.batch_size, "clients": 1 if args.test_client else args.clients,
                      "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
