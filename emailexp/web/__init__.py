"""Marketer web app (sign-in, experiment designer, reports, insights, KPI dashboard)."""
from flask import Blueprint

bp = Blueprint("web", __name__)

from emailexp.web import auth, designer, insights, kpis, report, views  # noqa: E402,F401  (registers the views on bp)
