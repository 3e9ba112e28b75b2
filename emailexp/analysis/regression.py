"""Condition regression: which weekday, hour band, segment and subject features go with a higher
open (or meeting) rate, over all sends, inside and outside experiments.

Model
-----
A quasi-binomial GLM with logit link, fitted by IRLS on *cell proportions* ``events / sends`` with
``var_weights=sends``. Cells are the distinct covariate patterns (subject level, subject features,
campaign, weekday, hour band, segment); input rows describing the same pattern are summed, so the
fit, the Pearson X2 and the dispersion do not depend on how finely the caller pre-aggregated.
The coefficients are exactly those of a row-level logistic regression on the expanded sends.

Linear predictor, treatment coding, the most-sent level of every factor as reference (among the
levels with 0 < events < sends; ties broken by level order)::

    logit p = b0 + length_band + has_question + has_number + has_brackets + has_personalization
              + has_emoji + subject + campaign + weekday + hour_band + segment
              + segment:hour_band (and any other requested interactions of weekday/hour_band/segment)

- ``subject``: one level per subject with at least ``min_subject_sends`` sends; the rest are
  pooled into ``OTHER_SUBJECT``. The reference is the most-sent named subject. Subject
  coefficients are effects *beyond* what the subject features explain.
- ``campaign`` fixed effects (optional) absorb campaign-level differences (list, offer, sender),
  so weekday/hour comparisons are made within campaigns and are not confounded by which campaigns
  happened to be sent when. They are nuisance terms: counted, not displayed.

Aliasing (rank deficiency) is resolved deterministically in the term order above: a column that is
a linear combination of *earlier* columns is dropped (its coefficient fixed at 0, as R's ``glm``
does) and listed with status ``"aliased"``; a column with no data is ``"empty"``. The order puts
the nuisance campaign effects *before* the send-time conditions: if a condition is fully determined
by campaigns (every campaign sent on one weekday), the data say nothing about it within campaigns,
and it is reported as aliased rather than estimated with campaign confounding. Rank is checked by
a greedy Cholesky of the exact (integer) Gram matrix ``X'X``.

Estimability: fixing aliased columns at 0 is only a convention, so a prediction or contrast is
reported only if it is *estimable* - its row ``c`` lies in the row space of the fitted design
(``c = c X^+ X``), checked against an orthonormal basis of the null space built from the Gram
matrix (each aliased column ``a = X_kept g_a`` gives the null vector ``e_a - g_a``; an empty column
gives ``e_a``), with relative tolerance ``_EST_TOL``. An estimable ``c'beta`` has one value whatever
the convention: the reduced fit gives it as ``c_kept' beta_kept`` with variance
``c_kept' Cov c_kept``. So a condition that is aliased column by column (every segment sent only
on Tue early, Tue afternoon, Thu midday, Fri evening: ``weekday[Thu]`` = ``hour_band[midday]``)
still has estimable rates for the observed combinations, while an unobserved combination such
as Thu early is ``not_estimable``, and a weekday or hour band effect averaged over all cells is
``not_estimable`` because it needs those unobserved combinations.

Separation: a 0/1 column whose rows have no events (or only events) has an infinite MLE. Its rows
are removed from the fit - the profile likelihood of the other coefficients is exactly that of the
remaining rows - and the column is reported with status ``"separated"`` (odds ratio ``None``); in
predictions it acts as a coefficient of -/+40 on the logit scale (rate ~0 or ~1). Statsmodels
warnings (convergence, separation) are caught and returned in ``warnings``.

Inference
---------
- Dispersion ``phi = Pearson X2 / df_resid`` is reported as estimated. Standard errors use
  ``max(phi, 1)`` (``scale_used``): binomial mail data cannot be genuinely under-dispersed, and an
  estimate below 1 is noise that would only make intervals too narrow.
- Odds ratios: Wald intervals ``exp(b +- z * se)``, two-sided level ``1 - alpha``, normal quantile.
- Factor tests: likelihood ratio in F form, ``F = (D_reduced - D_full) / q / scale_used`` on
  ``(q, df_resid)`` degrees of freedom, where the reduced model drops every column of the term
  (for weekday/hour band/segment: also the interactions that involve it, so the test asks "does
  this factor matter at all") and ``q`` is the rank lost. Terms tested: weekday, hour_band,
  segment, subject_features, subject (beyond features), subject_line (features and subject
  together) and each interaction. One cheap refit per term, started from the full fit; ``q = 0``
  (term fully aliased) gives ``p_value=None`` with a note.
- Average marginal effects (percentage points): for each level, predicted rates of *all observed
  cells* with the factor set to the level minus set to the reference, averaged with weights sends;
  the subject comparison changes the subject and its features together (total subject effect).
  Intervals by the delta method with the scaled covariance.
  Reported only if every counterfactual cell that enters the average is estimable, with two
  conventions kept from the coding: an aliased or empty interaction column is assumed 0 (noted),
  and a subject or campaign column aliased with earlier terms is fixed at 0 (a subject with no
  effect beyond its features; a campaign absorbed by its subjects).
- Predicted rates for every weekday x hour band x segment: the model rate averaged over the
  send-weighted mix of (subject, features, campaign) patterns in the data ("what if all sends had
  gone out in this condition"); delta-method interval on the logit of that average, back-transformed.
  Reported only if the condition is estimable combined with every mix pattern of the fitted cells.
  Cells removed for separation are predicted by convention and not checked.
- Top conditions per segment: ranked by predicted rate among conditions with observed sends in that
  segment (no recommendation purely by extrapolation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import special, stats
from scipy.linalg import cho_factor, cho_solve
from scipy.linalg import solve_triangular

from ._result import ToDictMixin
from .hour_bands import HOUR_BAND_NAMES, hour_bands
from .subject_features import BINARY_FEATURES, LENGTH_BAND_NAMES, subject_features

__all__ = [
    "CONDITION_FACTORS",
    "OTHER_SUBJECT",
    "WEEKDAY_NAMES",
    "ConditionModel",
    "FactorTest",
    "InsufficientDataError",
    "MarginalEffect",
    "ModelTerm",
    "PredictedRate",
    "fit_condition_model",
]

OUTCOMES = ("opens", "meetings")
CONDITION_FACTORS = ("weekday", "hour_band", "segment")
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
OTHER_SUBJECT = "(other subjects)"
REQUIRED_COLUMNS = ("subject", "weekday", "hour", "segment", "campaign", "sends")
SEPARATED_COEF = 40.0  # logit used for a separated level in predictions: expit(-40) ~ 4e-18
_RANK_TOL = 1e-9
_EST_TOL = 1e-6  # estimability: |component of c in the null space of X| <= _EST_TOL * |c|
_FACTOR_ORDER = ("length_band", "subject", "campaign", "weekday", "hour_band", "segment")


class InsufficientDataError(ValueError):
    """The cells cannot support a regression (no sends, or no variation in the outcome)."""


# --------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelTerm(ToDictMixin):
    """One displayed coefficient. ``status``: estimated | aliased | empty | separated.

    ``odds_ratio`` and its interval are ``exp`` of the log-odds coefficient and its Wald interval;
    ``p_value`` is the two-sided Wald test of coefficient = 0 with the scaled standard error.
    Non-estimated terms have ``None`` statistics.
    """

    column: str
    term: str
    level: str
    status: str
    coef: float | None
    std_err: float | None
    odds_ratio: float | None
    ci_lower: float | None
    ci_upper: float | None
    p_value: float | None


@dataclass(frozen=True)
class MarginalEffect(ToDictMixin):
    """Average marginal effect of ``factor = level`` vs ``reference``, in percentage points."""

    factor: str
    level: str
    reference: str
    effect_pp: float | None
    std_err_pp: float | None
    ci_lower_pp: float | None
    ci_upper_pp: float | None
    status: str
    note: str = ""


@dataclass(frozen=True)
class PredictedRate(ToDictMixin):
    """Predicted rate (proportion 0..1) of one weekday x hour band x segment condition.

    ``observed_sends`` / ``observed_events`` are the raw counts in that condition (any subject or
    campaign). ``status``: estimated | not_estimable (not identified by the data: the condition,
    combined with some subject/campaign pattern, is outside the row space of the design) |
    separated (uses a level with no events or only events: rate ~0 or ~1, no interval).
    """

    weekday: int
    weekday_name: str
    hour_band: str
    segment: str
    rate: float | None
    ci_lower: float | None
    ci_upper: float | None
    status: str
    observed_sends: int
    observed_events: int
    rank: int | None = None


@dataclass(frozen=True)
class FactorTest(ToDictMixin):
    """Scaled likelihood-ratio (F form) test that every column of ``factor`` is zero."""

    factor: str
    columns: tuple[str, ...]
    df_num: int
    df_denom: int
    deviance_change: float | None
    f_statistic: float | None
    p_value: float | None
    note: str = ""


@dataclass(frozen=True)
class ConditionModel(ToDictMixin):
    """Result of :func:`fit_condition_model`. Rates are proportions 0..1, effects in pp."""

    outcome: str
    method: str
    assumptions: tuple[str, ...]
    alpha: float
    n_input_rows: int
    n_cells: int
    n_sends: int
    n_events: int
    n_parameters: int
    df_resid: int
    deviance: float
    pearson_chi2: float
    dispersion: float
    scale_used: float
    converged: bool
    reference_levels: dict[str, str]
    interactions: tuple[tuple[str, str], ...]
    n_subject_levels: int
    n_pooled_subjects: int
    campaign_effects: bool
    n_campaign_effects: int
    n_campaign_effects_dropped: int
    terms: tuple[ModelTerm, ...]
    marginal_effects: tuple[MarginalEffect, ...]
    predicted_rates: tuple[PredictedRate, ...]
    top_conditions: dict[str, tuple[PredictedRate, ...]]
    factor_tests: tuple[FactorTest, ...]
    aliased_columns: tuple[str, ...]
    separated_columns: tuple[str, ...]
    warnings: tuple[str, ...]

    def term(self, column: str) -> ModelTerm:
        """The displayed term with that column name (KeyError if absent)."""
        for t in self.terms:
            if t.column == column:
                return t
        raise KeyError(column)

    def effect(self, factor: str, level: str) -> MarginalEffect:
        for m in self.marginal_effects:
            if m.factor == factor and m.level == str(level):
                return m
        raise KeyError((factor, level))

    def test(self, factor: str) -> FactorTest:
        for t in self.factor_tests:
            if t.factor == factor:
                return t
        raise KeyError(factor)


# --------------------------------------------------------------------------------------------
# Input preparation
# --------------------------------------------------------------------------------------------


def _prepare(cells: pd.DataFrame, outcome: str) -> pd.DataFrame:
    if not isinstance(cells, pd.DataFrame):
        raise TypeError("cells must be a pandas DataFrame")
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    missing = [c for c in (*REQUIRED_COLUMNS, outcome) if c not in cells.columns]
    if missing:
        raise ValueError(f"cells is missing column(s) {missing}; required: {[*REQUIRED_COLUMNS, outcome]}")
    df = pd.DataFrame(index=cells.index)
    for name in ("sends", outcome, "weekday", "hour"):
        col = cells[name]
        if col.isna().any():
            raise ValueError(f"column {name!r} has missing values")
        values = col.to_numpy()
        if not np.issubdtype(values.dtype, np.number) or np.any(values != np.floor(values)):
            raise ValueError(f"column {name!r} must hold integers")
        df[name] = values.astype(np.int64)
    y = df[outcome].to_numpy()
    n = df["sends"].to_numpy()
    if np.any(n < 0) or np.any(y < 0):
        raise ValueError("sends and outcome counts must be non-negative")
    if np.any(y > n):
        raise ValueError(f"{outcome} exceeds sends in {int(np.sum(y > n))} row(s)")
    if np.any((df["weekday"] < 0) | (df["weekday"] > 6)):
        raise ValueError("weekday must be 0 (Mon) .. 6 (Sun)")
    df["hour_band"] = hour_bands(df["hour"].to_numpy())  # validates 0..23
    for name in ("subject", "segment", "campaign"):
        col = cells[name]
        if col.isna().any():
            raise ValueError(f"column {name!r} has missing values")
        df[name] = col.astype(str)
    df = df.rename(columns={outcome: "events"})
    return df[df["sends"] > 0]


def _reference(sends_by_level: pd.Series, events_by_level: pd.Series, order: list) -> Any:
    """Most-sent level among non-degenerate levels (0 < events < sends); ties by level order."""
    ok = (events_by_level > 0) & (events_by_level < sends_by_level)
    candidates = [lv for lv in order if ok.get(lv, False)] or list(order)
    best = max(candidates, key=lambda lv: (sends_by_level.get(lv, 0), -order.index(lv)))
    return best


@dataclass
class _Column:
    name: str
    term: str  # subject_features | subject | campaign | weekday | hour_band | segment | "a:b"
    level: str
    kind: str  # intercept | level | binary | inter
    factor: str = ""
    code: int = -1
    factor2: str = ""
    code2: int = -1


class _Design:
    """Column specifications and a builder from integer factor codes + binary features."""

    def __init__(self, levels: dict[str, list], refs: dict[str, int], interactions, campaign_effects):
        self.levels = levels
        self.refs = refs
        cols: list[_Column] = [_Column("Intercept", "Intercept", "", "intercept")]

        def label(factor, lv):
            return WEEKDAY_NAMES[lv] if factor == "weekday" else str(lv)

        def add_factor(factor, term):
            for code, lv in enumerate(levels[factor]):
                if code != refs[factor]:
                    cols.append(_Column(f"{factor}[{label(factor, lv)}]", term, label(factor, lv),
                                        "level", factor, code))

        add_factor("length_band", "subject_features")
        for b in BINARY_FEATURES:
            cols.append(_Column(b, "subject_features", b, "binary", b))
        add_factor("subject", "subject")
        if campaign_effects:
            add_factor("campaign", "campaign")
        for f in CONDITION_FACTORS:
            add_factor(f, f)
        for fa, fb in interactions:
            for ca, la in enumerate(levels[fa]):
                if ca == refs[fa]:
                    continue
                for cb, lb in enumerate(levels[fb]):
                    if cb == refs[fb]:
                        continue
                    cols.append(_Column(f"{fa}[{label(fa, la)}]:{fb}[{label(fb, lb)}]", f"{fa}:{fb}",
                                        f"{label(fa, la)}:{label(fb, lb)}", "inter", fa, ca, fb, cb))
        self.columns = cols
        self.names = [c.name for c in cols]

    def build(self, codes: dict[str, np.ndarray], binary: dict[str, np.ndarray],
              idx: list[int] | None = None) -> sp.csc_matrix:
        """Sparse 0/1 design (CSC) for the given codes; ``idx`` selects columns (default all)."""
        idx = list(range(len(self.columns))) if idx is None else idx
        n = len(next(iter(codes.values())))
        parts = []
        for k in idx:
            c = self.columns[k]
            if c.kind == "intercept":
                parts.append(np.arange(n))
            elif c.kind == "binary":
                parts.append(np.flatnonzero(binary[c.factor]))
            elif c.kind == "level":
                parts.append(np.flatnonzero(codes[c.factor] == c.code))
            else:
                parts.append(np.flatnonzero((codes[c.factor] == c.code) & (codes[c.factor2] == c.code2)))
        indptr = np.concatenate([[0], np.cumsum([len(r) for r in parts])])
        indices = np.concatenate(parts) if parts else np.empty(0, np.int64)
        return sp.csc_matrix((np.ones(len(indices)), indices, indptr), shape=(n, len(idx)))


def _greedy_rank(gram: np.ndarray, order: list[int]) -> tuple[list[int], list[int], list[int]]:
    """Keep columns in ``order`` that are not linear combinations of earlier kept columns.

    Cholesky of the Gram matrix column by column; a column whose squared residual norm is below
    ``_RANK_TOL`` times its squared norm is dependent. Returns (kept, aliased, empty).
    """
    kept: list[int] = []
    aliased: list[int] = []
    empty: list[int] = []
    L = np.zeros((len(order), len(order)))
    for j in order:
        d = gram[j, j]
        if d <= 0:
            empty.append(j)
            continue
        k = len(kept)
        if k:
            g = gram[kept, j]
            r = solve_triangular(L[:k, :k], g, lower=True, check_finite=False)
            resid = d - r @ r
        else:
            r = np.empty(0)
            resid = d
        if resid <= _RANK_TOL * d:
            aliased.append(j)
            continue
        L[k, :k] = r
        L[k, k] = np.sqrt(resid)
        kept.append(j)
    return kept, aliased, empty


def _null_vectors(gram: np.ndarray, kept: list[int], dropped: list[int], p: int) -> np.ndarray:
    """Null vectors (p x len(dropped)) of the fit design, one per aliased or empty column.

    Every aliased column ``a`` is an exact combination of the kept columns, ``X_a = X_K g_a`` with
    ``g_a = (X_K'X_K)^-1 X_K'X_a`` (least squares on the exact Gram matrix), so ``e_a - g_a`` is a
    null vector of ``X``; an empty column ``e`` gives ``e_e``. These vectors span the null space
    (``X_K`` has full column rank). A linear combination ``c'beta`` is estimable iff ``c`` is
    orthogonal to them, i.e. ``Q'c = 0`` for an orthonormal basis ``Q`` of their span (see
    :func:`_orthonormal`; equivalently ``c = c X^+ X``). Then ``c_a = g_a'c_K`` for every dropped
    column, so ``c'beta = c_K'(beta_K + sum_a g_a beta_a)``: exactly ``c_K'`` times the
    coefficients of the fit with the dropped columns fixed at 0 (which is what the predictions
    use), with variance ``c_K' Cov_K c_K``. Columns outside ``kept + dropped`` (separated) get
    zero rows; leaving a dropped column out of a basis fixes its coefficient at 0 by convention.
    """
    N = np.zeros((p, len(dropped)))
    N[dropped, np.arange(len(dropped))] = 1.0
    if kept and dropped:
        gkk = gram[np.ix_(kept, kept)]
        gka = gram[np.ix_(kept, dropped)]
        try:
            g = cho_solve(cho_factor(gkk, check_finite=False), gka, check_finite=False)
        except np.linalg.LinAlgError:  # pragma: no cover - kept columns are independent by construction
            g = np.linalg.lstsq(gkk, gka, rcond=None)[0]
        N[kept, :] = -g
    return N


def _orthonormal(N: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the column span of ``N`` (full column rank by construction)."""
    return np.linalg.qr(N)[0] if N.shape[1] else N


@dataclass(frozen=True)
class _Fit:
    params: np.ndarray
    cov_unscaled: np.ndarray  # (X' W X)^-1 with W = sends * mu * (1 - mu)
    deviance: float
    pearson_chi2: float
    converged: bool
    iterations: int


def _binomial_deviance(y: np.ndarray, n: np.ndarray, mu: np.ndarray) -> float:
    """Binomial deviance of proportions ``y`` with weights ``n`` (events = n*y)."""
    return float(2 * np.sum(n * (special.xlogy(y, y) - special.xlogy(y, mu)
                                 + special.xlogy(1 - y, 1 - y) - special.xlogy(1 - y, 1 - mu))))


def _fit_glm(X: sp.spmatrix, y: np.ndarray, n: np.ndarray, start: np.ndarray | None = None,
             maxiter: int = 100, tol: float = 1e-10) -> tuple[_Fit, tuple[str, ...]]:
    """Binomial GLM (logit) on proportions ``y`` with ``var_weights=n``, by IRLS.

    The same estimator as ``sm.GLM(y, X, family=Binomial(), var_weights=n)`` (checked in the
    tests), written on sparse normal equations because the statsmodels IRLS solves dense least
    squares with an SVD per iteration, which is far too slow for tens of thousands of cells x
    hundreds of dummy columns. Convergence: relative change of deviance < ``tol`` (as R's glm),
    with step halving when the deviance increases. Returns the fit and notes.
    """
    X = sp.csr_matrix(X)
    notes: list[str] = []
    if start is None:
        mu = (n * y + 0.5) / (n + 1.0)
        eta = special.logit(mu)
        beta = None
    else:
        beta = np.asarray(start, float)
        eta = X @ beta
        mu = special.expit(eta)
    dev = _binomial_deviance(y, n, mu)
    converged = False
    it = 0
    A = None
    for it in range(1, maxiter + 1):
        v = np.clip(mu * (1 - mu), 1e-300, None)
        w = n * v
        zwork = eta + (y - mu) / v
        A = (X.T @ sp.diags(w) @ X).toarray()
        rhs = X.T @ (w * zwork)
        try:
            new = cho_solve(cho_factor(A, check_finite=False), rhs, check_finite=False)
        except np.linalg.LinAlgError:
            new = np.linalg.lstsq(A, rhs, rcond=None)[0]
            notes.append("weighted normal equations nearly singular; least-squares step used")
        for _ in range(30):  # step halving
            eta_new = X @ new
            mu_new = special.expit(eta_new)
            dev_new = _binomial_deviance(y, n, mu_new)
            if np.isfinite(dev_new) and (beta is None or dev_new <= dev * (1 + 1e-12) + 1e-12):
                break
            new = (new + beta) / 2
        change = abs(dev_new - dev) / (abs(dev_new) + 0.1)
        beta, eta, mu, dev = new, eta_new, mu_new, dev_new
        if change < tol:
            converged = True
            break
    v = np.clip(mu * (1 - mu), 1e-300, None)
    A = (X.T @ sp.diags(n * v) @ X).toarray()
    try:
        cov = cho_solve(cho_factor(A, check_finite=False), np.eye(A.shape[0]), check_finite=False)
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(A)
        notes.append("information matrix nearly singular; pseudo-inverse used for the covariance")
    pearson = float(np.sum(n * (y - mu) ** 2 / v))
    return _Fit(beta, cov, dev, pearson, converged, it), tuple(notes)


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


# --------------------------------------------------------------------------------------------
# Main entry point
# --------------------------------------------------------------------------------------------


def fit_condition_model(
    cells: pd.DataFrame,
    *,
    outcome: str = "opens",
    min_subject_sends: int = 500,
    alpha: float = 0.05,
    interactions: tuple[tuple[str, str], ...] = (("segment", "hour_band"),),
    campaign_effects: bool = True,
    top_n: int = 5,
) -> ConditionModel:
    """Fit the condition model for ``outcome`` ("opens" or "meetings") on aggregated cells.

    ``cells`` columns: subject (str), weekday (int 0=Mon..6=Sun, local), hour (int 0..23, local),
    segment (str), campaign (str), sends (int), opens (int), meetings (int) - only the requested
    outcome column is required. Rows may repeat a cell. ``alpha`` is two-sided for every interval.
    ``interactions`` are pairs of distinct factors among weekday, hour_band, segment.
    Raises ValueError on malformed input and InsufficientDataError (a ValueError) when there are no
    sends or the outcome never (or always) happens. See the module docstring for the statistics.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    inter = tuple(tuple(p) for p in interactions)
    for pair in inter:
        if len(pair) != 2 or pair[0] == pair[1] or any(f not in CONDITION_FACTORS for f in pair):
            raise ValueError(
                f"interactions must be pairs of distinct factors from {CONDITION_FACTORS}, got {pair!r}")
    if len(set(frozenset(p) for p in inter)) != len(inter):
        raise ValueError("interactions lists the same pair twice")
    df = _prepare(cells, outcome)
    n_input_rows = int(len(cells))
    total_n, total_y = int(df["sends"].sum()), int(df["events"].sum())
    if total_n == 0:
        raise InsufficientDataError("no sends in the cells: nothing to fit")
    if total_y == 0 or total_y == total_n:
        raise InsufficientDataError(
            f"{outcome} happened in {total_y} of {total_n} sends: the rate has no variation to model")

    # Subject pooling and features (features computed once per distinct subject).
    subj_sends = df.groupby("subject", sort=True)["sends"].sum()
    named = subj_sends.index[subj_sends >= min_subject_sends]
    df["subject_level"] = np.where(df["subject"].isin(named), df["subject"], OTHER_SUBJECT)
    feats = pd.DataFrame([subject_features(s).to_dict() for s in subj_sends.index]).set_index("subject")
    feats = feats[["length_band", *BINARY_FEATURES]]
    df = df.join(feats, on="subject")
    for b in BINARY_FEATURES:
        df[b] = df[b].astype(np.int8)

    # Covariate patterns.
    keys = ["subject_level", "length_band", *BINARY_FEATURES, "campaign", "weekday", "hour_band", "segment"]
    pat = df.groupby(keys, sort=True, observed=True)[["sends", "events"]].sum().reset_index()
    n_all = pat["sends"].to_numpy(float)
    y_all = pat["events"].to_numpy(float)

    # Levels (deterministic order) and references.
    levels: dict[str, list] = {
        "weekday": sorted(pat["weekday"].unique().tolist()),
        "hour_band": [b for b in HOUR_BAND_NAMES if b in set(pat["hour_band"].unique())],
        "segment": sorted(pat["segment"].unique().tolist()),
        "campaign": sorted(pat["campaign"].unique().tolist()),
        "length_band": [b for b in LENGTH_BAND_NAMES if b in set(pat["length_band"].unique())],
    }
    named_levels = sorted(set(pat["subject_level"].unique()) - {OTHER_SUBJECT})
    levels["subject"] = named_levels + ([OTHER_SUBJECT] if (pat["subject_level"] == OTHER_SUBJECT).any() else [])
    refs: dict[str, int] = {}
    codes: dict[str, np.ndarray] = {}
    factor_col = {"subject": "subject_level"}
    for f, lv in levels.items():
        col = pat[factor_col.get(f, f)]
        sends_by = pat.groupby(factor_col.get(f, f))["sends"].sum()
        events_by = pat.groupby(factor_col.get(f, f))["events"].sum()
        order = named_levels if (f == "subject" and named_levels) else lv
        refs[f] = lv.index(_reference(sends_by, events_by, order))
        codes[f] = pd.Categorical(col, categories=lv).codes.astype(np.int64)
    binary = {b: pat[b].to_numpy(float) for b in BINARY_FEATURES}

    design = _Design(levels, refs, inter, campaign_effects)
    cols = design.columns
    p = len(cols)
    X_all = design.build(codes, binary)
    X_rows = X_all.tocsr()

    # Separation: 0/1 columns whose rows have no (or only) events; drop rows + column, iterate.
    rows = np.ones(len(pat), bool)
    sep_sign = np.zeros(p)
    while True:
        Xr = X_rows[rows]
        n_c = Xr.T @ n_all[rows]
        y_c = Xr.T @ y_all[rows]
        bad = (n_c > 0) & ((y_c == 0) | (y_c == n_c)) & (sep_sign == 0)
        bad[0] = False
        if not bad.any():
            break
        sep_sign[bad] = np.where(y_c[bad] == 0, -1.0, 1.0)
        rows &= np.asarray(X_all[:, np.flatnonzero(bad)].sum(axis=1)).ravel() == 0
    if y_all[rows].sum() in (0, n_all[rows].sum()) or not rows.any():
        raise InsufficientDataError(f"every cell with {outcome} variation is separated: nothing to fit")
    separated = [j for j in range(p) if sep_sign[j] != 0]

    # Aliasing, in term order, on the rows that enter the fit.
    Xf = X_rows[rows]
    gram = (Xf.T @ Xf).toarray()
    candidates = [j for j in range(p) if sep_sign[j] == 0]
    kept, aliased, empty = _greedy_rank(gram, candidates)

    nf = n_all[rows]
    yf = y_all[rows] / nf  # proportions
    res, fit_warnings = _fit_glm(Xf[:, kept], yf, nf)
    beta = np.zeros(p)
    beta[kept] = res.params
    converged = res.converged
    df_resid = int(len(yf) - len(kept))
    pearson = float(res.pearson_chi2)
    dispersion = pearson / df_resid if df_resid > 0 else float("nan")
    scale_used = max(dispersion, 1.0) if np.isfinite(dispersion) else 1.0
    V = np.zeros((p, p))
    V[np.ix_(kept, kept)] = res.cov_unscaled * scale_used
    beta_pred = beta + SEPARATED_COEF * sep_sign  # finite stand-in for +-inf
    z = stats.norm.ppf(1 - alpha / 2)
    notes = list(fit_warnings)
    if not converged:
        notes.append("IRLS did not converge: estimates may be unreliable")
    big = [cols[j].name for j in kept[1:] if abs(beta[j]) > 15]
    if big:
        notes.append(f"very large coefficients (possible quasi-separation): {big}")
    if df_resid <= 0:
        notes.append("no residual degrees of freedom: dispersion cannot be estimated, scale 1 used")

    status = np.array(["estimated"] * p, dtype=object)
    status[aliased] = "aliased"
    status[empty] = "empty"
    status[separated] = "separated"

    # Displayed terms (no intercept, no campaign effects).
    se = np.sqrt(np.clip(np.diag(V), 0, None))
    terms = []
    for j, c in enumerate(cols):
        if c.kind == "intercept" or c.term == "campaign":
            continue
        if status[j] == "estimated":
            b, s = beta[j], se[j]
            terms.append(ModelTerm(c.name, c.term, c.level, "estimated", _num(b), _num(s), _num(np.exp(b)),
                                   _num(np.exp(b - z * s)), _num(np.exp(b + z * s)),
                                   _num(2 * stats.norm.sf(abs(b / s))) if s > 0 else None))
        else:
            terms.append(ModelTerm(c.name, c.term, c.level, str(status[j]), None, None, None, None, None, None))

    # Factor tests.
    term_cols: dict[str, list[int]] = {}
    for j, c in enumerate(cols):
        if c.kind != "intercept":
            term_cols.setdefault(c.term, []).append(j)
    tests_spec = []
    for f in CONDITION_FACTORS:
        idx = [j for j, c in enumerate(cols) if c.term == f or (c.kind == "inter" and f in (c.factor, c.factor2))]
        tests_spec.append((f, idx))
    tests_spec.append(("subject_features", term_cols.get("subject_features", [])))
    tests_spec.append(("subject", term_cols.get("subject", [])))
    tests_spec.append(("subject_line", term_cols.get("subject_features", []) + term_cols.get("subject", [])))
    for fa, fb in inter:
        tests_spec.append((f"{fa}:{fb}", term_cols.get(f"{fa}:{fb}", [])))
    factor_tests = []
    kept_set = set(kept)
    for name, idx in tests_spec:
        drop = set(idx)
        tested = tuple(cols[j].name for j in idx if j in kept_set)
        if not tested or df_resid <= 0:
            factor_tests.append(FactorTest(name, tested, 0, df_resid, None, None, None,
                                           "no estimable columns" if not tested else "no residual df"))
            continue
        red_kept, _, _ = _greedy_rank(gram, [j for j in candidates if j not in drop])
        q = len(kept) - len(red_kept)
        start = beta[red_kept]
        red, red_w = _fit_glm(Xf[:, red_kept], yf, nf, start=start)
        notes.extend(w for w in red_w if w not in notes)
        dev_change = max(float(red.deviance - res.deviance), 0.0)
        F = dev_change / q / scale_used if q > 0 else float("nan")
        pval = float(stats.f.sf(F, q, df_resid)) if q > 0 else float("nan")
        note = ("F = (D_reduced - D_full) / q / scale_used" if q > 0 else
                "not testable: dropping these columns loses no rank (aliased with other terms)")
        factor_tests.append(FactorTest(name, tested, q, df_resid, _num(dev_change) if q > 0 else None,
                                       _num(F), _num(pval), note))

    # Predictions and marginal effects share the observed patterns (all rows, incl. separated).
    eta_all = X_all @ beta_pred
    W = n_all.sum()
    # Estimability (see _null_vectors). Predictions are judged against every aliased/empty column.
    # Marginal effects keep two conventions: an aliased or empty interaction column is assumed 0
    # (reported in the note), and subject and campaign columns aliased with earlier terms are
    # fixed at 0 (a subject with no effect beyond its features, a campaign absorbed by its
    # subjects). Only the cells that enter the fit are checked (for predictions: the mix patterns
    # of those cells); the cells removed for separation are predicted by convention
    # (+-SEPARATED_COEF, dropped columns at 0).
    dropped = aliased + empty
    bad_cols = set(dropped)
    N_null = _null_vectors(gram, kept, dropped, p)
    ame_sel = [t for t, j in enumerate(dropped) if cols[j].kind != "inter" and (
        j in empty or cols[j].term not in ("subject", "campaign"))]
    Q_ame = _orthonormal(N_null[:, ame_sel])
    sep_abs = (sep_sign != 0).astype(float)
    fit_idx = np.flatnonzero(rows)
    X_fit = X_all[fit_idx]  # CSC: cheap column slices
    cf_scale = np.sqrt(float(np.asarray(X_all.sum(axis=1)).max()) + 1.0)

    q_active = np.abs(Q_ame).max(axis=1, initial=0.0) > _EST_TOL * 1e-3
    xq_cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, float]] = {}

    def estimable_cf(idx, block) -> bool:
        """Whether every fitted cell, with columns ``idx`` replaced by ``block``, is estimable.

        A fitted cell ``x`` lies in the row space (``Q'x = 0``), so the counterfactual
        ``x + (block - x_idx)`` is estimable iff ``(block - x_idx) Q_idx = 0``; only the columns
        with non-zero rows in ``Q`` matter. Counterfactual cells that use a separated column are
        predicted by convention and not checked.
        """
        act = [t for t, j in enumerate(idx) if q_active[j]]
        if not act:
            return True  # the replaced columns do not touch the null space
        cols_act = tuple(idx[t] for t in act)
        Qi = Q_ame[list(cols_act)]
        if cols_act not in xq_cache:
            xq = np.asarray(X_fit[:, list(cols_act)] @ Qi)
            centre = xq.mean(axis=0)
            xq_cache[cols_act] = (xq, centre, float(np.sqrt(np.einsum("ij,ij->i", xq - centre, xq - centre)).max()))
        xq, centre, spread = xq_cache[cols_act]
        sep_t = [t for t, j in enumerate(idx) if sep_abs[j]]
        if not sp.issparse(block):  # one row for every cell: max_i |v - xq_i| <= |v - centre| + spread
            if sep_t and block[0, sep_t].any():
                return True
            return bool(np.linalg.norm(block[0, act] @ Qi - centre) + spread <= _EST_TOL * cf_scale)
        blk = block[fit_idx]
        proj = np.asarray(blk[:, act] @ Qi) - xq
        if sep_t:
            proj = proj[np.asarray(blk[:, sep_t].sum(axis=1)).ravel() == 0]
        return bool(np.all(np.sqrt(np.einsum("ij,ij->i", proj, proj)) <= _EST_TOL * cf_scale))

    def finish_ame(factor, level_label, ref_label, eta_l, grad_l_fn, eta_r, grad_r_fn, status_, note=""):
        mu_l, mu_r = special.expit(eta_l), special.expit(eta_r)
        est = float(np.dot(n_all, mu_l - mu_r) / W)
        g = (grad_l_fn(n_all * mu_l * (1 - mu_l)) - grad_r_fn(n_all * mu_r * (1 - mu_r))) / W
        s = float(np.sqrt(max(g @ V @ g, 0.0)))
        if status_ != "estimated":
            return MarginalEffect(factor, level_label, ref_label, None, None, None, None, status_, note)
        return MarginalEffect(factor, level_label, ref_label, 100 * est, 100 * s, 100 * (est - z * s),
                              100 * (est + z * s), status_, note)

    def counterfactual(idx, block):
        """eta and gradient-sum function with columns ``idx`` replaced by ``block`` (n x k or 1 x k)."""
        eta = eta_all - X_all[:, idx] @ beta_pred[idx] + block @ beta_pred[idx]

        def grad(wv):
            g = X_all.T @ wv
            g[idx] -= X_all[:, idx].T @ wv
            g[idx] += block[0] * wv.sum() if block.shape[0] == 1 else block.T @ wv
            return g

        return eta, grad

    ames: list[MarginalEffect] = []
    for f in CONDITION_FACTORS:
        idx = [j for j, c in enumerate(cols) if c.factor == f or c.factor2 == f]
        lv = levels[f]
        ref_code = refs[f]

        def block_for(code, f=f, idx=idx):
            cf = dict(codes)
            cf[f] = np.full(len(pat), code)
            return design.build(cf, binary, idx)

        ref_blk = block_for(ref_code)
        eta_r, grad_r = counterfactual(idx, ref_blk)
        ref_ok = estimable_cf(idx, ref_blk)
        for code, level in enumerate(lv):
            if code == ref_code:
                continue
            main = next(j for j in idx if cols[j].kind == "level" and cols[j].code == code and cols[j].factor == f)
            blk = block_for(code)
            st = "separated" if sep_sign[main] else (
                "estimated" if ref_ok and estimable_cf(idx, blk) else "not_estimable")
            inter_bad = [j for j in idx if cols[j].kind == "inter" and j in bad_cols
                         and ((cols[j].factor == f and cols[j].code == code) or (cols[j].factor2 == f and cols[j].code2 == code))]
            note = f"{len(inter_bad)} interaction column(s) without data assumed 0" if inter_bad and st == "estimated" else ""
            eta_l, grad_l = counterfactual(idx, blk)
            lab = WEEKDAY_NAMES[level] if f == "weekday" else str(level)
            ref_lab = WEEKDAY_NAMES[lv[ref_code]] if f == "weekday" else str(lv[ref_code])
            ames.append(finish_ame(f, lab, ref_lab, eta_l, grad_l, eta_r, grad_r, st, note))

    # Subject features: length band and binary features (all cells set to the level vs reference).
    fidx = [j for j, c in enumerate(cols) if c.term == "subject_features"]

    lb_idx = [j for j in fidx if cols[j].factor == "length_band"]
    lb_ref = refs["length_band"]
    for code, level in enumerate(levels["length_band"]):
        if code == lb_ref:
            continue
        j = next(k for k in lb_idx if cols[k].code == code)
        blk_r, blk_l = np.zeros((1, len(lb_idx))), np.array([[1.0 if k == j else 0.0 for k in lb_idx]])
        eta_r, g_r = counterfactual(lb_idx, blk_r)
        eta_l, g_l = counterfactual(lb_idx, blk_l)
        st = "separated" if sep_sign[j] else (
            "estimated" if estimable_cf(lb_idx, blk_r) and estimable_cf(lb_idx, blk_l) else "not_estimable")
        ames.append(finish_ame("length_band", level, levels["length_band"][lb_ref], eta_l, g_l, eta_r, g_r, st))
    for b in BINARY_FEATURES:
        j = next(k for k in fidx if cols[k].kind == "binary" and cols[k].factor == b)
        eta_l, g_l = counterfactual([j], np.ones((1, 1)))
        eta_r, g_r = counterfactual([j], np.zeros((1, 1)))
        st = "separated" if sep_sign[j] else (
            "estimated" if estimable_cf([j], np.ones((1, 1))) and estimable_cf([j], np.zeros((1, 1)))
            else "not_estimable")
        ames.append(finish_ame(b, "yes", "no", eta_l, g_l, eta_r, g_r, st))

    # Subjects: total effect (subject level and its features) vs the reference subject.
    sidx = fidx + [j for j, c in enumerate(cols) if c.term == "subject"]
    s_ref = refs["subject"]
    if levels["subject"][s_ref] != OTHER_SUBJECT:
        def subject_block(code):
            s = levels["subject"][code]
            ft = subject_features(s)
            cf = {"length_band": np.array([levels["length_band"].index(ft.length_band)]),
                  "subject": np.array([code])}
            bv = {b: np.array([float(getattr(ft, b))]) for b in BINARY_FEATURES}
            return design.build(cf, bv, sidx).toarray()

        ref_blk = subject_block(s_ref)
        eta_r, g_r = counterfactual(sidx, ref_blk)
        ref_ok = estimable_cf(sidx, ref_blk)
        for code, level in enumerate(levels["subject"]):
            if code == s_ref:
                continue
            if level == OTHER_SUBJECT:
                ames.append(MarginalEffect("subject", level, levels["subject"][s_ref], None, None, None, None,
                                           "not_estimable", "pooled level: not a single subject"))
                continue
            blk = subject_block(code)
            used_sep = [k for k, v in zip(sidx, blk[0]) if v and sep_sign[k]]
            st = "separated" if used_sep else (
                "estimated" if ref_ok and estimable_cf(sidx, blk) else "not_estimable")
            eta_l, g_l = counterfactual(sidx, blk)
            ames.append(finish_ame("subject", level, levels["subject"][s_ref], eta_l, g_l, eta_r, g_r, st))

    # Predicted rates on the weekday x hour band x segment grid, standardised over the mix.
    cond_idx = [j for j, c in enumerate(cols) if c.kind != "intercept" and (
        c.term in CONDITION_FACTORS or c.kind == "inter")]
    mix_idx = [j for j in range(p) if j not in set(cond_idx)]
    mix_key = pat[["subject_level", "length_band", *BINARY_FEATURES, "campaign"]]
    mix_codes = mix_key.groupby(list(mix_key.columns), sort=True, observed=True).ngroup().to_numpy()
    n_mix = int(mix_codes.max()) + 1
    w_mix = np.bincount(mix_codes, weights=n_all, minlength=n_mix)
    first = np.unique(mix_codes, return_index=True)[1]
    Xm = X_rows[first][:, mix_idx]
    eta_mix = Xm @ beta_pred[mix_idx]
    grid = pd.MultiIndex.from_product(
        [range(len(levels["weekday"])), range(len(levels["hour_band"])), range(len(levels["segment"]))],
        names=["weekday", "hour_band", "segment"]).to_frame(index=False)
    gcodes = {f: grid[f].to_numpy(np.int64) for f in CONDITION_FACTORS}
    Xc = design.build(gcodes, binary, cond_idx).toarray()  # binary unused by condition columns
    eta_c = Xc @ beta_pred[cond_idx]
    mu = special.expit(eta_c[:, None] + eta_mix[None, :])
    rate = mu @ w_mix / W
    wv = mu * (1 - mu) * w_mix[None, :]
    m_t = wv.sum(axis=1) / W
    G = np.zeros((len(grid), p))
    G[:, cond_idx] = Xc * m_t[:, None]
    G[:, mix_idx] = (Xm.T @ wv.T).T / W
    se_rate = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", G, V, G), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        logit_rate = special.logit(rate)
        se_logit = se_rate / (rate * (1 - rate))
    lo = special.expit(logit_rate - z * se_logit)
    hi = special.expit(logit_rate + z * se_logit)
    # A grid condition is estimable iff (condition, mix pattern) is, for every mix pattern of the
    # fitted cells: with a = Q'c_condition and b_m = Q'c_mix, a + b_m = 0 for all m, i.e. the b_m
    # are all equal and a = -mean(b). Vectorised with the bound max_m |a + b_m| <= |a + mean(b)| +
    # max_m |b_m - mean(b)| (and >= both terms up to a factor 2).
    Q_pred = _orthonormal(N_null)
    if Q_pred.shape[1]:
        fit_mix = np.zeros(n_mix, bool)
        fit_mix[mix_codes[rows]] = True
        Xm_fit = Xm[fit_mix]
        b_mix = np.asarray(Xm_fit @ Q_pred[mix_idx])
        b_bar = b_mix.mean(axis=0)
        spread = float(np.sqrt(np.einsum("ij,ij->i", b_mix - b_bar, b_mix - b_bar)).max())
        a_c = Xc @ Q_pred[cond_idx] + b_bar
        viol = np.sqrt(np.einsum("ij,ij->i", a_c, a_c)) + spread
        norm = np.sqrt(Xc.sum(axis=1) + float(np.asarray(Xm_fit.sum(axis=1)).max()))
        cond_ok = viol <= _EST_TOL * np.maximum(norm, 1.0)
    else:
        cond_ok = np.ones(len(grid), bool)
    obs = pat.assign(w=codes["weekday"], b=codes["hour_band"], s=codes["segment"]).groupby(
        ["w", "b", "s"])[["sends", "events"]].sum()
    obs_lookup = {k: (int(v[0]), int(v[1])) for k, v in zip(obs.index, obs.to_numpy())}
    predicted: list[PredictedRate] = []
    for i, (wc, bc, sc) in enumerate(grid.itertuples(index=False)):
        used = [cond_idx[k] for k in np.flatnonzero(Xc[i])]
        if any(sep_sign[j] for j in used):
            st = "separated"
        elif not cond_ok[i]:
            st = "not_estimable"
        else:
            st = "estimated"
        o_n, o_y = obs_lookup.get((wc, bc, sc), (0, 0))
        wd = int(levels["weekday"][wc])
        r_ok = st != "not_estimable"
        ci_ok = st == "estimated"
        predicted.append(PredictedRate(
            wd, WEEKDAY_NAMES[wd], levels["hour_band"][bc], levels["segment"][sc],
            _num(rate[i]) if r_ok else None, _num(lo[i]) if ci_ok else None,
            _num(hi[i]) if ci_ok else None, st, o_n, o_y))

    top: dict[str, tuple[PredictedRate, ...]] = {}
    for seg in levels["segment"]:
        cand = [pr for pr in predicted if pr.segment == seg and pr.status == "estimated" and pr.observed_sends > 0]
        cand.sort(key=lambda pr: (-pr.rate, pr.weekday, HOUR_BAND_NAMES.index(pr.hour_band)))
        top[seg] = tuple(PredictedRate(**{**pr.__dict__, "rank": r + 1}) for r, pr in enumerate(cand[:top_n]))

    camp = [j for j, c in enumerate(cols) if c.term == "campaign"]
    ref_labels = {f: (WEEKDAY_NAMES[levels[f][refs[f]]] if f == "weekday" else str(levels[f][refs[f]]))
                  for f in _FACTOR_ORDER if f != "campaign" or campaign_effects}
    method = ("quasi-binomial GLM, logit link, IRLS on cell proportions with var_weights=sends; "
              "dispersion = Pearson X2/df_resid, floored at 1 for inference; Wald intervals (normal "
              "quantile) on the log-odds scale; treatment coding, most-sent level as reference; "
              + ("campaign fixed effects; " if campaign_effects else "no campaign effects; ")
              + "aliased columns dropped in term order; separated levels removed from the fit; "
              "scaled-deviance F tests per factor; AMEs and standardised predictions with "
              "delta-method intervals")
    assumptions = (
        "sends are independent Bernoulli trials given the covariates, up to a common dispersion factor",
        "effects are additive on the log-odds scale except for the listed interactions",
        "weekday and hour are in the workspace/experiment local time",
        "subject effects are beyond what the subject features explain; subjects with fewer than "
        f"{min_subject_sends} sends are pooled",
        ("comparisons are within campaigns (campaign fixed effects)" if campaign_effects
         else "no campaign effects: non-randomised condition comparisons may be confounded by campaign"),
        "predicted rates are standardised to the observed send-weighted subject/campaign mix",
    )
    return ConditionModel(
        outcome=outcome, method=method, assumptions=assumptions, alpha=alpha,
        n_input_rows=n_input_rows, n_cells=int(len(pat)), n_sends=total_n, n_events=total_y,
        n_parameters=len(kept), df_resid=df_resid, deviance=float(res.deviance), pearson_chi2=pearson,
        dispersion=dispersion, scale_used=scale_used, converged=converged,
        reference_levels=ref_labels, interactions=inter,
        n_subject_levels=len(levels["subject"]),
        n_pooled_subjects=int((subj_sends < min_subject_sends).sum()),
        campaign_effects=campaign_effects,
        n_campaign_effects=sum(1 for j in camp if status[j] == "estimated"),
        n_campaign_effects_dropped=sum(1 for j in camp if status[j] != "estimated"),
        terms=tuple(terms), marginal_effects=tuple(ames), predicted_rates=tuple(predicted),
        top_conditions=top, factor_tests=tuple(factor_tests),
        aliased_columns=tuple(cols[j].name for j in aliased + empty),
        separated_columns=tuple(cols[j].name for j in separated),
        warnings=tuple(notes),
    )
