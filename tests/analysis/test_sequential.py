"""Always-valid sequential test (mSPRT): closed form vs the mixture integral, and behaviour."""

from __future__ import annotations

import datetime
import json
import math

import numpy as np
import pytest
from scipy import integrate, stats

from emailexp.analysis import DailyCounts, msprt_p_values, sequential_difference_test
from emailexp.analysis.sequential import msprt_confidence_half_width, sequential_sends_needed

DAY0 = datetime.date(2026, 3, 2)


def mixture_likelihood_ratio(theta_hat, v, tau, theta0=0.0):
    """Lambda = integral N(theta_hat; theta, v) / N(theta_hat; theta0, v) dN(theta; theta0, tau^2),
    by numerical integration (independent of the closed form in the module)."""
    sd = math.sqrt(v)
    num, _ = integrate.quad(
        lambda t: stats.norm.pdf(theta_hat, t, sd) * stats.norm.pdf(t, theta0, tau),
        -1, 1, points=[theta0, theta_hat], epsabs=0, epsrel=1e-12, limit=500,
    )
    return num / stats.norm.pdf(theta_hat, theta0, sd)


@pytest.mark.parametrize(
    "xc,nc,xv,nv,tau",
    [(200, 1000, 240, 1000, 0.02), (20, 100, 22, 100, 0.05), (2000, 10000, 2150, 10000, 0.01), (0, 50, 3, 50, 0.05)],
)
def test_p_value_is_inverse_mixture_likelihood_ratio(xc, nc, xv, nv, tau):
    p = msprt_p_values([xc], [nc], [xv], [nv], tau=tau)[-1]
    pc, pv = (xc + 0.5) / (nc + 1), (xv + 0.5) / (nv + 1)
    v = pc * (1 - pc) / nc + pv * (1 - pv) / nv
    lam = mixture_likelihood_ratio(xv / nv - xc / nc, v, tau)
    assert p == pytest.approx(min(1.0, 1.0 / lam), rel=1e-8)


def test_confidence_sequence_boundary_has_lambda_one_over_alpha():
    v, tau, alpha, theta_hat = 3e-4, 0.02, 0.05, 0.01
    half = float(msprt_confidence_half_width(v, tau, alpha))
    lam = mixture_likelihood_ratio(theta_hat, v, tau, theta0=theta_hat - half)
    assert lam == pytest.approx(1 / alpha, rel=1e-8)


def daily_rows(days_c, days_v, key_c="A", key_v="B"):
    rows = []
    for t, ((nc, xc), (nv, xv)) in enumerate(zip(days_c, days_v)):
        day = DAY0 + datetime.timedelta(days=t)
        rows += [DailyCounts(day, key_c, nc, xc), DailyCounts(day, key_v, nv, xv)]
    return rows


def test_public_test_on_daily_counts():
    rng = np.random.default_rng(3)
    nc = [500] * 20
    xc = rng.binomial(500, 0.20, size=20)
    xv = rng.binomial(500, 0.26, size=20)
    rows = daily_rows(list(zip(nc, xc)), list(zip(nc, xv)))
    rows.append(DailyCounts(DAY0, "C", 10, 1))  # other arm: ignored
    res = sequential_difference_test(rows, control_key="A", variant_key="B", mixing_sd=0.02, alpha=0.05, comparisons=2)
    assert res.alpha_per_comparison == pytest.approx(0.025)
    assert len(res.looks) == 20
    ps = [lk.p_value for lk in res.looks]
    assert all(b <= a for a, b in zip(ps, ps[1:]))  # always-valid p never increases
    assert res.crossed and res.crossed_on is not None
    first = next(lk for lk in res.looks if lk.crossed)
    assert first.day == res.crossed_on and first.p_value <= 0.025
    assert res.cs_lower > 0  # interval for the difference excludes 0 once crossed
    assert res.looks[-1].control_sends == 10_000 and res.looks[-1].variant_opens == int(xv.sum())
    # cumulative counts: the last look equals the raw totals
    assert res.looks[-1].diff == pytest.approx(xv.sum() / 10_000 - xc.sum() / 10_000)
    json.dumps(res.to_dict(), allow_nan=False)
    assert "Johari" in res.to_dict()["method"]


def test_no_data_and_empty_arm_do_not_cross():
    res = sequential_difference_test([], control_key="A", variant_key="B", mixing_sd=0.02)
    assert res.p_value == 1.0 and not res.crossed and res.looks == ()
    rows = [DailyCounts(DAY0, "A", 100, 20)]
    res = sequential_difference_test(rows, control_key="A", variant_key="B", mixing_sd=0.02)
    assert res.looks[0].diff is None and res.p_value == 1.0


def test_sends_needed_reaches_the_boundary():
    diff, v, n = 0.01, 2 * 0.2 * 0.8 / 2000, 2000
    need = sequential_sends_needed(diff, v, n, tau=0.02, alpha=0.05)
    assert need > n
    half = float(msprt_confidence_half_width(v * n / need, 0.02, 0.05))
    assert half == pytest.approx(diff, rel=1e-6)
    assert sequential_sends_needed(0.0, v, n, tau=0.02, alpha=0.05) is None
