import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from emailexp.analysis.regression import (
    OTHER_SUBJECT,
    WEEKDAY_NAMES,
    InsufficientDataError,
    fit_condition_model,
)

BAND_HOUR = {"night": 2, "early": 7, "morning": 10, "midday": 12, "afternoon": 15, "evening": 18, "late": 21}
# Hand-coded features (independent of subject_features): has_question, has_number, has_brackets.
SUBJECTS = {"Hello from Acme": (0, 0, 0), "Quick question?": (1, 0, 0),
            "【ご案内】新機能": (0, 0, 1), "Save 20 minutes a day": (0, 1, 0)}


def simulate_rows(rng, n, *, wd_eff, band_eff, seg_eff, inter=None, camp_eff=None, camp_weekday=None,
                  wd_p=None, band_p=None, seg_p=None, subj_eff=None, base=-1.6):
    """Row-level sends with planted log-odds effects; returns a DataFrame (one row per send)."""
    wds, bands, segs = list(wd_eff), list(band_eff), list(seg_eff)
    w = rng.choice(len(wds), n, p=wd_p)
    b = rng.choice(len(bands), n, p=band_p)
    s = rng.choice(len(segs), n, p=seg_p)
    n_c = len(camp_eff) if camp_eff is not None else 1
    c = rng.integers(0, n_c, n)
    if camp_weekday is not None:  # campaigns sent mostly on "their" weekday
        mostly = rng.random(n) < 0.7
        w = np.where(mostly, np.asarray(camp_weekday)[c], w)
    subj_names = list(SUBJECTS)
    k = rng.integers(0, len(subj_names), n)
    eta = (base + np.array([wd_eff[x] for x in wds])[w] + np.array([band_eff[x] for x in bands])[b]
           + np.array([seg_eff[x] for x in segs])[s])
    if inter:
        for (sg, bd), v in inter.items():
            eta += v * ((s == segs.index(sg)) & (b == bands.index(bd)))
    if camp_eff is not None:
        eta += np.asarray(camp_eff)[c]
    if subj_eff is not None:
        eta += np.array([subj_eff.get(x, 0.0) for x in subj_names])[k]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({
        "subject": np.array(subj_names)[k], "weekday": np.array(wds)[w],
        "hour": np.array([BAND_HOUR[x] for x in bands])[b], "hour_band": np.array(bands)[b],
        "segment": np.array(segs)[s], "campaign": np.char.add("c", c.astype(str)),
        "sends": 1, "opens": y, "meetings": y * (rng.random(n) < 0.1)})


def to_cells(rows):
    keys = ["subject", "weekday", "hour", "segment", "campaign"]
    return rows.groupby(keys, as_index=False)[["sends", "opens", "meetings"]].sum()


def row_design(rows, m):
    """Independent treatment-coded design (pandas only) with the model's reference levels."""
    refs = m.reference_levels
    wd_ref = WEEKDAY_NAMES.index(refs["weekday"])
    X = {"Intercept": np.ones(len(rows))}
    feats = np.array([SUBJECTS[s] for s in rows["subject"]])
    for j, name in enumerate(("has_question", "has_number", "has_brackets")):
        X[name] = feats[:, j].astype(float)
    for c in sorted(set(rows["campaign"]) - {refs["campaign"]}):
        X[f"campaign[{c}]"] = (rows["campaign"] == c).to_numpy(float)
    for d in sorted(set(rows["weekday"]) - {wd_ref}):
        X[f"weekday[{WEEKDAY_NAMES[d]}]"] = (rows["weekday"] == d).to_numpy(float)
    for f in ("hour_band", "segment"):
        for lv in sorted(set(rows[f]) - {refs[f]}):
            X[f"{f}[{lv}]"] = (rows[f] == lv).to_numpy(float)
    for sg in sorted(set(rows["segment"]) - {refs["segment"]}):
        for bd in sorted(set(rows["hour_band"]) - {refs["hour_band"]}):
            X[f"segment[{sg}]:hour_band[{bd}]"] = ((rows["segment"] == sg) & (rows["hour_band"] == bd)).to_numpy(float)
    return pd.DataFrame(X)


PLANT = dict(
    wd_eff={0: 0.0, 1: 0.25, 2: 0.1, 3: 0.0, 4: -0.3},
    band_eff={"morning": 0.0, "early": -0.2, "afternoon": -0.1, "evening": -0.5},
    seg_eff={"smb": 0.0, "mid": 0.2, "ent": -0.3},
    inter={("ent", "afternoon"): 0.5},
    wd_p=[0.3, 0.2, 0.2, 0.15, 0.15], band_p=[0.4, 0.2, 0.2, 0.2], seg_p=[0.5, 0.3, 0.2],
)


def test_aggregated_fit_equals_row_level_logit():
    rng = np.random.default_rng(7)
    rows = simulate_rows(rng, 12000, camp_eff=[0.0, 0.3, -0.2], **PLANT)
    m = fit_condition_model(to_cells(rows), min_subject_sends=10**9)
    assert m.n_sends == 12000 and m.n_subject_levels == 1
    X = row_design(rows, m)
    logit = sm.Logit(rows["opens"].to_numpy(), X).fit(disp=0, tol=1e-12, maxiter=200)
    est = {t.column: t for t in m.terms if t.status == "estimated"}
    assert set(est) == {c for c in X.columns if c != "Intercept" and not c.startswith("campaign")}
    for col, t in est.items():
        assert t.coef == pytest.approx(logit.params[col], abs=1e-6)
        assert t.std_err / np.sqrt(m.scale_used) == pytest.approx(logit.bse[col], abs=1e-6)
    assert m.n_campaign_effects == 2
    # LR test for weekday equals the row-level likelihood ratio.
    reduced = sm.Logit(rows["opens"].to_numpy(), X.drop(columns=[c for c in X if c.startswith("weekday")])).fit(
        disp=0, tol=1e-12, maxiter=200)
    assert m.test("weekday").deviance_change == pytest.approx(2 * (logit.llf - reduced.llf), abs=1e-6)
    # Dispersion equals statsmodels' GLM on covariate patterns with var_weights and scale="X2".
    keys = ["subject", "weekday", "hour_band", "segment", "campaign"]
    cells = rows.groupby(keys, as_index=False)[["sends", "opens"]].sum()
    Xc = row_design(cells, m)
    glm = sm.GLM(cells["opens"] / cells["sends"], Xc, family=sm.families.Binomial(),
                 var_weights=cells["sends"]).fit(scale="X2")
    assert m.dispersion == pytest.approx(glm.scale, rel=1e-6)
    assert m.n_cells == len(cells)


def test_input_granularity_does_not_matter():
    rng = np.random.default_rng(3)
    rows = simulate_rows(rng, 6000, camp_eff=[0.0, 0.2], **PLANT)
    a = fit_condition_model(to_cells(rows))
    b = fit_condition_model(rows.drop(columns="hour_band"))  # one row per send, repeated cells
    assert a.dispersion == pytest.approx(b.dispersion, rel=1e-9)
    assert [t.coef for t in a.terms] == pytest.approx([t.coef for t in b.terms], abs=1e-9, nan_ok=True)


def confounded_data(rng, n):
    # Campaign 0 and 1 are good and sent mostly on Tuesday; campaign effects confound weekday.
    return simulate_rows(rng, n, camp_eff=[0.8, 0.6, 0.0, -0.4, -0.6], camp_weekday=[1, 1, 0, 0, 4], **PLANT)


def test_campaign_effects_remove_confounding_and_recover_planted_effects():
    rows = confounded_data(np.random.default_rng(11), 300_000)
    cells = to_cells(rows)
    fe = fit_condition_model(cells)
    naive = fit_condition_model(cells, campaign_effects=False)
    assert fe.reference_levels["weekday"] == "Mon" and fe.reference_levels["hour_band"] == "morning"
    truth = {"weekday[Tue]": 0.25, "weekday[Wed]": 0.1, "weekday[Thu]": 0.0, "weekday[Fri]": -0.3,
             "hour_band[evening]": -0.5, "segment[mid]": 0.2, "segment[ent]": -0.3,
             "segment[ent]:hour_band[afternoon]": 0.5}
    for col, v in truth.items():
        t = fe.term(col)
        assert abs(t.coef - v) < 4 * t.std_err, col
    bias = naive.term("weekday[Tue]")
    assert bias.coef - 0.25 > 8 * bias.std_err  # campaign effect leaks into Tuesday
    assert fe.test("weekday").p_value < 1e-3 and fe.test("segment:hour_band").p_value < 1e-3


def test_ranking_puts_planted_best_condition_first():
    plant = dict(PLANT, wd_eff={0: 0.0, 1: 0.4, 2: 0.1, 3: 0.0, 4: -0.3},
                 inter={("ent", "afternoon"): 0.9, ("mid", "evening"): 1.0})
    rows = simulate_rows(np.random.default_rng(5), 200_000, camp_eff=[0.0, 0.3, -0.3], **plant)
    m = fit_condition_model(to_cells(rows))
    best = {s: (top[0].weekday_name, top[0].hour_band) for s, top in m.top_conditions.items()}
    assert best == {"smb": ("Tue", "morning"), "mid": ("Tue", "evening"), "ent": ("Tue", "afternoon")}
    first = m.top_conditions["ent"][0]
    assert first.rank == 1 and first.ci_lower < first.rate < first.ci_upper
    assert len(m.predicted_rates) == 5 * 4 * 3
    # Hour band AME for evening vs morning is negative on average (interaction only in "mid").
    assert m.effect("segment", "mid").effect_pp > 0


def _coverage_sims(n_sims, rng, overdispersed=False):
    cover, cover_naive, disp, feature_p = [], [], [], []
    truth = {"weekday[Tue]": 0.25, "hour_band[evening]": -0.5, "segment[mid]": 0.2,
             "segment[ent]:hour_band[afternoon]": 0.5}
    wds, bands, segs = list(PLANT["wd_eff"]), list(PLANT["band_eff"]), list(PLANT["seg_eff"])
    camp_eff = np.array([0.0, 0.3, -0.2, 0.1])
    grid = pd.MultiIndex.from_product([wds, bands, segs, range(4), ["Hello from Acme", "Quick question?"]],
                                      names=["weekday", "band", "segment", "c", "subject"]).to_frame(index=False)
    eta = (-1.6 + grid["weekday"].map(PLANT["wd_eff"]) + grid["band"].map(PLANT["band_eff"])
           + grid["segment"].map(PLANT["seg_eff"]) + camp_eff[grid["c"]]
           + 0.5 * ((grid["segment"] == "ent") & (grid["band"] == "afternoon"))).to_numpy()
    p = 1 / (1 + np.exp(-eta))
    sends = np.where(grid["weekday"] == 0, 80, 60) + np.where(grid["band"] == "morning", 20, 0) \
        + np.where(grid["segment"] == "smb", 20, 0)
    for _ in range(n_sims):
        if overdispersed:  # beta-binomial, intra-cell correlation 0.03 -> phi ~ 1 + 0.03 * (n - 1) ~ 3
            rho = 0.03
            a = p * (1 - rho) / rho
            q = rng.beta(a, a * (1 - p) / p)
            opens = rng.binomial(sends, q)
        else:
            opens = rng.binomial(sends, p)
        cells = pd.DataFrame({"subject": grid["subject"], "weekday": grid["weekday"],
                              "hour": grid["band"].map(BAND_HOUR), "segment": grid["segment"],
                              "campaign": "c" + grid["c"].astype(str), "sends": sends, "opens": opens})
        m = fit_condition_model(cells, min_subject_sends=10**9)
        disp.append(m.dispersion)
        feature_p.append(m.test("subject_features").p_value)
        for col, v in truth.items():
            t = m.term(col)
            cover.append(t.ci_lower <= np.exp(v) <= t.ci_upper)
            se1 = t.std_err / np.sqrt(m.scale_used)
            cover_naive.append(abs(t.coef - v) <= 1.96 * se1)
    return np.array(cover).reshape(n_sims, -1), np.array(cover_naive), np.array(disp), np.array(feature_p)


def test_interval_coverage_dispersion_and_null_lr_test_binomial():
    cover, _, disp, feature_p = _coverage_sims(200, np.random.default_rng(2024))
    # Each planted coefficient: coverage of 200 nominal-95% intervals within a binomial band.
    lo, hi = stats.binom.ppf([0.0005, 0.9995], 200, 0.95) / 200
    for j in range(cover.shape[1]):
        assert lo <= cover[:, j].mean() <= min(hi, 1.0), cover.mean(axis=0)
    assert 0.9 < np.median(disp) < 1.1
    # Subject features have no effect: the LR p-values are uniform, not always significant.
    assert stats.kstest(feature_p, "uniform").pvalue > 1e-3
    assert np.mean(feature_p < 0.05) < 0.12


def test_overdispersion_is_estimated_and_used():
    cover, cover_naive, disp, _ = _coverage_sims(100, np.random.default_rng(99), overdispersed=True)
    assert np.median(disp) > 2.0
    assert 0.88 <= cover.mean() <= 0.99
    assert cover_naive.mean() < 0.85  # binomial standard errors would be far too narrow


def test_separated_level_is_reported_not_crashed():
    rows = simulate_rows(np.random.default_rng(1), 20000, camp_eff=[0.0, 0.3], **PLANT)
    rows.loc[rows["segment"] == "ent", "opens"] = 0
    m = fit_condition_model(to_cells(rows))
    assert "segment[ent]" in m.separated_columns
    assert m.term("segment[ent]").status == "separated" and m.term("segment[ent]").odds_ratio is None
    assert m.term("weekday[Tue]").status == "estimated"
    ent = [p for p in m.predicted_rates if p.segment == "ent"]
    assert all(p.status == "separated" and p.rate < 1e-6 and p.ci_lower is None for p in ent)
    assert m.top_conditions["ent"] == ()
    json.dumps(m.to_dict(), allow_nan=False)


def test_nested_subjects_and_campaigns_are_aliased_deterministically():
    rows = simulate_rows(np.random.default_rng(4), 20000, camp_eff=[0.0, 0.3, -0.2, 0.1], **PLANT)
    # An experiment: each campaign has its own two subjects (subject nested in campaign).
    names = np.array([["A1?", "A2"], ["B1 【x】", "B2"], ["C1", "C2 2"], ["D1", "D2 ?"]], dtype=object)
    c = rows["campaign"].str[1:].astype(int).to_numpy()
    rows["subject"] = names[c, np.random.default_rng(0).integers(0, 2, len(rows))]
    m1 = fit_condition_model(to_cells(rows), min_subject_sends=100)
    m2 = fit_condition_model(to_cells(rows).sample(frac=1, random_state=1), min_subject_sends=100)
    assert m1.aliased_columns == m2.aliased_columns and m1.aliased_columns
    assert m1.n_campaign_effects_dropped == 3  # campaigns are combinations of their subjects
    assert OTHER_SUBJECT not in m1.reference_levels["subject"]
    assert [t.coef for t in m1.terms] == pytest.approx([t.coef for t in m2.terms], abs=1e-8, nan_ok=True)
    subj = [e for e in m1.marginal_effects if e.factor == "subject"]
    assert len(subj) == 7 and all(e.status == "estimated" for e in subj)


def test_weekday_determined_by_campaign_is_not_estimable():
    rows = simulate_rows(np.random.default_rng(8), 20000, camp_eff=[0.0, 0.3, -0.2, 0.1, 0.0], **PLANT)
    rows["weekday"] = rows["campaign"].str[1:].astype(int)  # every campaign on a single weekday
    m = fit_condition_model(to_cells(rows))
    assert all(t.status == "aliased" for t in m.terms if t.term == "weekday")
    assert all(e.status == "not_estimable" for e in m.marginal_effects if e.factor == "weekday")
    assert m.test("weekday").p_value is None
    naive = fit_condition_model(to_cells(rows), campaign_effects=False)
    assert all(t.status == "estimated" for t in naive.terms if t.term == "weekday")


def test_meetings_model_and_json():
    rows = simulate_rows(np.random.default_rng(9), 30000, camp_eff=[0.0, 0.3], **PLANT)
    m = fit_condition_model(to_cells(rows), outcome="meetings")
    assert m.outcome == "meetings" and m.n_events == rows["meetings"].sum()
    d = m.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert "NaN" not in text
    assert set(d) >= {"terms", "marginal_effects", "predicted_rates", "top_conditions", "factor_tests",
                      "dispersion", "scale_used", "n_cells", "n_sends", "method"}
    assert m.dispersion > 0 and m.scale_used >= 1


def test_bad_input_messages():
    rows = simulate_rows(np.random.default_rng(1), 500, **PLANT)
    cells = to_cells(rows)
    with pytest.raises(ValueError, match="missing column"):
        fit_condition_model(cells.drop(columns="segment"))
    with pytest.raises(ValueError, match="exceeds sends"):
        fit_condition_model(cells.assign(opens=cells["sends"] + 1))
    with pytest.raises(ValueError, match="hour"):
        fit_condition_model(cells.assign(hour=25))
    with pytest.raises(InsufficientDataError):
        fit_condition_model(cells.assign(opens=0))
    with pytest.raises(InsufficientDataError):
        fit_condition_model(cells.iloc[:0])
    with pytest.raises(ValueError, match="interactions"):
        fit_condition_model(cells, interactions=(("segment", "subject"),))


# --------------------------------------------------------------------------------------------
# Estimability under aliasing
# --------------------------------------------------------------------------------------------

# Every segment is sent in the same four conditions, so weekday and hour band are aliased column
# by column (Thu <-> midday, Fri <-> evening); the condition x segment rates are still estimable.
ALIASED_PLANT = {"enterprise": {(1, 8): 0.40, (1, 15): 0.22, (3, 12): 0.25, (4, 17): 0.18},
                 "smb": {(1, 8): 0.20, (1, 15): 0.22, (3, 12): 0.38, (4, 17): 0.18}}
ALIASED_BAND = {8: "early", 15: "afternoon", 12: "midday", 17: "evening"}


def aliased_cells(seed=5, n=350):
    rng = np.random.default_rng(seed)
    rows = [dict(subject=f"subject {c}", weekday=wd, hour=h, segment=seg, campaign=c, sends=n,
                 opens=int(rng.binomial(n, p)), meetings=5)
            for seg, conds in ALIASED_PLANT.items() for (wd, h), p in conds.items() for c in ("news-1", "news-2")]
    return pd.DataFrame(rows)


def reparametrized_glm(cells):
    """Full-rank statsmodels fit of the same cells: one indicator per condition x segment (8) plus
    the campaign effect (the subject is nested in the campaign); scale = max(X2 / df, 1)."""
    cond = list(zip(cells["weekday"], cells["hour"], cells["segment"]))
    levels = sorted(set(cond))
    X = np.column_stack([[float(c == lv) for c in cond] for lv in levels]
                        + [(cells["campaign"] == "news-2").to_numpy(float)])
    y = (cells["opens"] / cells["sends"]).to_numpy()
    model = sm.GLM(y, X, family=sm.families.Binomial(), var_weights=cells["sends"].to_numpy(float))
    first = model.fit(tol=1e-13)
    phi = first.pearson_chi2 / first.df_resid
    return model.fit(tol=1e-13, scale=max(phi, 1.0)), levels


def test_estimable_conditions_are_predicted_despite_aliasing():
    cells = aliased_cells()
    m = fit_condition_model(cells)
    assert "hour_band[midday]" in m.aliased_columns and "hour_band[evening]" in m.aliased_columns
    assert m.term("weekday[Thu]").status == "estimated" and m.term("hour_band[midday]").status == "aliased"

    # The planted best condition of each segment is ranked first.
    best = {s: (top[0].weekday_name, top[0].hour_band) for s, top in m.top_conditions.items()}
    assert best == {"enterprise": ("Tue", "early"), "smb": ("Thu", "midday")}
    assert all(len(top) == 4 for top in m.top_conditions.values())

    # Reference: statsmodels on a full-rank reparametrisation, standardised over the (balanced)
    # campaign mix by statsmodels' own delta method (average=True), interval on the logit scale.
    ref, levels = reparametrized_glm(cells)
    z = stats.norm.ppf(0.975)
    pred = {(p.weekday, p.hour_band, p.segment): p for p in m.predicted_rates}
    for k, (wd, h, seg) in enumerate(levels):
        p = pred[(wd, ALIASED_BAND[h], seg)]
        assert p.status == "estimated" and p.rank is None
        obs = cells[(cells["weekday"] == wd) & (cells["hour"] == h) & (cells["segment"] == seg)]
        pooled = obs["opens"].sum() / obs["sends"].sum()
        exog = np.zeros((2, len(levels) + 1))
        exog[:, k] = 1.0
        exog[1, -1] = 1.0  # the two campaigns, equal sends
        sm_pred = ref.get_prediction(exog, which="mean", average=True)
        r = float(np.squeeze(sm_pred.predicted))
        se_logit = float(np.squeeze(sm_pred.se)) / (r * (1 - r))
        assert p.rate == pytest.approx(pooled, abs=1e-9)  # saturated for the condition x segment cells
        assert p.rate == pytest.approx(r, abs=1e-9)
        assert p.ci_lower == pytest.approx(1 / (1 + np.exp(-(np.log(r / (1 - r)) - z * se_logit))), abs=1e-6)
        assert p.ci_upper == pytest.approx(1 / (1 + np.exp(-(np.log(r / (1 - r)) + z * se_logit))), abs=1e-6)
    smb_best = m.top_conditions["smb"][0]
    assert smb_best.rate == pytest.approx(pred[(3, "midday", "smb")].rate, abs=0) and 0.34 < smb_best.rate < 0.42

    # Unobserved combinations need the arbitrary split between weekday and hour band.
    for wd, band in ((3, "early"), (1, "midday"), (4, "afternoon")):
        for seg in ALIASED_PLANT:
            p = pred[(wd, band, seg)]
            assert p.status == "not_estimable" and p.rate is None and p.ci_lower is None
    assert sum(p.status == "estimated" for p in m.predicted_rates) == 8

    # Marginal effects: averaging weekday or hour band over all cells needs unobserved combinations;
    # the segment effect only needs observed ones and matches a direct computation.
    assert all(e.status == "not_estimable" and e.effect_pp is None
               for e in m.marginal_effects if e.factor in ("weekday", "hour_band"))
    seg_eff = m.effect("segment", "smb")
    assert seg_eff.status == "estimated"
    cond = list(zip(cells["weekday"], cells["hour"]))
    n = cells["sends"].to_numpy(float)

    def exog_for(segment):
        X = np.zeros((len(cells), len(levels) + 1))
        for i, (wd, h) in enumerate(cond):
            X[i, levels.index((wd, h, segment))] = 1.0
        X[:, -1] = (cells["campaign"] == "news-2").to_numpy(float)
        return X

    Xs, Xe = exog_for("smb"), exog_for("enterprise")
    mu_s, mu_e = ref.predict(exog=Xs), ref.predict(exog=Xe)
    ame = np.dot(n, mu_s - mu_e) / n.sum()
    grad = ((Xs * (n * mu_s * (1 - mu_s))[:, None]).sum(0) - (Xe * (n * mu_e * (1 - mu_e))[:, None]).sum(0)) / n.sum()
    assert seg_eff.effect_pp == pytest.approx(100 * ame, abs=1e-7)
    assert seg_eff.std_err_pp == pytest.approx(100 * np.sqrt(grad @ ref.cov_params() @ grad), abs=1e-6)
    json.dumps(m.to_dict(), allow_nan=False)


def test_truly_non_estimable_condition_stays_not_estimable():
    # Only three conditions, and weekday and hour band are aliased (Thu <-> midday): Thu x early
    # is never observed, and its rate depends on how the Thu/midday effect is split.
    cells = aliased_cells()
    cells = cells[cells["hour"] != 17].reset_index(drop=True)
    m = fit_condition_model(cells, interactions=())
    assert "hour_band[midday]" in m.aliased_columns
    pred = {(p.weekday_name, p.hour_band, p.segment): p for p in m.predicted_rates}
    for seg in ALIASED_PLANT:
        assert pred[("Thu", "early", seg)].status == "not_estimable"
        assert pred[("Thu", "early", seg)].rate is None
        assert pred[("Thu", "midday", seg)].status == "estimated"
        assert pred[("Tue", "afternoon", seg)].status == "estimated"
    assert m.effect("weekday", "Thu").status == "not_estimable"
    assert m.effect("hour_band", "midday").status == "not_estimable"
    # Setting every cell to afternoon needs Thu afternoon (never sent): not estimable either.
    assert m.effect("hour_band", "afternoon").status == "not_estimable"
    # Every condition is observed in both segments: the segment effect is estimable.
    assert m.effect("segment", "smb").status == "estimated"
