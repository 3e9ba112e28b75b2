"""The pixel and click endpoints through the Flask test client, on every configured database."""
from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from emailexp.models import ClickEvent, OpenEvent, Send
from emailexp.tracking.classify import hash_ip
from emailexp.tracking.record import CLICK_IMPLIED_OPEN
from emailexp.tracking.routes import PIXEL_GIF
from emailexp.tracking.tokens import make_click_token, make_open_token, tracking_key

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/124.0.0.0 Safari/537.36")
MPP = "Mozilla/5.0"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"
IP = "198.51.100.77"
SENT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def opens(engine, pk=None):
    t = OpenEvent.__table__
    stmt = sa.select(t).order_by(t.c.id)
    if pk is not None:
        stmt = stmt.where(t.c.send_id == pk)
    with engine.connect() as conn:
        return conn.execute(stmt).mappings().all()


def send_row(engine, pk):
    with engine.connect() as conn:
        return conn.execute(sa.select(Send.__table__).where(Send.__table__.c.id == pk)).mappings().one()


def pixel(client, token, ua=CHROME, method="GET", ip=IP, headers=None):
    return client.open(f"/o/{token}.gif", method=method, headers={"User-Agent": ua, **(headers or {})},
                       environ_base={"REMOTE_ADDR": ip})


def assert_gif(resp):
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "image/gif"
    assert resp.headers["Cache-Control"] == "no-store, no-cache, must-revalidate, private"
    assert resp.headers["Pragma"] == "no-cache"
    if resp.request.method == "GET":
        assert resp.data == PIXEL_GIF and len(resp.data) == 43


def test_gif_is_a_valid_transparent_1x1():
    assert PIXEL_GIF[:6] == b"GIF89a" and PIXEL_GIF[6:10] == b"\x01\x00\x01\x00" and PIXEL_GIF[-1:] == b";"
    assert b"!\xf9\x04\x01" in PIXEL_GIF  # graphic control extension with the transparency flag


def test_human_open_is_recorded_and_classified(insert_sends, client, engine, key):
    pk, = insert_sends(engine, 1, sent_at=SENT)
    resp = pixel(client, make_open_token(key, pk, SENT))
    assert_gif(resp)
    row, = opens(engine)
    assert (row["send_id"], row["verdict"], row["reason"], row["ua_family"]) == (pk, "human", "mail_client", "chrome")
    assert row["ip_hash"] == hash_ip(key, IP) and len(row["ip_hash"]) == 16
    assert IP not in str(dict(row)) and "198.51.100" not in str(dict(row)) and "Chrome/" not in str(dict(row))
    send = send_row(engine, pk)
    assert send["first_open_at"] == send["first_human_open_at"] == row["opened_at"]
    assert abs(row["opened_at"] - datetime.now(UTC)) < timedelta(seconds=30)


def test_machine_open_sets_first_open_only_and_human_keeps_earliest(insert_sends, client, engine, key):
    pk, other = insert_sends(engine, 2, sent_at=SENT)
    token = make_open_token(key, pk, SENT)
    assert_gif(pixel(client, token, ua=MPP))
    send = send_row(engine, pk)
    machine_at = send["first_open_at"]
    assert machine_at is not None and send["first_human_open_at"] is None
    assert_gif(pixel(client, token, ua=SCANNER))
    assert_gif(pixel(client, token, method="HEAD"))
    assert send_row(engine, pk)["first_human_open_at"] is None
    assert_gif(pixel(client, token))
    assert_gif(pixel(client, token))
    rows = opens(engine, pk)
    assert [r["reason"] for r in rows] == ["apple_mpp_prefetch", "security_scanner_ua", "head_request",
                                          "mail_client", "mail_client"]
    send = send_row(engine, pk)
    assert send["first_open_at"] == machine_at
    assert send["first_human_open_at"] == rows[3]["opened_at"] < rows[4]["opened_at"]
    assert send_row(engine, other)["first_open_at"] is None


def test_first_open_columns_only_move_earlier(insert_sends, engine, key, app):
    """The conditional UPDATE keeps the earliest time even when events arrive out of order."""
    from emailexp.tracking.classify import Classification
    from emailexp.tracking.record import record_open

    pk, = insert_sends(engine, 1, sent_at=SENT)
    human = Classification("human", "mail_client", "chrome")
    machine = Classification("machine", "apple_mpp_prefetch", "apple_mail")
    t0 = SENT + timedelta(hours=1)
    for at, cls in [(t0, human), (t0 - timedelta(minutes=5), machine), (t0 + timedelta(minutes=5), human),
                    (t0 - timedelta(minutes=1), human)]:
        with engine.begin() as conn:
            assert record_open(conn, send_pk=pk, opened_at=at, classification=cls, ip_hash=None)
    send = send_row(engine, pk)
    assert send["first_open_at"] == t0 - timedelta(minutes=5)
    assert send["first_human_open_at"] == t0 - timedelta(minutes=1)


def test_fast_open_is_machine_from_the_token_time(insert_sends, client, engine, key):
    now = datetime.now(UTC).replace(microsecond=0)
    pk, = insert_sends(engine, 1, sent_at=now)
    assert_gif(pixel(client, make_open_token(key, pk, now)))
    row, = opens(engine)
    assert (row["verdict"], row["reason"]) == ("machine", "too_fast_after_send")
    assert send_row(engine, pk)["first_human_open_at"] is None


def forged_tokens(key, pk, other_pk):
    good = make_open_token(key, pk, SENT)
    raw = bytearray(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    raw[-1] ^= 1
    flipped = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    return {
        "forged_key": make_open_token(tracking_key("not-the-secret"), pk, SENT),
        "flipped_tag": flipped,
        "truncated": good[:-3],
        "extended": good + "AA",
        "random": "q8Zt3v0wXlY2sKf9JmB1aRcE4dHu",
        "empty_ish": "-",
        "junk": "..%2F..%2Fetc%2Fpasswd",
        "click_as_open": make_click_token(key, pk, SENT, 1),
        "unknown_send": make_open_token(key, other_pk + 10_000, SENT),
    }


@pytest.mark.parametrize("kind", ["forged_key", "flipped_tag", "truncated", "extended", "random", "empty_ish",
                                  "junk", "click_as_open", "unknown_send"])
def test_bad_tokens_record_nothing_but_still_get_a_gif(insert_sends, client, engine, key, kind):
    pk, other = insert_sends(engine, 2, sent_at=SENT)
    token = forged_tokens(key, pk, other)[kind]
    assert_gif(pixel(client, token))
    assert_gif(pixel(client, token, method="HEAD"))
    assert opens(engine) == []
    for p in (pk, other):
        assert send_row(engine, p)["first_open_at"] is None
    # the app still records the next good open (no transaction left aborted)
    assert_gif(pixel(client, make_open_token(key, other, SENT)))
    assert [r["send_id"] for r in opens(engine)] == [other]


def test_other_sends_token_records_on_that_send_only(insert_sends, client, engine, key):
    a, b = insert_sends(engine, 2, sent_at=SENT)
    assert_gif(pixel(client, make_open_token(key, b, SENT)))
    assert [r["send_id"] for r in opens(engine)] == [b]
    assert send_row(engine, a)["first_open_at"] is None


@pytest.mark.parametrize("path", ["/o/", "/o/abc", "/o/abc.gif", "/o/a/b/c.gif", "/o/%00.gif", "/o/" + "A" * 5000 + ".gif"])
def test_any_pixel_path_is_a_gif(client, engine, path):
    resp = client.get(path)
    if path == "/o/":  # no token at all: not a pixel URL
        assert resp.status_code == 404
        return
    assert_gif(resp)
    assert opens(engine) == []


@pytest.mark.parametrize("hops,forwarded,expected", [
    (0, "203.0.113.9", IP),                         # not trusted: the socket address
    (1, "10.0.0.1, 203.0.113.9", "203.0.113.9"),    # one proxy: the address it saw
    (2, "203.0.113.9, 10.0.0.1", "203.0.113.9"),
    (2, "10.0.0.1", IP),                            # fewer addresses than hops: the socket address
])
def test_forwarded_for_is_honoured_only_when_configured(insert_sends, app, client, engine, key, hops, forwarded,
                                                       expected):
    app.config["TRUST_PROXY_HOPS"] = hops
    pk, = insert_sends(engine, 1, sent_at=SENT)
    assert_gif(pixel(client, make_open_token(key, pk, SENT), headers={"X-Forwarded-For": forwarded}))
    assert opens(engine)[0]["ip_hash"] == hash_ip(key, expected)


LINKS = {1: "https://example.com/pricing?utm_source=mail", 2: "https://example.com/日本語"}


def clicks(engine):
    t = ClickEvent.__table__
    with engine.connect() as conn:
        return conn.execute(sa.select(t).order_by(t.c.id)).mappings().all()


def test_click_redirects_to_the_registered_url_and_records(insert_sends, client, engine, key):
    pk, = insert_sends(engine, 1, sent_at=SENT, links=LINKS)
    resp = client.get(f"/c/{make_click_token(key, pk, SENT, 1)}", headers={"User-Agent": CHROME},
                      environ_base={"REMOTE_ADDR": IP})
    assert resp.status_code == 302
    assert resp.headers["Location"] == LINKS[1]
    click, = clicks(engine)
    assert (click["send_id"], click["verdict"], click["reason"], click["ua_family"]) == (pk, "human", "mail_client", "chrome")
    assert click["ip_hash"] == hash_ip(key, IP)
    send = send_row(engine, pk)
    assert send["first_click_at"] == click["clicked_at"]
    # a human click implies an open, recorded under its own reason
    implied, = opens(engine)
    assert (implied["verdict"], implied["reason"]) == ("human", CLICK_IMPLIED_OPEN)
    assert send["first_human_open_at"] == click["clicked_at"]

    resp = client.get(f"/c/{make_click_token(key, pk, SENT, 2)}", headers={"User-Agent": SCANNER})
    assert resp.status_code == 302
    assert resp.headers["Location"] == "https://example.com/%E6%97%A5%E6%9C%AC%E8%AA%9E"
    assert [c["reason"] for c in clicks(engine)] == ["mail_client", "security_scanner_ua"]
    assert len(opens(engine)) == 1  # a machine click implies nothing
    assert send_row(engine, pk)["first_click_at"] == click["clicked_at"]


def test_bad_click_tokens_are_404_and_record_nothing(insert_sends, client, engine, key):
    pk, other = insert_sends(engine, 2, sent_at=SENT, links={1: "https://example.com/a"})
    bad = {
        "unregistered_position": make_click_token(key, pk, SENT, 7),
        "open_as_click": make_open_token(key, pk, SENT),
        "forged": make_click_token(tracking_key("nope"), pk, SENT, 1),
        "truncated": make_click_token(key, pk, SENT, 1)[:-2],
        "unknown_send": make_click_token(key, other + 999, SENT, 1),
        "garbage": "https%3A%2F%2Fevil.example",
    }
    for name, token in bad.items():
        resp = client.get(f"/c/{token}", headers={"User-Agent": CHROME})
        assert resp.status_code == 404, name
        assert "Location" not in resp.headers
        assert len(resp.data) < 100
    assert client.get("/c/").status_code == 404
    assert clicks(engine) == [] and opens(engine) == []
    assert send_row(engine, pk)["first_click_at"] is None


def test_click_never_redirects_to_a_non_web_url(insert_sends, client, engine, key):
    pk, = insert_sends(engine, 1, sent_at=SENT, links={1: "javascript:alert(1)"})
    assert client.get(f"/c/{make_click_token(key, pk, SENT, 1)}").status_code == 404
    assert clicks(engine) == []
