"""Configuration classes. Every setting comes from the environment with a safe default.

EMAILEXP_DATABASE_URL   SQLAlchemy URL; default: SQLite file instance/emailexp.db
EMAILEXP_SECRET_KEY     signs sessions, CSRF and tracking tokens; required in production
EMAILEXP_PUBLIC_URL     base URL of tracking links (pixel, click), e.g. https://t.example.com
EMAILEXP_TIMEZONE       workspace timezone for weekday/hour and reports (default Asia/Tokyo)
"""
from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent


def _default_sqlite_url() -> str:
    instance = Path(os.environ.get("EMAILEXP_INSTANCE_PATH", BASE_DIR / "instance"))
    return f"sqlite:///{instance / 'emailexp.db'}"


class Config:
    ENV_NAME = "development"
    SQLALCHEMY_DATABASE_URI = os.environ.get("EMAILEXP_DATABASE_URL") or _default_sqlite_url()
    SECRET_KEY = os.environ.get("EMAILEXP_SECRET_KEY")
    PUBLIC_URL = os.environ.get("EMAILEXP_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
    TIMEZONE = os.environ.get("EMAILEXP_TIMEZONE", "Asia/Tokyo")
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    MAX_BATCH_SIZE = 10_000
    # Conversions are attributed to the latest send this many days before them, for sends outside
    # experiments (an experiment sets its own window).
    ATTRIBUTION_WINDOW_DAYS = int(os.environ.get("EMAILEXP_ATTRIBUTION_WINDOW_DAYS", "14"))
    # X-Forwarded-For hops to trust for the client address (0: use the socket peer).
    TRUST_PROXY_HOPS = int(os.environ.get("EMAILEXP_TRUST_PROXY_HOPS", "0"))
    MAX_CONTENT_LENGTH = 64 * 1024 * 1024
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    BABEL_DEFAULT_LOCALE = "en"
    BABEL_DEFAULT_TIMEZONE = "UTC"
    LANGUAGES = ("en", "ja")
    JSON_SORT_KEYS = False


class DevelopmentConfig(Config):
    # A per-process random key keeps development usable without a configured secret;
    # tracking URLs made with it stop verifying after a restart, which is why production refuses it.
    SECRET_KEY = Config.SECRET_KEY or os.urandom(32).hex()


class ProductionConfig(Config):
    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = os.environ.get("EMAILEXP_INSECURE_COOKIES") != "1"


class TestConfig(Config):
    ENV_NAME = "test"
    TESTING = True
    SECRET_KEY = "test-secret-key-not-for-production"
    WTF_CSRF_ENABLED = True


CONFIGS = {
    "development": DevelopmentConfig,
    "production": ProductionConfig,
    "test": TestConfig,
}


def config_for(name: str | None = None) -> type[Config]:
    name = name or os.environ.get("EMAILEXP_ENV", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise SystemExit(f"EMAILEXP_ENV must be one of {', '.join(CONFIGS)}, not {name!r}") from None
