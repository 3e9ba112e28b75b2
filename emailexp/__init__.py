"""emailexp: open-rate experimentation for e-mail campaigns."""
from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask

from config import config_for

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(config: str | dict | None = None) -> Flask:
    """Build the app. `config` is a config name ("development", "production", "test") or a
    mapping of overrides applied on top of the test config (what the test suite passes)."""
    app = Flask(__name__, template_folder=str(TEMPLATE_DIR), static_folder=str(STATIC_DIR),
                instance_path=os.environ.get("EMAILEXP_INSTANCE_PATH") or None)
    if isinstance(config, dict):
        app.config.from_object(config_for("test"))
        app.config.update(config)
    else:
        app.config.from_object(config_for(config))
    check_config(app)

    register_extensions(app)
    register_blueprints(app)
    register_cli(app)
    register_errorhandlers(app)
    return app


def check_config(app: Flask) -> None:
    if not app.config.get("SECRET_KEY"):
        raise RuntimeError("EMAILEXP_SECRET_KEY is not set: production mode refuses to start without it "
                           "(generate one with: python -c 'import secrets; print(secrets.token_hex(32))')")
    try:
        ZoneInfo(app.config["TIMEZONE"])
    except (ZoneInfoNotFoundError, ValueError):
        raise RuntimeError(f"EMAILEXP_TIMEZONE={app.config['TIMEZONE']!r} is not an IANA timezone "
                           "such as Asia/Tokyo") from None
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def register_extensions(app: Flask) -> None:
    from emailexp import db as dbsetup
    from emailexp.extensions import babel, csrf, db, migrate

    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", dbsetup.engine_options(app.config["SQLALCHEMY_DATABASE_URI"]))
    db.init_app(app)
    with app.app_context():
        dbsetup.configure_engine(db.engine)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    csrf.init_app(app)
    from emailexp.i18n import compile_translations, select_locale, select_timezone
    compile_translations(app)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)


def register_blueprints(app: Flask) -> None:
    from emailexp.api import bp as api_bp
    from emailexp.extensions import csrf
    from emailexp.tracking.routes import bp as tracking_bp

    csrf.exempt(api_bp)
    csrf.exempt(tracking_bp)
    app.register_blueprint(tracking_bp)
    from emailexp.tracking.routes import PixelFastPath

    app.wsgi_app = PixelFastPath(app, app.wsgi_app)
    app.register_blueprint(api_bp)
    try:
        from emailexp.web import bp as web_bp
    except ImportError:  # the web app is optional while it is being built
        web_bp = None
    if web_bp is not None:
        app.register_blueprint(web_bp)


def register_cli(app: Flask) -> None:
    from emailexp.cli import register

    register(app)


def register_errorhandlers(app: Flask) -> None:
    from emailexp.api.errors import register_error_handlers

    register_error_handlers(app)
