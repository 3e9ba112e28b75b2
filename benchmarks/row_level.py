"""The row-level reference for benchmarks/analysis.py: one row per send, statsmodels Logit.

The design matrix is rebuilt independently from the column names that the aggregated model
reports as estimated (`weekday[Tue]`, `hour_band[early]`, `segment[smb]:hour_band[midday]`,
`subject[...]`, `length_band[...]`, `has_question`, ...), from the raw send rows.
"""
from __future__ import annotations

import re
import time
import unicodedata

import numpy as np
import pandas as pd
import sqlalchemy as sa
import statsmodels.api as sm

from emailexp.analysis.hour_bands import hour_bands
from emailexp.analysis.regression import WEEKDAY_NAMES
from emailexp.analysis.subject_features import subject_features
from emailexp.models import Segment, Send

TERM = re.compile(r"^(\w+)\[(.*)\]$")


def load_rows(session) -> pd.DataFrame:
    rows = session.execute(
        sa.select(Send.subject, Send.local_weekday, Send.local_hour, Segment.key, Send.experiment_id, Send.campaign,
                  Send.first_human_open_at.is_not(None))
        .outerjoin(Segment, Segment.id == Send.segment_id)
    ).all()
    df = pd.DataFrame(rows, columns=["subject", "weekday", "hour", "segment", "experiment_id", "campaign", "opened"])
    df["campaign"] = [f"experiment:{int(e)}" if e == e and e is not None else c
                      for e, c in zip(df["experiment_id"], df["campaign"])]
    df["weekday"] = [WEEKDAY_NAMES[d] for d in df["weekday"]]
    df["hour_band"] = hour_bands(df["hour"].to_numpy())
    feats = {s: subject_features(s) for s in df["subject"].unique()}
    for name in ("has_question", "has_number", "has_brackets", "has_personalization", "has_emoji"):
        df[name] = df["subject"].map(lambda s, n=name: float(getattr(feats[s], n)))
    df["length_band"] = df["subject"].map(lambda s: feats[s].length_band)
    return df


def _indicator(df: pd.DataFrame, part: str) -> np.ndarray:
    m = TERM.match(part)
    if m:
        factor, level = m.groups()
        return (df[factor].astype(str) == unicodedata.normalize("NFC", level)).to_numpy(float)
    return df[part].to_numpy(float)


def row_level_comparison(session, timezone: str, insights: dict) -> tuple[float, float]:
    """(seconds for the row-level Logit fit, max |coefficient difference| vs the aggregated fit)."""
    model = insights["model"]
    terms = [t for t in model["terms"] if t["status"] == "estimated"]
    df = load_rows(session)
    X = {"Intercept": np.ones(len(df))}
    # Campaign fixed effects are not displayed: rebuild them from the reference and the dropped list.
    dropped = set(model["aliased_columns"]) | set(model["separated_columns"])
    for label in sorted(set(df["campaign"]) - {model["reference_levels"].get("campaign")}):
        column = f"campaign[{label}]"
        if column not in dropped:
            X[column] = (df["campaign"] == label).to_numpy(float)
    for t in terms:
        col = np.ones(len(df))
        for part in t["column"].split(":"):
            col = col * _indicator(df, part)
        X[t["column"]] = col
    X = pd.DataFrame(X)
    y = df["opened"].to_numpy(float)
    t0 = time.perf_counter()
    fit = sm.Logit(y, X).fit(disp=0, tol=1e-10, maxiter=100)
    seconds = time.perf_counter() - t0
    diff = max(abs(fit.params[t["column"]] - t["coef"]) for t in terms)
    return seconds, float(diff)
