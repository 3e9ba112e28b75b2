"""Web users: creation and password authentication.

Passwords are hashed with werkzeug's scrypt (`generate_password_hash(..., method="scrypt")`);
only the hash is stored. `authenticate` spends the same hashing work whether or not the user
exists, so response times do not reveal which usernames are registered.
"""
from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from emailexp.errors import ConflictError, ValidationError
from emailexp.models import Role, User, utcnow

USERNAME_RE = re.compile(r"[A-Za-z0-9_.@\-]{1,120}")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
# Checked against when the username is unknown, so both paths cost one scrypt verification.
_DUMMY_HASH = generate_password_hash("not-a-real-password", method="scrypt")


def validate_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"choose a password of at least {MIN_PASSWORD_LENGTH} characters", field="password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(f"a password has at most {MAX_PASSWORD_LENGTH} characters", field="password")
    return password


def create_user(session: Session, username: str, password: str, role: str = Role.viewer.value) -> User:
    """Create a user with role admin, marketer or viewer. Flushes; the caller commits."""
    username = (username or "").strip()
    if not USERNAME_RE.fullmatch(username):
        raise ValidationError("a username is 1 to 120 characters of letters, digits, '_', '.', '@' or '-'",
                              field="username")
    if role not in {r.value for r in Role}:
        raise ValidationError(f"role must be one of {', '.join(r.value for r in Role)}, not {role!r}", field="role")
    validate_password(password)
    if session.scalar(sa.select(User.id).where(User.username == username)) is not None:
        raise ConflictError(f"a user named {username!r} already exists", field="username")
    user = User(username=username, password_hash=generate_password_hash(password, method="scrypt"), role=role)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The user if the password matches, else None. Records `last_login_at` on success (no commit)."""
    username = (username or "").strip()
    user = None
    if username and len(username) <= 120:
        user = session.scalar(sa.select(User).where(User.username == username))
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        password = ""
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    user.last_login_at = utcnow()
    return user
