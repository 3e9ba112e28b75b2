"""Engine set-up that SQLAlchemy does not do by itself.

SQLite is the embedded default and must take concurrent writers (gunicorn workers, pixel traffic)
without "database is locked": WAL journal, a busy timeout, and BEGIN IMMEDIATE so a writer queues
for the lock at the start of its transaction instead of failing when it upgrades a read lock.
synchronous=NORMAL in WAL mode keeps every committed transaction across a process crash (SIGKILL);
only an OS crash or power loss can lose the last commits.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

SQLITE_BUSY_TIMEOUT_MS = 30_000


def engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}}
    return {"pool_pre_ping": True}


def configure_engine(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by every sqlite test
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would otherwise defer it).
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
