"""A throw-away database for a benchmark: a SQLite file in a temporary directory, or a fresh
schema on the given PostgreSQL server (reached through search_path). Both are removed when the
block ends, also on Ctrl-C, so the shared server is left as it was found."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid

import sqlalchemy as sa


@contextlib.contextmanager
def scratch_database(postgres_url: str | None, label: str = "bench"):
    if not postgres_url:
        directory = tempfile.mkdtemp(prefix=f"emailexp-{label}-")
        try:
            yield f"sqlite:///{directory}/bench.db"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    schema = f"{label}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()
