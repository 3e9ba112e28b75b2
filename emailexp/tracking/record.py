"""Recording opens and clicks: the hot write path of the pixel and click endpoints.

These functions take a SQLAlchemy Core `Connection` inside a transaction that the caller owns
(one short `engine.begin()` per request) and never commit. They use Core statements built once at
import time; `record_open` (the pixel) runs them precompiled per dialect on the DBAPI cursor.
No ORM session, no read before the insert: the token carries the send time and the foreign key
proves the send exists.

Events are append-only. In the same transaction the cache columns on `sends` move to the earliest
time seen: `first_open_at` (any verdict), `first_human_open_at` (human opens only) and
`first_click_at` (any verdict, like `first_open_at`; a human click rate must count
`click_events.verdict = 'human'`).

A human click also records an open (a click proves the message was displayed, even when images
were blocked): an `open_events` row with verdict "human", reason CLICK_IMPLIED_OPEN and the
click's ua_family, which also moves `first_open_at` / `first_human_open_at`. Machine and unknown
clicks imply nothing.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from emailexp.models import ClickEvent, OpenEvent, Send, SendLink
from emailexp.tracking.classify import HUMAN, Classification

CLICK_IMPLIED_OPEN = "click_implied_open"

_opens = OpenEvent.__table__
_clicks = ClickEvent.__table__
_sends = Send.__table__
_links = SendLink.__table__

_OPEN_COLUMNS = ("send_id", "opened_at", "verdict", "reason", "ua_family", "ip_hash")
_INSERT_OPEN = sa.insert(_opens).values({c: sa.bindparam(c, type_=_opens.c[c].type) for c in _OPEN_COLUMNS})
_INSERT_CLICK = sa.insert(_clicks)


def _move_earlier(column: sa.Column) -> sa.Update:
    """UPDATE sends SET col = :t WHERE id = :send_pk AND (col IS NULL OR col > :t)."""
    t = sa.bindparam("t", type_=column.type)
    return (sa.update(_sends)
            .where(_sends.c.id == sa.bindparam("send_pk"), sa.or_(column.is_(None), column > t))
            .values({column.name: t}))


def _move_both_earlier() -> sa.Update:
    """One statement for a human open: both first-open columns move to :t where it is earlier."""
    fo, fho = _sends.c.first_open_at, _sends.c.first_human_open_at
    t = sa.bindparam("t", type_=fo.type)
    fo_later = sa.or_(fo.is_(None), fo > t)
    fho_later = sa.or_(fho.is_(None), fho > t)
    return (sa.update(_sends)
            .where(_sends.c.id == sa.bindparam("send_pk"), sa.or_(fo_later, fho_later))
            .values({fo.name: sa.case((fo_later, t), else_=fo), fho.name: sa.case((fho_later, t), else_=fho)}))


_FIRST_OPEN = _move_earlier(_sends.c.first_open_at)
_FIRST_OPENS_HUMAN = _move_both_earlier()
_FIRST_CLICK = _move_earlier(_sends.c.first_click_at)
_FIND_LINK = (sa.select(_links.c.id, _links.c.url)
              .where(_links.c.send_id == sa.bindparam("send_pk"), _links.c.position == sa.bindparam("position")))


class _Prepared:
    """A Core statement compiled once for one dialect, run on the connection's DBAPI cursor.

    The pixel is the hot path: going through `Connection.execute` costs more CPU than the
    SQLite write itself, and stretches the time the write lock is held. Bind values still go
    through the columns' types (so UTCDateTime stores exactly what the ORM stores)."""

    __slots__ = ("sql", "order", "processors")

    def __init__(self, stmt, dialect):
        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        self.order = tuple(compiled.positiontup) if compiled.positional else None
        self.processors = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                           for name, bind in compiled.binds.items()}

    def run(self, cursor, params: dict) -> int:
        values = {name: (proc(params[name]) if proc else params[name])
                  for name, proc in self.processors.items()}
        cursor.execute(self.sql, tuple(values[n] for n in self.order) if self.order is not None else values)
        return cursor.rowcount


_prepared: dict[tuple[str, str, int], _Prepared] = {}


def _prepare(stmt, dialect) -> _Prepared:
    key = (dialect.name, dialect.driver, id(stmt))
    prepared = _prepared.get(key)
    if prepared is None:
        prepared = _prepared[key] = _Prepared(stmt, dialect)
    return prepared


def record_open(conn: Connection, *, send_pk: int, opened_at: datetime, classification: Classification,
                ip_hash: str | None) -> bool:
    """Append an open event and move the send's first-open columns. Returns False, having
    written nothing, when no send has this primary key; the caller must then roll back its
    transaction (PostgreSQL has aborted it)."""
    return record_open_dbapi(conn.connection.dbapi_connection, conn.dialect, send_pk=send_pk, opened_at=opened_at,
                             classification=classification, ip_hash=ip_hash)


def record_open_dbapi(dbapi_connection, dialect, *, send_pk: int, opened_at: datetime,
                      classification: Classification, ip_hash: str | None) -> bool:
    """`record_open` on a DBAPI connection inside a transaction the caller began (and commits, or
    rolls back when this returns False): the pixel endpoint's path, with no SQLAlchemy
    `Connection` in between."""
    human = classification.verdict == HUMAN
    cursor = dbapi_connection.cursor()
    try:
        try:
            _prepare(_INSERT_OPEN, dialect).run(cursor, {
                "send_id": send_pk, "opened_at": opened_at, "verdict": classification.verdict,
                "reason": classification.reason, "ua_family": classification.ua_family[:64],
                "ip_hash": ip_hash,
            })
        except dialect.loaded_dbapi.IntegrityError:
            return False
        _prepare(_FIRST_OPENS_HUMAN if human else _FIRST_OPEN, dialect).run(cursor, {"send_pk": send_pk,
                                                                                    "t": opened_at})
    finally:
        cursor.close()
    return True


def find_link(conn: Connection, *, send_pk: int, position: int) -> tuple[int, str] | None:
    """(link id, URL) of the link registered at `position` for the send, or None."""
    row = conn.execute(_FIND_LINK, {"send_pk": send_pk, "position": position}).first()
    return None if row is None else (row.id, row.url)


def record_click(conn: Connection, *, send_pk: int, link_id: int, clicked_at: datetime,
                 classification: Classification, ip_hash: str | None) -> None:
    """Append a click event, move `first_click_at`, and for a human click record the implied
    open (see the module docstring). `link_id` comes from `find_link` in the same transaction."""
    conn.execute(_INSERT_CLICK, {
        "send_id": send_pk, "link_id": link_id, "clicked_at": clicked_at,
        "verdict": classification.verdict, "reason": classification.reason,
        "ua_family": classification.ua_family[:64], "ip_hash": ip_hash,
    })
    conn.execute(_FIRST_CLICK, {"send_pk": send_pk, "t": clicked_at})
    if classification.verdict == HUMAN:
        conn.execute(_INSERT_OPEN, {
            "send_id": send_pk, "opened_at": clicked_at, "verdict": HUMAN, "reason": CLICK_IMPLIED_OPEN,
            "ua_family": classification.ua_family[:64], "ip_hash": ip_hash,
        })
        _move_first_open(conn, send_pk, clicked_at, True)


def _move_first_open(conn: Connection, send_pk: int, at: datetime, human: bool) -> None:
    conn.execute(_FIRST_OPENS_HUMAN if human else _FIRST_OPEN, {"send_pk": send_pk, "t": at})
