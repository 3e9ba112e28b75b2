"""API keys: created once, stored as SHA-256, looked up by hash."""
from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.errors import ConflictError, ValidationError
from emailexp.models import ApiKey, utcnow

KEY_PREFIX = "eex_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(session: Session, name: str) -> str:
    """Create a key and return it in clear text; this is the only time it exists outside the caller."""
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise ValidationError("give a name of 1 to 120 characters", field="name")
    if session.scalar(sa.select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise ConflictError(f"an API key named {name!r} already exists", field="name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, prefix=key[:10], key_hash=hash_key(key)))
    session.flush()
    return key


def find_api_key(session: Session, key: str) -> ApiKey | None:
    if not key or not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    api_key = session.scalar(sa.select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if api_key is None or api_key.revoked_at is not None:
        return None
    return api_key


def touch_api_key(session: Session, api_key: ApiKey) -> None:
    api_key.last_used_at = utcnow()
