from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from emailexp.reports.experiment_report import build_experiment_report, opens_by_hours_since_send

START = datetime(2026, 10, 5, 0, 0, tzinfo=UTC)

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def test_counts_come_from_the_database_and_statistics_match_references(session, builder):
    exp, v = builder.experiment()
    builder.sends(n=400, opened=80, meetings=8, deals=2, amount=1000.0, experiment_id=exp.id,
                  variant_id=v["A"], segment="smb", start=START, spread_days=10)
    builder.sends(n=420, opened=120, meetings=5, experiment_id=exp.id, variant_id=v["B"],
                  segment="smb", start=START, spread_days=10)
    session.commit()

    report = build_experiment_report(session, exp.id, now=NOW)
    arms = {a.key: a for a in report.arms}
    assert (arms["A"].sends, arms["A"].opens, arms["A"].meetings, arms["A"].deals) == (400, 80, 8, 2)
    assert arms["A"].deal_amount == pytest.approx(2000.0)
    assert (arms["B"].sends, arms["B"].opens, arms["B"].meetings) == (420, 120, 5)
    assert sum(d.sends for d in report.daily) == 820

    a = report.analysis
    rate_b = next(s for s in a.arms if s.key == "B").open_rate
    lo, hi = proportion_confint(120, 420, alpha=0.05, method="wilson")
    assert (rate_b.ci_lower, rate_b.ci_upper) == pytest.approx((lo, hi), abs=1e-12)
    z, p = proportions_ztest([120, 80], [420, 400])
    assert a.comparisons[0].p_value == pytest.approx(p, rel=1e-9)
    srm_p = stats.chisquare([400, 420], [410, 410]).pvalue
    assert a.srm.p_value == pytest.approx(srm_p, rel=1e-9)
    assert report.to_dict()["verdict"]["kind"] in {"ship", "keep_testing", "no_difference"}
    json.dumps(report.to_dict())  # JSON-safe


def test_human_and_all_opens_differ_by_machine_only_sends(session, builder):
    exp, v = builder.experiment()
    builder.sends(n=100, opened=30, experiment_id=exp.id, variant_id=v["A"], start=START)
    builder.sends(n=100, opened=50, human=False, experiment_id=exp.id, variant_id=v["B"], start=START)
    session.commit()
    human = build_experiment_report(session, exp.id, opens="human", now=NOW)
    every = build_experiment_report(session, exp.id, opens="all", now=NOW)
    assert {a.key: a.opens for a in human.arms} == {"A": 30, "B": 0}
    assert {a.key: a.opens for a in every.arms} == {"A": 30, "B": 50}
    assert human.quality.sends_opened_any == 80 and human.quality.sends_opened_human == 30
    assert human.quality.machine_only_share == pytest.approx(50 / 80)


def test_sample_ratio_mismatch_blocks_the_verdict(session, builder):
    exp, v = builder.experiment()
    builder.sends(n=1300, opened=300, experiment_id=exp.id, variant_id=v["A"], start=START)
    builder.sends(n=1000, opened=400, experiment_id=exp.id, variant_id=v["B"], start=START)
    session.commit()
    report = build_experiment_report(session, exp.id, now=NOW)
    assert report.analysis.srm.mismatch
    assert report.analysis.verdict.kind == "invalid_srm"


def test_segments_are_broken_down_with_their_own_counts(session, builder):
    exp, v = builder.experiment()
    for seg, (na, oa, nb, ob) in {"smb": (200, 20, 200, 40), "enterprise": (300, 90, 300, 60)}.items():
        builder.sends(n=na, opened=oa, experiment_id=exp.id, variant_id=v["A"], segment=seg, start=START)
        builder.sends(n=nb, opened=ob, experiment_id=exp.id, variant_id=v["B"], segment=seg, start=START)
    session.commit()
    report = build_experiment_report(session, exp.id, now=NOW)
    segs = {s.segment: {a.key: (a.sends, a.opens) for a in s.arms} for s in report.segments}
    assert segs == {"enterprise": {"A": (300, 90), "B": (300, 60)}, "smb": {"A": (200, 20), "B": (200, 40)}}
    smb = next(s for s in report.segments if s.segment == "smb")
    assert smb.comparisons[0].p_value == pytest.approx(proportions_ztest([40, 20], [200, 200])[1], rel=1e-9)


def test_opens_by_hours_since_send(session, builder):
    exp, v = builder.experiment()
    builder.sends(n=50, opened=10, experiment_id=exp.id, variant_id=v["A"], start=START)
    session.commit()
    hist = opens_by_hours_since_send(session, exp.id)
    assert hist["A"][2] == 10 and sum(hist["A"]) == 10


def test_unknown_experiment_and_bad_mode(session):
    from emailexp.errors import NotFoundError, ValidationError

    with pytest.raises(NotFoundError):
        build_experiment_report(session, 999)
    with pytest.raises(ValidationError) as exc:
        build_experiment_report(session, 1, opens="bots")
    assert exc.value.field == "opens"


def test_api_analysis_endpoint(client, auth, session, builder):
    exp, v = builder.experiment()
    builder.sends(n=300, opened=60, experiment_id=exp.id, variant_id=v["A"], start=START)
    builder.sends(n=300, opened=90, experiment_id=exp.id, variant_id=v["B"], start=START)
    session.commit()
    resp = client.get(f"/api/v1/experiments/{exp.id}/analysis", headers=auth)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["verdict"]["kind"] in {"ship", "keep_testing", "no_difference"}
    assert {c["key"] for c in body["counts"]} == {"A", "B"}
    bad = client.get(f"/api/v1/experiments/{exp.id}/analysis?opens=bots", headers=auth)
    assert bad.status_code == 422 and bad.get_json()["field"] == "opens"
    missing = client.get("/api/v1/experiments/12345/analysis", headers=auth)
    assert missing.status_code == 404 and missing.is_json


def test_cli_analyze(runner, session, builder):
    exp, v = builder.experiment(name="CLI test")
    builder.sends(n=300, opened=60, experiment_id=exp.id, variant_id=v["A"], start=START)
    builder.sends(n=300, opened=90, experiment_id=exp.id, variant_id=v["B"], start=START)
    session.commit()
    out = runner.invoke(args=["analyze", "CLI test"])
    assert out.exit_code == 0, out.output
    assert "Verdict:" in out.output and "control" in out.output
    as_json = runner.invoke(args=["analyze", str(exp.id), "--json"])
    assert json.loads(as_json.output)["experiment_id"] == exp.id
    missing = runner.invoke(args=["analyze", "no such"])
    assert missing.exit_code != 0 and "EXPERIMENT" in missing.output


def test_memory_stays_flat_as_sends_grow(session, builder):
    """The report aggregates in the database: 10x the sends must not mean 10x the memory."""
    exp, v = builder.experiment()
    rng = np.random.default_rng(1)

    def peak():
        tracemalloc.start()
        build_experiment_report(session, exp.id, now=NOW)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    builder.sends(n=500, opened=rng.random(500) < 0.2, experiment_id=exp.id, variant_id=v["A"], start=START,
                  spread_days=3)
    builder.sends(n=500, opened=rng.random(500) < 0.2, experiment_id=exp.id, variant_id=v["B"], start=START,
                  spread_days=3)
    session.commit()
    small = peak()
    for key in ("A", "B"):
        builder.sends(n=4500, opened=rng.random(4500) < 0.2, experiment_id=exp.id, variant_id=v[key],
                      start=START, spread_days=3)
    session.commit()
    large = peak()
    assert large < small * 2 + 200_000, (small, large)
