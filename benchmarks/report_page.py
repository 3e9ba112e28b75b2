"""Benchmark: the experiment report page (GET /experiments/1) of an experiment with N sends.

    python benchmarks/report_page.py [--sends 1000000] [--database-url URL] [--keep DIR]

Fills a fresh database (a temporary SQLite file by default) with `fill` from benchmarks/analysis.py
(one three-variant experiment, human and machine opens), signs in through the Flask test client
as a viewer and times the whole server-side request (report service + charts + template), best of 3,
with the web layer's report cache off (every request computes the report), then with it on (first
view and repeated views), plus the pieces: the report service, the hours histogram and the CSV export.
The last line is one JSON object. Bar: report page < 1.5 s at 1,000,000 sends.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis import fill, timed  # noqa: E402

PASSWORD = "benchmark password 1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()

    from _db import scratch_database

    with scratch_database(args.database_url, "bench_report") as url:
        run(url, args)


def run(url: str, args) -> None:
    from emailexp import create_app
    from emailexp.extensions import db
    from emailexp.ingestion.users import create_user
    from emailexp.reports.experiment_report import build_experiment_report, opens_by_hours_since_send

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": False, "WTF_CSRF_ENABLED": True})
    with app.app_context():
        db.create_all()
        t0 = time.perf_counter()
        fill(db.session, args.sends)
        fill_s = time.perf_counter() - t0
        create_user(db.session, "bench", PASSWORD, "viewer")
        db.session.commit()
    print(f"filled {args.sends:,} sends in {fill_s:.1f} s ({url.split(':')[0]})", flush=True)

    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = client.post("/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 302, resp.status_code

    def get(path):
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.get_data(as_text=True)[:500])
        return r

    app.config["REPORT_CACHE"] = False  # every request computes the report: the figure the bar is about
    page_s, resp = timed(lambda: get("/experiments/1"))
    html = resp.get_data(as_text=True)
    assert "verdict-sentence" in html and "<svg" in html
    print(f"GET /experiments/1 (computed): {page_s:.3f} s ({len(html):,} bytes)", flush=True)
    csv_s, _ = timed(lambda: get("/experiments/1/report.csv"))
    app.config["REPORT_CACHE"] = True  # the web layer's report cache: first view computes, repeats reuse
    first_s, _ = timed(lambda: get("/experiments/1?correction=bh"), repeat=1)
    cached_s, cached = timed(lambda: get("/experiments/1?correction=bh"))
    assert "verdict-sentence" in cached.get_data(as_text=True)
    print(f"GET /experiments/1 with the report cache: first view {first_s:.3f} s, repeated {cached_s:.3f} s",
          flush=True)
    print(f"GET /experiments/1/report.csv: {csv_s:.3f} s", flush=True)
    with app.app_context():
        report_s, report = timed(lambda: build_experiment_report(db.session, 1))
        hours_s, _ = timed(lambda: opens_by_hours_since_send(db.session, 1))
        quality_off_s, _ = timed(lambda: build_experiment_report(db.session, 1, include_quality=False))
    print(f"  report service {report_s:.3f} s (without data quality {quality_off_s:.3f} s), "
          f"hours histogram {hours_s:.3f} s; verdict {report.analysis.verdict.kind}", flush=True)
    print(json.dumps({"sends": args.sends, "database": url.split(":")[0], "report_page_seconds": round(page_s, 4),
                      "report_page_cache_first_seconds": round(first_s, 4),
                      "report_page_cached_seconds": round(cached_s, 4),
                      "report_csv_seconds": round(csv_s, 4), "report_service_seconds": round(report_s, 4),
                      "report_service_no_quality_seconds": round(quality_off_s, 4),
                      "hours_histogram_seconds": round(hours_s, 4), "under_1_5_s": page_s < 1.5}))
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


if __name__ == "__main__":
    main()
