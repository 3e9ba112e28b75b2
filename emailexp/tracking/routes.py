"""Public tracking endpoints: the open pixel and the click redirect.

GET|HEAD /o/<token>.gif  always a 1x1 transparent GIF (200, never cached), whatever the token; an
                         open is recorded, committed before the answer, for a valid open token
                         whose send exists. A database failure is a 500, so a 200 always means
                         the open is stored.
GET|HEAD /c/<token>      302 to the URL registered for (send, position) in send_links, and a
                         click recorded; a bad token or an unregistered position is a plain 404.

Client addresses: request.remote_addr, or with TRUST_PROXY_HOPS = n > 0 (set it to the number of
reverse proxies in front of the app) the n-th address from the right of X-Forwarded-For. Only a
keyed hash of the address's /24 (/48) is stored.
"""
from __future__ import annotations

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's busy handler alone
    fcntl = None
import os
import threading
from contextlib import nullcontext
from datetime import UTC, datetime

from flask import Blueprint, Flask, Response, current_app, request
from sqlalchemy.engine import Engine
from werkzeug.urls import iri_to_uri

from emailexp.extensions import db
from emailexp.tracking import record
from emailexp.tracking.classify import classify_click, classify_open, hash_ip
from emailexp.tracking.tokens import read_click_token, read_open_token, tracking_key

bp = Blueprint("tracking", __name__)

# The smallest transparent 1x1 GIF89a (43 bytes).
PIXEL_GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
             b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
_NO_STORE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private",
    "Pragma": "no-cache",
    "Expires": "0",
}


def _pixel() -> Response:
    return Response(PIXEL_GIF, status=200, mimetype="image/gif", headers=_NO_STORE)


def _not_found() -> Response:
    return Response("Not Found\n", status=404, mimetype="text/plain", headers=_NO_STORE)


def _key(app: Flask) -> bytes:
    key = app.extensions.get("emailexp.tracking_key")
    if key is None:
        key = app.extensions["emailexp.tracking_key"] = tracking_key(app.config["SECRET_KEY"])
    return key


def client_ip() -> str | None:
    hops = int(current_app.config.get("TRUST_PROXY_HOPS", 0) or 0)
    if hops > 0:
        forwarded = request.headers.get("X-Forwarded-For", "")
        values = [v.strip() for v in forwarded.split(",") if v.strip()]
        if len(values) >= hops:
            return values[-hops]
    return request.remote_addr


@bp.route("/o/<path:name>", methods=["GET", "HEAD"])
def open_pixel(name: str) -> Response:
    """The pixel as a Flask view (url_for, and any server that bypasses PixelFastPath)."""
    app = current_app._get_current_object()
    record_pixel_hit(app, db.engine, name, request.method, request.headers.get("User-Agent"), client_ip())
    return _pixel()


def record_pixel_hit(app: Flask, engine: Engine, name: str, method: str, user_agent: str | None,
                     ip: str | None) -> None:
    key = _key(app)
    token = read_open_token(key, name.removesuffix(".gif"))
    if token is not None:
        now = datetime.now(UTC)
        verdict = classify_open(user_agent, method, (now - token.sent_at).total_seconds())
        _store_open(engine, send_pk=token.send_pk, opened_at=now, classification=verdict,
                    ip_hash=hash_ip(key, ip))


class PixelFastPath:
    """WSGI middleware answering GET/HEAD /o/... before Flask builds a request context.

    The pixel is the hottest endpoint (thousands of mail clients per second at peak) and needs
    none of what Flask sets up per request (session cookie, CSRF, locale, blueprints): only the
    path, the method, the User-Agent and the client address. It does exactly what `open_pixel`
    does, with the same 200-GIF-whatever-the-token contract and a 500 (no GIF) if the database
    write fails, so a 200 still means the open is stored. Everything else goes to Flask.
    """

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        self.engine: Engine | None = None
        self.headers = [("Content-Type", "image/gif"), ("Content-Length", str(len(PIXEL_GIF))),
                        *_NO_STORE.items()]

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if not path.startswith("/o/") or len(path) <= 3 or method not in ("GET", "HEAD"):
            return self.wsgi_app(environ, start_response)
        if self.engine is None:
            with self.app.app_context():
                self.engine = db.engine
        try:
            record_pixel_hit(self.app, self.engine, path[3:], method, environ.get("HTTP_USER_AGENT"),
                             self._client_ip(environ))
        except Exception:
            self.app.logger.exception("recording an open failed")
            start_response("500 Internal Server Error", [("Content-Type", "text/plain"), *_NO_STORE.items()])
            return [b"Internal Server Error\n"]
        start_response("200 OK", list(self.headers))
        return [] if method == "HEAD" else [PIXEL_GIF]

    def _client_ip(self, environ) -> str | None:
        hops = int(self.app.config.get("TRUST_PROXY_HOPS", 0) or 0)
        if hops > 0:
            values = [v.strip() for v in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if v.strip()]
            if len(values) >= hops:
                return values[-hops]
        return environ.get("REMOTE_ADDR")


def _store_open(engine: Engine, **values) -> None:
    """`record.record_open` in its own short transaction, committed before the pixel is sent.

    The pixel is the hottest write: it runs on a pooled DBAPI connection, not a SQLAlchemy
    `Connection`, whose per-request set-up and event dispatch cost more CPU than the insert
    (and, on SQLite, keep the write lock held longer). An exception leaves the transaction
    open; returning the connection to the pool rolls it back."""
    dialect = engine.dialect
    sqlite = dialect.name == "sqlite"
    fairy = engine.raw_connection()
    try:
        dbapi_connection = fairy.dbapi_connection
        with _sqlite_writers(engine) if sqlite else nullcontext():
            if sqlite:
                # What emailexp.db's "begin" hook issues for Connection.begin(): take the write
                # lock now rather than fail when a read lock is upgraded.
                dbapi_connection.execute("BEGIN IMMEDIATE")
            if record.record_open_dbapi(dbapi_connection, dialect, **values):
                dbapi_connection.commit()
            else:
                dbapi_connection.rollback()
    finally:
        fairy.close()


class _WriterQueue:
    """Pixel writers on one SQLite file wait here, one at a time, before BEGIN IMMEDIATE.

    SQLite's busy handler polls: a writer that finds the lock taken sleeps 1, 2, 5, 10... ms and
    retries, so under load most of a pixel's time was spent asleep after the lock was already
    free. An exclusive flock() on a lock file next to the database (and a thread lock, since
    flock is per open file, not per thread) makes waiters block in the kernel and wake as soon
    as the previous writer commits. Only pixel writes queue here; every other writer still
    meets them at SQLite's own lock, which remains what keeps the data consistent."""

    def __init__(self, database_path: str):
        self.path = database_path + "-pixel.lock"
        self.thread_lock = threading.Lock()
        self.fd: int | None = None
        self.pid = 0

    def __enter__(self):
        self.thread_lock.acquire()
        try:
            if self.pid != os.getpid():  # opened per process: a forked copy would share the lock
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self.pid = os.getpid()
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.thread_lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.thread_lock.release()


_queues: dict[str, _WriterQueue] = {}
_queues_lock = threading.Lock()


def _sqlite_writers(engine: Engine):
    database = engine.url.database
    if not database or database == ":memory:" or fcntl is None:
        return nullcontext()
    queue = _queues.get(database)
    if queue is None:
        with _queues_lock:
            queue = _queues.setdefault(database, _WriterQueue(os.path.abspath(database)))
    return queue


@bp.route("/c/<path:name>", methods=["GET", "HEAD"])
def click_redirect(name: str) -> Response:
    key = _key(current_app._get_current_object())
    token = read_click_token(key, name)
    if token is None:
        return _not_found()
    now = datetime.now(UTC)
    verdict = classify_click(request.headers.get("User-Agent"), request.method,
                             (now - token.sent_at).total_seconds())
    ip_hash = hash_ip(key, client_ip())
    with db.engine.begin() as conn:
        link = record.find_link(conn, send_pk=token.send_pk, position=token.position)
        if link is None:
            return _not_found()
        link_id, url = link
        if not url.lower().startswith(("http://", "https://")):
            return _not_found()  # only web links are followed, whatever was registered
        record.record_click(conn, send_pk=token.send_pk, link_id=link_id, clicked_at=now,
                            classification=verdict, ip_hash=ip_hash)
    resp = Response(status=302, headers=_NO_STORE)
    resp.headers["Location"] = iri_to_uri(url)
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp
