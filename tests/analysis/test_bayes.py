"""Bayesian P(best) / expected loss: exact 2-arm formula, quadrature and seeded Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special, stats

from emailexp.analysis import beta_binomial_best


def exact_prob_b_beats_a(a1, b1, a2, b2):
    """P(p_B > p_A) for Beta(a1, b1) (A) and Beta(a2, b2) (B), integer a2 (Evan Miller's sum)."""
    i = np.arange(int(a2))
    log_terms = (
        special.betaln(a1 + i, b1 + b2)
        - np.log(b2 + i)
        - special.betaln(1 + i, b2)
        - special.betaln(a1, b1)
    )
    return float(np.exp(log_terms).sum())


def run(successes, trials, prior=(1.0, 1.0)):
    keys = [f"v{i}" for i in range(len(successes))]
    res = beta_binomial_best(keys, successes, trials, prior=prior)
    return (
        np.array([a.prob_best for a in res.arms]),
        np.array([a.expected_loss for a in res.arms]),
        res,
    )


@pytest.mark.parametrize(
    "xa,na,xb,nb",
    [
        (0, 1, 1, 1),
        (0, 5, 0, 3),
        (5, 5, 3, 5),
        (20, 100, 25, 100),
        (200, 1000, 230, 1000),
        (0, 400, 4, 400),
        (20_000, 100_000, 20_300, 100_000),
    ],
)
def test_two_arms_match_exact_formula(xa, na, xb, nb):
    pb, _, _ = run([xa, xb], [na, nb])
    ref = exact_prob_b_beats_a(1 + xa, 1 + na - xa, 1 + xb, 1 + nb - xb)
    assert pb[1] == pytest.approx(ref, abs=1e-9)
    assert pb[0] == pytest.approx(1 - ref, abs=1e-9)


def test_concentrated_two_arms_match_adaptive_quadrature():
    # n = 1e6: the exact sum loses ~1e-9 to log-gamma cancellation, so the reference here is
    # scipy's adaptive quadrature of P(B > A) = integral f_B(x) F_A(x) dx on B's support.
    a1, b1, a2, b2 = 100_001, 900_001, 100_601, 899_401
    pb, _, _ = run([100_000, 100_600], [1_000_000, 1_000_000])
    lo, hi = stats.beta.ppf(1e-14, a2, b2), stats.beta.isf(1e-14, a2, b2)
    ref, _ = integrate.quad(
        lambda x: stats.beta.pdf(x, a2, b2) * special.betainc(a1, b1, x), lo, hi, epsabs=1e-14, limit=500
    )
    assert pb[1] == pytest.approx(ref, abs=1e-9)


def test_two_arm_loss_matches_adaptive_quadrature():
    # loss_B = E[max(pA, pB)] - E[pB] = E[(pA - pB)+], computed independently with quad.
    a1, b1, a2, b2 = 21.0, 81.0, 26.0, 76.0
    _, loss, _ = run([20, 25], [100, 100])
    inner = lambda y: integrate.quad(  # noqa: E731  E[(X - y)+] for X ~ A
        lambda x: (x - y) * stats.beta.pdf(x, a1, b1), y, 1, epsabs=1e-13
    )[0]
    ref_b, _ = integrate.quad(lambda y: inner(y) * stats.beta.pdf(y, a2, b2), 0, 1, epsabs=1e-13, limit=200)
    assert loss[1] == pytest.approx(ref_b, abs=1e-9)


MC_CASES = [
    # (successes, trials)
    ([0, 0], [10, 10]),
    ([5, 5, 4], [5, 5, 5]),  # every send opened
    ([0, 1, 2, 1, 0], [1, 2, 3, 4, 5]),  # tiny arms
    ([3, 4, 5, 6, 7, 8, 9, 10], [100] * 8),  # 8 arms
    ([200_000, 200_400, 199_800, 200_100], [1_000_000] * 4),  # very concentrated
    ([10, 100_000, 0], [50, 1_000_000, 30]),  # broad and concentrated together
    ([120, 130, 125], [1000, 1000, 1000]),
]


@pytest.mark.parametrize("successes,trials", MC_CASES)
def test_prob_best_and_loss_vs_seeded_monte_carlo(successes, trials):
    pb, loss, res = run(successes, trials)
    assert pb.sum() == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(20260101)
    s = 400_000
    x, n = np.array(successes), np.array(trials)
    draws = rng.beta((1 + x)[:, None], (1 + n - x)[:, None], size=(len(x), s))
    best = draws.argmax(axis=0)
    mc_pb = np.bincount(best, minlength=len(x)) / s
    regret = draws.max(axis=0)[None, :] - draws
    mc_loss = regret.mean(axis=1)
    se_pb = np.sqrt(np.maximum(mc_pb * (1 - mc_pb), 1e-12) / s)
    se_loss = regret.std(axis=1) / np.sqrt(s)
    assert np.all(np.abs(pb - mc_pb) <= 4 * se_pb + 1e-6), (pb, mc_pb)
    assert np.all(np.abs(loss - mc_loss) <= 4 * se_loss + 1e-9), (loss, mc_loss)
    # Posterior summary is the conjugate update of Beta(1, 1).
    arm = res.arms[0]
    assert (arm.posterior_alpha, arm.posterior_beta) == (1 + x[0], 1 + n[0] - x[0])
    assert arm.ci_lower < arm.posterior_mean < arm.ci_upper


def test_identical_arms_split_evenly_and_custom_prior():
    pb, loss, _ = run([30, 30, 30], [100, 100, 100])
    np.testing.assert_allclose(pb, 1 / 3, atol=1e-9)
    assert np.ptp(loss) < 1e-12
    _, _, res = run([0, 1], [10, 10], prior=(0.5, 0.5))
    assert res.prior_alpha == 0.5 and res.arms[0].posterior_alpha == 0.5
    ref = exact_prob_b_beats_a(1 + 3, 1 + 7, 1 + 5, 1 + 5)
    pb, _, _ = run([3, 5], [10, 10])
    assert pb[1] == pytest.approx(ref, abs=1e-9)


def test_deterministic_and_json_safe():
    a = run([3, 9], [50, 60])[2]
    b = run([3, 9], [50, 60])[2]
    assert a == b
    d = a.to_dict()
    assert d["method"] == "beta_binomial_numerical_integration"
    assert isinstance(d["arms"][0]["prob_best"], float)
    with pytest.raises(ValueError):
        beta_binomial_best(["a"], [1], [1], prior=(0.0, 1.0))
