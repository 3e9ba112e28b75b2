"""Signed, compact tracking tokens for the open pixel and click redirects.

A token is base64url (no padding) of

    version (1 byte) | kind (1 byte: open or click) | send pk (varint) | sent_at epoch s (varint)
    | [click only: link position (varint)] | tag (12 bytes)

where tag = HMAC-SHA256(key, everything before it)[:12] (96 bits). An open token is about 28
characters, a click token 30. It carries no personal data: only the send's integer primary key,
the send time (so the pixel can classify "too fast after send" without a database read) and the
link position. The kind byte is inside the MAC, so an open token is never a valid click token.
Tokens are deterministic: the same send always gets the same URL, which keeps ingestion retries
idempotent. They do not expire: an e-mail may be opened years later.

Anything that is not exactly a token we made (wrong length, a changed, missing or extra byte,
non-canonical base64 or varints, another key) reads as None; reading never raises.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

VERSION = 1
KIND_OPEN = 0x6F   # "o"
KIND_CLICK = 0x63  # "c"
TAG_BYTES = 12     # 96-bit truncated HMAC-SHA256
MAX_TOKEN_CHARS = 64  # longer strings are rejected before decoding
_KEY_INFO = b"emailexp/tracking/v1"


@dataclass(frozen=True, slots=True)
class OpenToken:
    send_pk: int
    sent_at: datetime  # aware UTC, whole seconds


@dataclass(frozen=True, slots=True)
class ClickToken:
    send_pk: int
    sent_at: datetime  # aware UTC, whole seconds
    position: int


def tracking_key(secret_key: str) -> bytes:
    """The tracking sub-key: HMAC-SHA256(secret, b"emailexp/tracking/v1"), so the app's
    SECRET_KEY is never used directly for tracking tokens or IP hashes."""
    if not secret_key:
        raise ValueError("secret_key is empty")
    return hmac.digest(secret_key.encode(), _KEY_INFO, "sha256")


def make_open_token(key: bytes, send_pk: int, sent_at: datetime) -> str:
    return _seal(key, _OPEN_HEAD + _varint(send_pk, "send_pk") + _epoch(sent_at))


def make_click_token(key: bytes, send_pk: int, sent_at: datetime, position: int) -> str:
    return _seal(key, _CLICK_HEAD + _varint(send_pk, "send_pk") + _epoch(sent_at) + _varint(position, "position"))


def read_open_token(key: bytes, token: str) -> OpenToken | None:
    fields = _open(key, token, KIND_OPEN, 2)
    if fields is None:
        return None
    return OpenToken(fields[0], datetime.fromtimestamp(fields[1], UTC))


def read_click_token(key: bytes, token: str) -> ClickToken | None:
    fields = _open(key, token, KIND_CLICK, 3)
    if fields is None:
        return None
    return ClickToken(fields[0], datetime.fromtimestamp(fields[1], UTC), fields[2])


def pixel_url(public_url: str, key: bytes, send_pk: int, sent_at: datetime) -> str:
    return f"{public_url.rstrip('/')}/o/{make_open_token(key, send_pk, sent_at)}.gif"


def click_url(public_url: str, key: bytes, send_pk: int, sent_at: datetime, position: int) -> str:
    return f"{public_url.rstrip('/')}/c/{make_click_token(key, send_pk, sent_at, position)}"


def send_urls(public_url: str, key: bytes, send_pk: int, sent_at: datetime, n_links: int) -> tuple[str, list[str]]:
    """`pixel_url(...)` and `[click_url(..., position) for position in range(n_links)]` for one
    send, with the shared work (varints, HMAC prefix state) done once: batch ingestion answers
    with these URLs for every row."""
    base = public_url.rstrip("/")
    inner, outer = _hmac_states(key)
    middle = _varint(send_pk, "send_pk") + _epoch(sent_at)
    open_payload = _OPEN_HEAD + middle
    pixel = f"{base}/o/{_seal_with(inner, outer, open_payload)}.gif"
    if not n_links:
        return pixel, []
    click_payload = _CLICK_HEAD + middle
    click_inner = inner.copy()
    click_inner.update(click_payload)
    clicks = []
    for position in range(n_links):
        tail = _varint(position, "position")
        h = click_inner.copy()
        h.update(tail)
        o = outer.copy()
        o.update(h.digest())
        clicks.append(f"{base}/c/{_b64(click_payload + tail + o.digest()[:TAG_BYTES])}")
    return pixel, clicks


# --- encoding -------------------------------------------------------------------------------
# HMAC-SHA256 (RFC 2104) with the key's inner and outer hash states computed once per key and
# copied per token: the same bytes as hmac.digest(key, payload, "sha256"), about 3x cheaper for
# the short payloads of a token. Ingestion makes three tokens per send.

_OPEN_HEAD = bytes((VERSION, KIND_OPEN))
_CLICK_HEAD = bytes((VERSION, KIND_CLICK))
_BLOCK = 64  # SHA-256 block size
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_states: dict[bytes, tuple] = {}
_B64_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _hmac_states(key: bytes) -> tuple:
    states = _states.get(key)
    if states is None:
        block = hashlib.sha256(key).digest() if len(key) > _BLOCK else key
        block = bytes(block).ljust(_BLOCK, b"\0")
        states = (hashlib.sha256(block.translate(_IPAD)), hashlib.sha256(block.translate(_OPAD)))
        if len(_states) >= 16:  # a process sees one key (two in tests); never grow without bound
            _states.clear()
        _states[key] = states
    return states


def _tag(key: bytes, payload: bytes) -> bytes:
    inner, outer = _hmac_states(key)
    h = inner.copy()
    h.update(payload)
    o = outer.copy()
    o.update(h.digest())
    return o.digest()[:TAG_BYTES]


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_B64_URLSAFE).rstrip(b"=").decode("ascii")


def _seal_with(inner, outer, payload: bytes) -> str:
    h = inner.copy()
    h.update(payload)
    o = outer.copy()
    o.update(h.digest())
    return _b64(payload + o.digest()[:TAG_BYTES])


def _seal(key: bytes, payload: bytes) -> str:
    return _b64(payload + _tag(key, payload))


def _open(key: bytes, token: str, kind: int, n_fields: int) -> tuple[int, ...] | None:
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS or len(token) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        return None
    # The decoder ignores stray characters and unused low bits of the last character: insist on
    # the one canonical spelling so that every changed character is a different (invalid) token.
    if _b64(raw) != token:
        return None
    if len(raw) < 2 + n_fields + TAG_BYTES or raw[0] != VERSION or raw[1] != kind:
        return None
    payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    if not hmac.compare_digest(_tag(key, payload), tag):
        return None
    fields = _read_varints(payload, 2)
    if fields is None or len(fields) != n_fields:
        return None
    return fields


def _epoch(sent_at: datetime) -> bytes:
    if not isinstance(sent_at, datetime) or sent_at.tzinfo is None:
        raise ValueError("sent_at must be a timezone-aware datetime")
    return _varint(int(sent_at.timestamp()), "sent_at")


def _varint(value: int, name: str) -> bytes:
    """Unsigned LEB128. Unrolled for values below 2**35 (every send pk, position and epoch second
    until the year 3058); the loop handles the rest."""
    if type(value) is not int:  # bool, float, int subclasses: refused (bool is an int subclass)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer in [0, 2**63), not {value!r}")
        value = int(value)
    if value < 0x80:
        if value < 0:
            raise ValueError(f"{name} must be an integer in [0, 2**63), not {value!r}")
        return _ONE_BYTE[value]
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value < 0x200000:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
    if value < 0x10000000:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14 & 0x7F | 0x80, value >> 21))
    if value < 0x800000000:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14 & 0x7F | 0x80,
                      value >> 21 & 0x7F | 0x80, value >> 28))
    if value >= 1 << 63:
        raise ValueError(f"{name} must be an integer in [0, 2**63), not {value!r}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_ONE_BYTE = tuple(bytes((i,)) for i in range(0x80))


def _read_varints(data: bytes, start: int) -> tuple[int, ...] | None:
    values = []
    value = shift = 0
    for i in range(start, len(data)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte & 0x80:
            if shift >= 63:
                return None
            continue
        if byte == 0 and shift > 7:  # a non-minimal encoding (trailing zero group)
            return None
        values.append(value)
        value = shift = 0
    if shift:  # ended inside a varint
        return None
    return tuple(values)
