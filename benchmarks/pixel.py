"""Pixel throughput: the real open pixel versus a trivial Flask app serving the same GIF.

Both are served by gunicorn with the production settings (`emailexp.cli.gunicorn_argv`) on
127.0.0.1 and driven the same way: `--clients` load-generator processes, each with one request in
flight on a fresh HTTP/1.1 connection (`Connection: close`: a new connection per open, as from
distinct mail clients; the default 12 keep more requests in flight than there are worker
processes, so that no worker idles while a client is busy and PostgreSQL sees concurrent commits
it can flush together), a warm-up, then `--seconds` of measurement, split into `--rounds` that
alternate between the two servers (so that other load on the machine hits both alike). The pixel requests carry valid open tokens for
`--sends` seeded sends, so every one of them is classified and committed before its 200.

    .venv/bin/python benchmarks/pixel.py [--seconds 15] [--workers N] [--clients 12]
                                        [--database-url postgresql+psycopg://...]

Without --database-url a fresh SQLite file is used (in a temporary directory, deleted at the
end); with a PostgreSQL URL a fresh schema is created in it and dropped afterwards. The last line
printed is one JSON object:
{"pixel_rps", "baseline_rps", "ratio", "p50_ms", "p99_ms", "responses_200", "opens_recorded", ...}.
Bar: ratio >= 0.6 and opens_recorded == responses_200.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0.0.0 Safari/537.36")


# --- the baseline app (served by gunicorn as "pixel:baseline_app") ----------------------------------

def _make_baseline_app():
    from flask import Flask, Response

    from emailexp.tracking.routes import _NO_STORE, PIXEL_GIF

    app = Flask("baseline")

    @app.route("/o/<path:name>", methods=["GET", "HEAD"])
    def pixel(name):
        return Response(PIXEL_GIF, status=200, mimetype="image/gif", headers=_NO_STORE)

    return app


def __getattr__(name):  # PEP 562: build the baseline app only when gunicorn asks for it
    if name == "baseline_app":
        app = globals()["baseline_app"] = _make_baseline_app()
        return app
    raise AttributeError(name)


# --- load generator ---------------------------------------------------------------------------------

def _client(port: int, paths: list[bytes], warmup: float, seconds: float, start_at: float, out) -> None:
    """One request in flight at a time; reports (200s in total, 200s measured, non-200s, latencies)."""
    requests = [b"GET " + p + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: " + USER_AGENT.encode()
                + b"\r\nAccept: image/*\r\nConnection: close\r\n\r\n" for p in paths]
    while time.time() < start_at:
        time.sleep(0.001)
    measure_from = start_at + warmup
    stop_at = measure_from + seconds
    ok_total = ok_measured = failures = 0
    latencies = []
    i = 0
    n = len(requests)
    while True:
        t0 = time.time()
        if t0 >= stop_at:
            break
        status = _one(port, requests[i % n])
        i += 1
        t1 = time.time()
        if status == 200:
            ok_total += 1
            if t0 >= measure_from:
                ok_measured += 1
                latencies.append(t1 - t0)
        else:
            failures += 1
    out.send((ok_total, ok_measured, failures, latencies))
    out.close()


def _one(port: int, request: bytes) -> int:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(request)
            chunks = []
            while True:
                data = s.recv(4096)
                if not data:
                    break
                chunks.append(data)
    except OSError:
        return -1
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    try:
        status = int(head[9:12])
    except ValueError:
        return -1
    return status if len(body) == 43 else -2


def drive(port: int, paths: list[str], *, clients: int, warmup: float, seconds: float) -> dict:
    ctx = multiprocessing.get_context("fork")
    encoded = [p.encode() for p in paths]
    start_at = time.time() + 0.5
    procs, pipes = [], []
    for c in range(clients):
        recv, send = ctx.Pipe(duplex=False)
        mine = encoded[c::clients] or encoded
        p = ctx.Process(target=_client, args=(port, mine, warmup, seconds, start_at, send))
        p.start()
        send.close()
        procs.append(p)
        pipes.append(recv)
    results = [r.recv() for r in pipes]
    for p in procs:
        p.join()
    latencies = sorted(x for r in results for x in r[3])
    measured = sum(r[1] for r in results)
    return {
        "measured": measured,
        "latencies": latencies,
        "rps": measured / seconds,
        "responses_200": sum(r[0] for r in results),
        "failures": sum(r[2] for r in results),
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None,
    }


def _combine(rounds: list[dict], seconds: float) -> dict:
    latencies = sorted(x for r in rounds for x in r["latencies"])
    return {
        "rps": sum(r["measured"] for r in rounds) / seconds,
        "responses_200": sum(r["responses_200"] for r in rounds),
        "failures": sum(r["failures"] for r in rounds),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


# --- database ---------------------------------------------------------------------------------------

def fresh_database(url: str | None, tmp: Path) -> tuple[str, callable]:
    """A fresh database URL and a function that removes it."""
    if not url:
        return f"sqlite:///{tmp / 'pixel-bench.db'}", lambda: None
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')

    def drop():
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()

    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}", drop


def seed_sends(url: str, n: int, sent_at: datetime) -> list[int]:
    import sqlalchemy as sa

    from emailexp.models import Recipient, Send

    engine = sa.create_engine(url)
    sends = Send.__table__
    try:
        with engine.begin() as conn:
            rid = conn.execute(sa.insert(Recipient.__table__).values(external_id="bench-lead", created_at=sent_at)
                               .returning(Recipient.__table__.c.id)).scalar_one()
            conn.execute(sa.insert(sends), [
                {"send_id": f"bench-{i}", "recipient_id": rid, "subject": "Benchmark", "sent_at": sent_at,
                 "local_weekday": sent_at.weekday(), "local_hour": sent_at.hour, "payload_hash": "0" * 64,
                 "created_at": sent_at} for i in range(n)
            ])
            return list(conn.scalars(sa.select(sends.c.id).order_by(sends.c.id)))
    finally:
        engine.dispose()


def count_opens(url: str) -> int:
    import sqlalchemy as sa

    from emailexp.models import OpenEvent

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.select(sa.func.count()).select_from(OpenEvent.__table__))
    finally:
        engine.dispose()


def _server_settings() -> str:
    from emailexp import gunicorn_conf

    threads = getattr(gunicorn_conf, "threads", 1)
    return f"{gunicorn_conf.worker_class}" + (f" x{threads} threads" if threads > 1 else "")


# --- main -------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds before measuring")
    parser.add_argument("--rounds", type=int, default=3, help="alternating pixel/baseline rounds")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: 2 x cores + 1)")
    parser.add_argument("--clients", type=int, default=12, help="load-generator processes")
    parser.add_argument("--sends", type=int, default=10_000, help="sends to seed")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: a fresh SQLite file)")
    args = parser.parse_args(argv)

    import _server
    from emailexp.tracking.tokens import make_open_token, tracking_key

    _server.install_signal_handlers()
    secret = os.environ.get("EMAILEXP_SECRET_KEY") or secrets.token_hex(32)
    key = tracking_key(secret)
    tmp = Path(tempfile.mkdtemp(prefix="emailexp-pixel-bench-"))
    url, drop = fresh_database(args.database_url, tmp)
    try:
        _server.prepare_database(url)
        sent_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        pks = seed_sends(url, args.sends, sent_at)
        paths = [f"/o/{make_open_token(key, pk, sent_at)}.gif" for pk in pks]
        backend = url.split(":", 1)[0]
        print(f"database: {backend}, sends: {len(pks)}, workers: {args.workers or 'default'}, "
              f"clients: {args.clients}, {args.warmup:g} s warm-up + {args.seconds:g} s", flush=True)

        pixel_server = _server.start_server(database_url=url, secret_key=secret, workers=args.workers,
                                            ready_path="/o/ready.gif", log_path=tmp / "pixel.log")
        baseline_server = _server.start_server(database_url=url, secret_key=secret, workers=args.workers,
                                               app="pixel:baseline_app", pythonpath=[HERE],
                                               ready_path="/o/ready.gif", log_path=tmp / "baseline.log")
        # Alternate short rounds so that a change in background load hits both sides alike.
        rounds = {"pixel": [], "baseline": []}
        try:
            for r in range(args.rounds):
                for name, server in (("pixel", pixel_server), ("baseline", baseline_server)):
                    rounds[name].append(drive(server.port, paths, clients=args.clients,
                                              warmup=args.warmup if r == 0 else 0.5,
                                              seconds=args.seconds / args.rounds))
        finally:
            pixel_server.stop()
            baseline_server.stop()
        pixel, baseline = _combine(rounds["pixel"], args.seconds), _combine(rounds["baseline"], args.seconds)
        opens_recorded = count_opens(url)  # the readiness request has no valid token
        print(f"pixel:    {pixel['rps']:.0f} req/s  p50 {pixel['p50_ms']:.2f} ms  p99 {pixel['p99_ms']:.2f} ms  "
              f"200s {pixel['responses_200']}  failures {pixel['failures']}  opens recorded {opens_recorded}  "
              f"rounds {[round(x['rps']) for x in rounds['pixel']]}", flush=True)
        print(f"baseline: {baseline['rps']:.0f} req/s  p50 {baseline['p50_ms']:.2f} ms  "
              f"p99 {baseline['p99_ms']:.2f} ms  failures {baseline['failures']}  "
              f"rounds {[round(x['rps']) for x in rounds['baseline']]}", flush=True)
    finally:
        drop()
        shutil.rmtree(tmp, ignore_errors=True)  # the SQLite file and the server logs

    result = {
        "pixel_rps": round(pixel["rps"], 1),
        "baseline_rps": round(baseline["rps"], 1),
        "ratio": round(pixel["rps"] / baseline["rps"], 3) if baseline["rps"] else None,
        "p50_ms": round(pixel["p50_ms"], 3),
        "p99_ms": round(pixel["p99_ms"], 3),
        "responses_200": pixel["responses_200"],
        "opens_recorded": opens_recorded,
        "pixel_failures": pixel["failures"],
        "baseline_p50_ms": round(baseline["p50_ms"], 3),
        "database": backend,
        "workers": args.workers or 2 * (os.cpu_count() or 1) + 1,
        "server": _server_settings(),
        "clients": args.clients,
        "seconds": args.seconds,
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
