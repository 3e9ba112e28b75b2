"""Marketer web app (sign-in, experiment designer, reports, insights, KPI dashboard)."""
from flask import Blueprint

bp = Blueprint("web", __name__)
