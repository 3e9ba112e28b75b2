"""Locale and timezone selection for Flask-Babel."""
from __future__ import annotations

from flask import current_app, request, session


def select_locale() -> str:
    supported = current_app.config["LANGUAGES"]
    chosen = request.args.get("lang") or session.get("lang")
    if chosen in supported:
        return chosen
    return request.accept_languages.best_match(supported) or current_app.config["BABEL_DEFAULT_LOCALE"]


def select_timezone() -> str:
    return current_app.config["TIMEZONE"]
