"""Process-level tests against the real gunicorn server (production settings): concurrent pixel
hits from threads and processes, and a SIGKILL of the whole server mid-load."""
from __future__ import annotations

import http.client
import multiprocessing
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from emailexp.models import OpenEvent
from emailexp.tracking.tokens import make_open_token, tracking_key

pytestmark = pytest.mark.slow

SECRET = "server-test-secret-0123456789abcdef"
KEY = tracking_key(SECRET)
SENT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/124.0.0.0 Safari/537.36")


def hit(port: int, path: str, timeout: float = 30.0) -> int:
    """One pixel request on a fresh connection; the status, or -1 if no complete response came."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": CHROME})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status if len(body) == 43 else -1
    except (OSError, http.client.HTTPException):
        return -1
    finally:
        conn.close()


def hit_all_threaded(port: int, paths: list[str], threads: int) -> list[int]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda p: hit(port, p), paths))


def count_opens(url: str) -> dict[int, int]:
    engine = sa.create_engine(url)
    t = OpenEvent.__table__
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.select(t.c.send_id, sa.func.count()).group_by(t.c.send_id)).all())
    finally:
        engine.dispose()


@pytest.fixture
def seeded(app, database, engine, insert_sends):
    """A database with tables (the app fixture creates them) and a function adding sends."""
    def seed(n: int, prefix: str) -> list[int]:
        return insert_sends(engine, n, sent_at=SENT, prefix=prefix)
    yield seed
    engine.dispose()


def test_concurrent_pixel_hits_from_threads_and_processes(database, seeded, server_helper):
    processes, threads, per_process = 3, 4, 120
    n = processes * per_process
    pks = seeded(n, "conc")
    paths = [f"/o/{make_open_token(KEY, pk, SENT)}.gif" for pk in pks]
    server = server_helper.start_server(database_url=database.url, secret_key=SECRET, workers=3)
    try:
        port = urlsplit(server.url).port
        chunks = [paths[i::processes] for i in range(processes)]
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(processes) as pool:
            results = pool.starmap(hit_all_threaded, [(port, chunk, threads) for chunk in chunks])
        # and some from threads of this process at the same time as nothing else: a second wave
        statuses = [s for r in results for s in r]
    finally:
        server.stop()
    log = server.log()
    assert statuses.count(200) == n, (statuses, log[-3000:])
    per_send = count_opens(database.url)
    assert sum(per_send.values()) == n
    assert per_send == {pk: 1 for pk in pks}
    assert "database is locked" not in log and "Traceback" not in log


def test_sigkill_mid_load_loses_no_acknowledged_open(database, seeded, server_helper):
    pks = seeded(20_000, "crash")
    spare, = seeded(1, "after")
    server = server_helper.start_server(database_url=database.url, secret_key=SECRET, workers=3)
    port = urlsplit(server.url).port
    acknowledged: list[int] = []
    stop = threading.Event()
    lock = threading.Lock()
    next_index = iter(range(len(pks)))

    def client():
        while not stop.is_set():
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            if hit(port, f"/o/{make_open_token(KEY, pks[i], SENT)}.gif", timeout=5) == 200:
                with lock:
                    acknowledged.append(pks[i])

    workers = [threading.Thread(target=client) for _ in range(6)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # SIGKILL to the master and every worker, mid-load
    stop.set()
    for w in workers:
        w.join(30)
    assert len(acknowledged) >= 300, server.log()[-3000:]

    if database.backend == "sqlite":
        path = database.url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()

    # Restart on the same database: it serves and records again.
    server = server_helper.start_server(database_url=database.url, secret_key=SECRET, workers=2)
    try:
        assert hit(urlsplit(server.url).port, f"/o/{make_open_token(KEY, spare, SENT)}.gif") == 200
    finally:
        server.stop()

    per_send = count_opens(database.url)
    assert per_send.pop(spare) == 1
    assert len(acknowledged) == len(set(acknowledged))
    missing = set(acknowledged) - set(per_send)
    assert not missing, f"{len(missing)} acknowledged opens were lost"
    assert len(acknowledged) <= sum(per_send.values())
    assert all(count == 1 for count in per_send.values())
