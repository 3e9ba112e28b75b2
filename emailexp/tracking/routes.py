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

from datetime import UTC, datetime

from flask import Blueprint, Flask, Response, current_app, request
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
    app = current_app._get_current_object()
    key = _key(app)
    token = read_open_token(key, name.removesuffix(".gif"))
    if token is not None:
        now = datetime.now(UTC)
        verdict = classify_open(request.headers.get("User-Agent"), request.method,
                                (now - token.sent_at).total_seconds())
        ip_hash = hash_ip(key, client_ip())
        with db.engine.connect() as conn, conn.begin() as trans:
            if not record.record_open(conn, send_pk=token.send_pk, opened_at=now, classification=verdict,
                                      ip_hash=ip_hash):
                trans.rollback()
    return _pixel()


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
