"""Locale and timezone selection for Flask-Babel, and compiling the translations at start-up.

Only the `.po` sources are kept in git (`emailexp/translations/<lang>/LC_MESSAGES/messages.po`).
`compile_translations` writes the `.mo` files Flask-Babel reads into `<instance>/translations`
(or a temporary directory if the instance folder is not writable) whenever one is missing or
older than its `.po`, and points `BABEL_TRANSLATION_DIRECTORIES` there. Each file is written to a
temporary name and renamed, so workers starting together never read a half-written catalogue.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, current_app, request, session

SOURCE_DIR = Path(__file__).resolve().parent / "translations"


def select_locale() -> str:
    supported = current_app.config["LANGUAGES"]
    chosen = request.args.get("lang") or session.get("lang")
    if chosen in supported:
        return chosen
    return request.accept_languages.best_match(supported) or current_app.config["BABEL_DEFAULT_LOCALE"]


def select_timezone() -> str:
    return current_app.config["TIMEZONE"]


def compile_catalogues(source: Path, target: Path) -> list[Path]:
    """Compile every `<lang>/LC_MESSAGES/*.po` under `source` into the same layout under `target`
    when the `.mo` is missing or stale. Returns the `.mo` files written."""
    written = []
    for po_path in sorted(source.glob("*/LC_MESSAGES/*.po")):
        mo_path = target / po_path.relative_to(source).with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        mo_path.parent.mkdir(parents=True, exist_ok=True)
        with po_path.open("rb") as fh:
            catalog = read_po(fh, locale=po_path.parent.parent.name)
        fd, tmp = tempfile.mkstemp(dir=mo_path.parent, suffix=".mo.tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                write_mo(out, catalog)
            os.replace(tmp, mo_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(mo_path)
    return written


def compile_translations(app: Flask) -> Path:
    """Compile the catalogues for this app and set BABEL_TRANSLATION_DIRECTORIES (call before Babel.init_app)."""
    target = Path(app.instance_path) / "translations"
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=target)
        probe.close()
    except OSError:
        target = Path(tempfile.gettempdir()) / f"emailexp-translations-{os.getuid()}"
        target.mkdir(parents=True, exist_ok=True)
    compile_catalogues(SOURCE_DIR, target)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(target)
    return target
