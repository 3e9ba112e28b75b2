"""Public tracking endpoints: the open pixel and the click redirect."""
from flask import Blueprint

bp = Blueprint("tracking", __name__)
