"""Write the generated demo history into the database (service: takes a Session or Connection, never commits).

Rows go in with Core ``executemany`` in chunks, with primary keys assigned by the generator
(1..N, which is why the data tables must be empty), so nothing needs RETURNING. On PostgreSQL the
id sequences are moved past the inserted ids afterwards, so later inserts by the app do not collide.
"""
from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from emailexp.errors import StateError
from emailexp.models import (
    ClickEvent, Conversion, Experiment, OpenEvent, Owner, Recipient, Segment, Send, SendLink, Team, Variant,
)

from .generate import EXPERIMENTS, NO_TIME, DemoData, generate

#: Insert order (parents first). These are the tables the demo fills and ``delete_demo_data`` empties.
DATA_MODELS = (Segment, Team, Owner, Recipient, Experiment, Variant, Send, SendLink, OpenEvent, ClickEvent,
               Conversion)
CHUNK_ROWS = 20_000


@dataclass(frozen=True)
class DemoExperiment:
    id: int
    name: str
    status: str
    truth: str
    expected_verdict: str


@dataclass(frozen=True)
class DemoSummary:
    """What was loaded: row counts per table, the experiments with their planted truth, and one
    sample send (primary key, send time, link positions) to show tracking URLs for."""

    counts: dict[str, int]
    experiments: tuple[DemoExperiment, ...]
    sample_send_pk: int
    sample_send_id: str
    sample_sent_at: datetime
    sample_link_positions: tuple[int, ...]
    generate_seconds: float
    insert_seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def _dialect_name(bind: Session | Connection) -> str:
    if isinstance(bind, Connection):
        return bind.dialect.name
    return bind.get_bind().dialect.name  # a Session or Flask-SQLAlchemy's scoped_session


def database_has_data(bind: Session | Connection) -> bool:
    """True if any table the demo fills has a row (users and API keys do not count)."""
    return any(bind.execute(sa.select(sa.literal(1)).select_from(m.__table__).limit(1)).first() is not None
               for m in DATA_MODELS)


def _tables_to_clear() -> list[sa.Table]:
    """The demo's tables plus every table that references them (e.g. a later feature's tables with a
    foreign key to sends), children first. Users, API keys and unrelated tables are kept."""
    metadata = Send.__table__.metadata
    doomed = {m.__table__ for m in DATA_MODELS}
    changed = True
    while changed:
        changed = False
        for table in metadata.tables.values():
            if table not in doomed and any(fk.column.table in doomed for fk in table.foreign_keys):
                doomed.add(table)
                changed = True
    return [t for t in reversed(metadata.sorted_tables) if t in doomed]


def delete_demo_data(bind: Session | Connection) -> dict[str, int]:
    """Delete every row of the data tables (and tables referencing them); returns rows deleted per table.

    On PostgreSQL one TRUNCATE (transactional there) instead of DELETEs: row-by-row foreign-key
    checks against unindexed referencing columns (click_events.link_id) made DELETE take over a
    minute at full scale. No CASCADE: a referencing table missing from the list is an error, not
    a silent truncation.
    """
    tables = _tables_to_clear()
    counts = {t.name: bind.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in tables}
    if _dialect_name(bind) == "postgresql":
        bind.execute(sa.text("TRUNCATE " + ", ".join(f'"{t.name}"' for t in tables) + " RESTART IDENTITY"))
        return counts
    for table in tables:
        bind.execute(sa.delete(table))
    return counts


def load_demo(bind: Session | Connection, *, now: datetime, seed: int = 7, scale: float = 1.0,
              tracking_secret: str) -> DemoSummary:
    """Generate and insert the demo history ending at ``now`` (aware). The caller commits.

    ``tracking_secret`` keys the opaque ``ip_hash`` values (the app's SECRET_KEY, so the demo's
    hashes look like the tracker's and reveal nothing). Raises StateError if the data tables are
    not empty (delete them first with ``delete_demo_data``).
    """
    if database_has_data(bind):
        raise StateError("the database already has data; run `emailexp demo --reset` to replace it",
                         field="reset")
    t0 = _time.perf_counter()
    data = generate(now, seed=seed, scale=scale, hash_key=_hash_key(tracking_secret))
    t1 = _time.perf_counter()
    timings: dict[str, float] = {}
    for model in DATA_MODELS:
        ts = _time.perf_counter()
        insert_table(bind, model.__table__, data)
        timings[model.__tablename__] = round(_time.perf_counter() - ts, 3)
    if _dialect_name(bind) == "postgresql":
        for model in DATA_MODELS:
            name = model.__tablename__
            bind.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                 f"(SELECT max(id) FROM {name}))"))
    t2 = _time.perf_counter()

    sends = data.tables["sends"]
    sample = int(np.flatnonzero(np.equal(sends["experiment_id"], 1))[0])
    links = data.tables["send_links"]
    positions = tuple(int(p) for s, p in zip(links["send_id"], links["position"]) if s == sample + 1)
    exps = data.tables["experiments"]
    return DemoSummary(
        counts={m.__tablename__: data.n_rows(m.__tablename__) for m in DATA_MODELS},
        experiments=tuple(DemoExperiment(int(i), n, s, spec.truth, spec.expected_verdict)
                          for i, n, s, spec in zip(exps["id"], exps["name"], exps["status"], EXPERIMENTS)),
        sample_send_pk=sample + 1,
        sample_send_id=str(sends["send_id"][sample]),
        sample_sent_at=datetime.fromtimestamp(int(sends["sent_at"][sample]), UTC),
        sample_link_positions=positions,
        generate_seconds=round(t1 - t0, 3), insert_seconds=round(t2 - t1, 3), timings=timings,
    )


def _hash_key(secret: str) -> bytes:
    import hashlib
    import hmac

    return hmac.new(secret.encode("utf-8"), b"emailexp/demo/ip-hash/v1", hashlib.sha256).digest()


def insert_table(bind: Session | Connection, table: sa.Table, data: DemoData) -> int:
    """Insert one generated table in chunks of CHUNK_ROWS rows.

    Core executemany everywhere, except for the large tables on PostgreSQL with psycopg 3, which
    go through COPY FROM STDIN on the same connection and transaction: psycopg's executemany sends
    one INSERT per row (about 5,000 rows/s here) where COPY is several times faster. COPY skips
    SQLAlchemy's bind processing, which is why ``_column_values`` already yields driver-ready
    values (aware UTC datetimes, Decimal, int, str, None) and why tables with JSON or Time
    columns (experiments, variants; a few rows) always use executemany.
    """
    cols = data.tables[table.name]
    n = data.n_rows(table.name)
    dt_cols = set(data.datetime_columns.get(table.name, ()))
    names = list(cols)
    copy_cursor = _copy_cursor(bind) if n >= COPY_MIN_ROWS else None
    stmt = sa.insert(table)
    for start in range(0, n, CHUNK_ROWS):
        stop = min(n, start + CHUNK_ROWS)
        values = [_column_values(cols[c][start:stop], c in dt_cols, table.c[c]) for c in names]
        if copy_cursor is not None:
            quoted = ", ".join(f'"{c}"' for c in names)
            with copy_cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
                for row in zip(*values):
                    copy.write_row(row)
        else:
            bind.execute(stmt, [dict(zip(names, row)) for row in zip(*values)])
    if copy_cursor is not None:
        copy_cursor.close()
    return n


COPY_MIN_ROWS = 1_000


def _copy_cursor(bind: Session | Connection):
    """A psycopg 3 cursor on the bind's current connection and transaction, or None."""
    if _dialect_name(bind) != "postgresql":
        return None
    conn = bind if isinstance(bind, Connection) else bind.connection()
    cursor = conn.connection.driver_connection.cursor()
    return cursor if hasattr(cursor, "copy") else None


def _column_values(values, is_datetime: bool, column: sa.Column) -> list:
    """Plain Python values for a driver: ints, str, None, aware datetimes, Decimal amounts."""
    if is_datetime:
        arr = np.asarray(values, dtype=np.int64)
        return [None if s == NO_TIME else datetime.fromtimestamp(s, UTC) for s in arr.tolist()]
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "f":
            if isinstance(column.type, sa.Numeric) and not isinstance(column.type, sa.Float):
                return [None if np.isnan(v) else Decimal(f"{v:.2f}") for v in values.tolist()]
            return [None if np.isnan(v) else v for v in values.tolist()]
        if values.dtype.kind == "O":
            return [v.item() if isinstance(v, np.generic) else v for v in values.tolist()]
        if column.foreign_keys and values.dtype.kind in "iu":
            return [None if v < 0 else v for v in values.tolist()]  # -1 marks "no parent"
        return values.tolist()
    return [v.item() if isinstance(v, np.generic) else v for v in values]
