"""JSON API under /api/v1, authenticated by `Authorization: Bearer <key>`."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from emailexp.api import routes  # noqa: E402,F401  (registers the routes on bp)
