"""Production gunicorn settings, in one place: `emailexp serve`, benchmarks/ and the process-level
tests all run gunicorn with `--config python:emailexp.gunicorn_conf` (see `emailexp.cli.gunicorn_argv`,
which adds only the bind address, the worker count and the WSGI target).

Sync workers, 2 x cores + 1 processes by default, one request at a time each (the connection is
closed after the response). Measured on a busy 2-core machine with benchmarks/pixel.py (12
clients, single runs), gthread with 4 threads per worker was no faster than these, for the trivial
baseline or the pixel, on SQLite or PostgreSQL: the work is CPU under the GIL, and on SQLite more
concurrent writers only queue for the one write lock.

Garbage collection: after the app is loaded in a worker, every object that exists then (modules,
the app, SQLAlchemy metadata and compiled statements) is moved out of the collector's reach with
`gc.freeze()`, and the first-generation threshold is raised. A batch of 5,000 sends allocates a
few hundred thousand short-lived containers; with the default threshold (700) that is hundreds of
collections per request, each also walking the long-lived objects, for garbage that is almost
all freed by reference counting anyway. Reference cycles are still collected, just less often.
"""
from __future__ import annotations

import gc

worker_class = "sync"
backlog = 2048
keepalive = 5
accesslog = "-"
# No client address and no query string in the log: the address is personal data, which the app
# itself only keeps as a keyed hash of its /24 (/48).
access_log_format = '"%(m)s %(U)s" %(s)s %(b)s %(L)ss'

#: gc thresholds in the workers (generation 0, 1, 2); Python's default is (700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 20)


def post_worker_init(worker) -> None:
    """Runs in each worker once the WSGI app is loaded, before the first request."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
