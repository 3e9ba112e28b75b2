"""Tracking tokens: round trip, tamper resistance, never an exception."""
from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emailexp.tracking.tokens import (
    ClickToken, OpenToken, click_url, make_click_token, make_open_token, pixel_url, read_click_token,
    read_open_token, tracking_key,
)

KEY = tracking_key("unit-test-secret")
OTHER_KEY = tracking_key("another-secret")

pks = st.integers(min_value=1, max_value=2**63 - 1)
positions = st.integers(min_value=0, max_value=10_000)
times = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1),
                     timezones=st.just(UTC))


def whole_seconds(t: datetime) -> datetime:
    return datetime.fromtimestamp(int(t.timestamp()), UTC)


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@given(pks, times)
def test_open_round_trip(pk, t):
    token = make_open_token(KEY, pk, t)
    assert read_open_token(KEY, token) == OpenToken(pk, whole_seconds(t))
    assert make_open_token(KEY, pk, t) == token  # deterministic
    assert read_click_token(KEY, token) is None  # an open token is not a click token
    assert read_open_token(OTHER_KEY, token) is None
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@given(pks, times, positions)
def test_click_round_trip(pk, t, pos):
    token = make_click_token(KEY, pk, t, pos)
    assert read_click_token(KEY, token) == ClickToken(pk, whole_seconds(t), pos)
    assert read_open_token(KEY, token) is None


def test_tokens_are_compact_and_bound_to_one_send():
    t = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    token = make_open_token(KEY, 1_234_567, t)
    assert len(token) <= 30
    assert len(make_click_token(KEY, 1_234_567, t, 3)) <= 32
    assert make_open_token(KEY, 1_234_568, t) != token
    assert make_click_token(KEY, 1, t, 1) != make_click_token(KEY, 1, t, 2)
    # the same instant in another zone is the same token
    assert make_open_token(KEY, 1_234_567, t.astimezone(timezone(timedelta(hours=9)))) == token


def test_urls():
    t = datetime(2025, 3, 1, tzinfo=UTC)
    url = pixel_url("https://t.example.com/", KEY, 7, t)
    assert url == f"https://t.example.com/o/{make_open_token(KEY, 7, t)}.gif"
    assert click_url("https://t.example.com", KEY, 7, t, 2) == f"https://t.example.com/c/{make_click_token(KEY, 7, t, 2)}"


@pytest.mark.parametrize("bad", [
    dict(send_pk=-1), dict(send_pk=2**63), dict(send_pk=1.5), dict(sent_at=datetime(2025, 1, 1)),
])
def test_bad_inputs_are_refused_when_making(bad):
    args = dict(send_pk=1, sent_at=datetime(2025, 1, 1, tzinfo=UTC)) | bad
    with pytest.raises(ValueError):
        make_open_token(KEY, args["send_pk"], args["sent_at"])


def test_tracking_key_is_a_derived_256_bit_key():
    assert len(KEY) == 32 and KEY != b"unit-test-secret"
    assert tracking_key("unit-test-secret") == KEY
    with pytest.raises(ValueError):
        tracking_key("")


@given(pks, times, positions, st.booleans(), st.data())
def test_any_single_byte_change_is_rejected(pk, t, pos, is_click, data):
    token = make_click_token(KEY, pk, t, pos) if is_click else make_open_token(KEY, pk, t)
    read = (lambda s: read_click_token(KEY, s)) if is_click else (lambda s: read_open_token(KEY, s))
    decoded = bytearray(raw(token))
    i = data.draw(st.integers(0, len(decoded) - 1), label="byte")
    delta = data.draw(st.integers(1, 255), label="xor")
    decoded[i] ^= delta
    assert read(encode(bytes(decoded))) is None


@given(pks, times, st.data())
def test_any_character_change_truncation_or_extension_is_rejected(pk, t, data):
    token = make_open_token(KEY, pk, t)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/. %"
    i = data.draw(st.integers(0, len(token) - 1), label="position")
    c = data.draw(st.sampled_from(alphabet).filter(lambda c: c != token[i]), label="char")
    assert read_open_token(KEY, token[:i] + c + token[i + 1:]) is None
    cut = data.draw(st.integers(0, len(token) - 1), label="cut")
    assert read_open_token(KEY, token[:cut]) is None
    assert read_open_token(KEY, token + data.draw(st.text(alphabet, min_size=1, max_size=8))) is None
    # byte-level extension and truncation, re-encoded canonically
    assert read_open_token(KEY, encode(raw(token) + data.draw(st.binary(min_size=1, max_size=4)))) is None
    assert read_open_token(KEY, encode(raw(token)[:-1])) is None


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=80), st.binary(max_size=40).map(encode)))
def test_random_strings_never_raise(s):
    assert read_open_token(KEY, s) is None
    assert read_click_token(KEY, s) is None


def test_non_strings_never_raise():
    for junk in (None, 12, b"abc", ["x"]):
        assert read_open_token(KEY, junk) is None
        assert read_click_token(KEY, junk) is None
