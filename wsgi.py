"""WSGI entry point: `gunicorn wsgi:app`. Production settings unless EMAILEXP_ENV says otherwise."""
import os

from emailexp import create_app

app = create_app(os.environ.get("EMAILEXP_ENV", "production"))
