"""Sign-in for the web app: session cookie, roles, CSRF-protected forms, failed-login throttling.

Sessions are Flask's signed cookies (HttpOnly, SameSite=Lax; Secure in production). On sign-in the
session is cleared and re-issued so a session fixed before login is never promoted.

Failed sign-ins are throttled per username: after `MAX_FAILURES` failures within `WINDOW`, that
username is refused (HTTP 429) until the oldest failure leaves the window. The counter lives in
the memory of each server process (a dict under a lock): with N gunicorn workers an attacker gets
at most N x MAX_FAILURES guesses per window, and a restart resets it. That is enough against
online guessing with scrypt-hashed passwords; move it to the database or Redis if the app is
ever exposed to the internet at large.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from functools import wraps
from urllib.parse import urlsplit

from flask import (abort, current_app, flash, g, redirect, render_template, request, session, url_for)
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError

from emailexp.extensions import db
from emailexp.ingestion.users import authenticate
from emailexp.models import User
from emailexp.web import bp

MAX_FAILURES = 5
WINDOW = 15 * 60  # seconds


class LoginThrottle:
    """Failed sign-ins per username in a sliding window (per process; see module docstring)."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW, clock=time.monotonic):
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _prune(self, key: str) -> deque[float]:
        q = self._failures[key]
        cutoff = self.clock() - self.window
        while q and q[0] <= cutoff:
            q.popleft()
        return q

    def retry_after(self, username: str) -> float:
        """Seconds until this username may try again (0 if it may try now)."""
        key = username.strip().lower()
        with self._lock:
            q = self._prune(key)
            if len(q) < self.max_failures:
                if not q:
                    self._failures.pop(key, None)
                return 0.0
            return max(0.0, q[0] + self.window - self.clock())

    def failed(self, username: str) -> None:
        key = username.strip().lower()
        with self._lock:
            self._prune(key).append(self.clock())

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username.strip().lower(), None)


throttle = LoginThrottle()


def current_user() -> User | None:
    return g.get("user")


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if g.get("user") is None:
            if request.method == "GET":
                return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
            abort(401)
        return view(*args, **kwargs)

    return wrapper


def editor_required(view):
    """Signed in as an admin or marketer; viewers get 403."""

    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not g.user.can_edit:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def safe_next(target: str | None) -> str:
    """A local path to go back to after sign-in; anything pointing elsewhere becomes the overview."""
    if not target:
        return url_for("web.overview")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("web.overview")
    return target


@bp.before_app_request
def _load_user() -> None:
    g.user = None
    if request.blueprint != "web":
        return
    lang = request.args.get("lang")
    if lang in current_app.config["LANGUAGES"]:
        session["lang"] = lang
    user_id = session.get("user_id")
    if user_id is not None:
        g.user = db.session.get(User, user_id)
        if g.user is None:  # deleted since sign-in
            session.pop("user_id", None)


@bp.after_request
def _security_headers(response):
    # Defence in depth behind Jinja's autoescaping: no inline script, no foreign origins.
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if g.get("user") is not None:
        response.headers.setdefault("Cache-Control", "private, no-store")
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if g.user is not None:
            return redirect(safe_next(request.args.get("next")))
        return render_template("auth/login.html", next=request.args.get("next", ""))
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    nxt = request.form.get("next", "")
    if not username or not password:
        flash(_("Enter your username and password."), "error")
        return render_template("auth/login.html", next=nxt, username=username), 400
    wait = throttle.retry_after(username)
    if wait > 0:
        minutes = int(wait // 60) + 1
        flash(_("Too many failed sign-ins for this username. Try again in %(minutes)d minutes.",
                minutes=minutes), "error")
        response = current_app.make_response((render_template("auth/login.html", next=nxt, username=username),
                                               429))
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    user = authenticate(db.session, username, password)
    if user is None:
        throttle.failed(username)
        flash(_("The username or password is wrong."), "error")
        return render_template("auth/login.html", next=nxt, username=username), 401
    throttle.succeeded(username)
    db.session.commit()
    lang = session.get("lang")
    session.clear()  # a fresh session: nothing from before sign-in carries over (fixation)
    session["user_id"] = user.id
    if lang:
        session["lang"] = lang
    return redirect(safe_next(nxt))


@bp.route("/logout", methods=["POST"])
def logout():
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("You have signed out."), "info")
    return redirect(url_for("web.login"))


@bp.app_errorhandler(CSRFError)
def _csrf_error(exc: CSRFError):
    if request.path.startswith("/api/"):
        return {"error": "csrf", "message": exc.description, "field": "csrf_token"}, 400
    return render_template("error.html", code=400, title=_("The form has expired"),
                           message=_("The page was open too long or came from another site. "
                                     "Go back, reload the page and submit the form again.")), 400


@bp.errorhandler(401)
def _unauthorized(exc):
    return render_template("error.html", code=401, title=_("Please sign in"),
                           message=_("Your session has ended. Sign in and try again.")), 401


@bp.errorhandler(403)
def _forbidden(exc):
    return render_template("error.html", code=403, title=_("Not allowed"),
                           message=_("Your role can view experiments but not change them. "
                                     "Ask an admin for the marketer role.")), 403


@bp.errorhandler(404)
def _not_found(exc):
    return render_template("error.html", code=404, title=_("Not found"),
                           message=_("There is no such page or experiment.")), 404
