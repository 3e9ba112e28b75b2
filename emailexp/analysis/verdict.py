"""Top-level experiment analysis and verdict.

``analyze_experiment`` combines per-arm rates, comparisons against the control with a
multiplicity correction, guardrails on downstream outcomes, a Bayesian summary, sequential
(always-valid) monitoring, a sample-ratio-mismatch check and a power plan into one frozen
``ExperimentAnalysis`` with a ``Verdict``.

Verdict rules (in order)
------------------------
1. ``invalid_srm``: the sends per arm do not match the planned weights (p < 0.001).
2. ``insufficient_data``: an arm has no sends, or no arm has any primary event yet.
3. ``ship``: the best variant that is significantly better than the control on the primary
   metric (two-sided, adjusted p < alpha, positive difference), passes every guardrail, and
   whose always-valid sequential test has crossed its boundary (when daily data were given),
   or -- fixed-horizon, no daily data -- every arm reached the planned sample size.
   ``ship`` with ``winner_key`` = the control when every variant is significantly worse or
   only better at the price of a failed guardrail (same gate).
4. ``no_difference``: the planned sample is reached and no variant is significantly better;
   reason ``equivalent_within_mde`` when every difference interval lies inside +-MDE,
   otherwise ``not_significant_at_planned_sample``.
5. ``keep_testing`` otherwise, with the additional sends per arm.

Guardrail: a variant significantly *worse* (adjusted p < alpha, negative difference) on the
meeting rate (and on the deal rate), both per send, is never recommended. Guardrail
p-values are adjusted across the variants with the same correction as the primary metric.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ._result import ToDictMixin
from .bayes import BayesianComparison, beta_binomial_best
from .compare import (
    CORRECTIONS,
    HomogeneityTest,
    ProportionComparison,
    adjust_p_values,
    chi_square_homogeneity,
    compare_proportions,
)
from .outcomes import AmountPerSend, amount_per_send
from .power import (
    MinimumDetectableEffect,
    SampleSizePlan,
    days_to_reach,
    minimum_detectable_effect,
    sample_size_per_arm,
)
from .proportions import ProportionEstimate, estimate_proportion
from .sequential import SequentialTest, _variance, sequential_difference_test, sequential_sends_needed
from .srm import SampleRatioTest, sample_ratio_test
from .types import ArmCounts, DailyCounts

__all__ = ["ArmSummary", "Verdict", "ExperimentAnalysis", "analyze_experiment", "compare_to_control"]

METRICS = ("open_rate", "meeting_rate")
VERDICT_KINDS = ("ship", "keep_testing", "no_difference", "invalid_srm", "insufficient_data")
_SUCCESS_FIELD = {"open_rate": "opens", "meeting_rate": "meetings", "deal_rate": "deals"}
_GUARDRAIL_CODE = {"meeting_rate": "guardrail_meetings_worse", "deal_rate": "guardrail_deals_worse"}


@dataclass(frozen=True)
class ArmSummary(ToDictMixin):
    """Per-arm rates per send (0..1, Wilson intervals) and deal amount per send."""

    key: str
    is_control: bool
    planned_weight: float
    sends: int
    open_rate: ProportionEstimate
    meeting_rate: ProportionEstimate
    deal_rate: ProportionEstimate
    deal_amount_per_send: AmountPerSend


@dataclass(frozen=True)
class Verdict(ToDictMixin):
    """What to do now. ``reasons`` are machine-readable codes, ``code`` or ``code:ARM_KEY``;
    numbers the message quotes are in ``details``. ``message`` is one English sentence.

    ``additional_sends_needed`` maps arm key -> approximate further sends for that arm
    (0 when reached; empty when it cannot be computed). ``days_remaining`` uses the
    ``sends_per_day`` given to ``analyze_experiment`` (None if not given).
    """

    kind: str
    winner_key: str | None
    reasons: tuple[str, ...]
    message: str
    additional_sends_needed: dict[str, int] = field(default_factory=dict)
    days_remaining: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentAnalysis(ToDictMixin):
    """Everything the service shows about one experiment; ``verdict`` is the decision."""

    metric: str
    alpha: float
    power: float
    correction: str
    mde_relative: float
    control_key: str
    arms: tuple[ArmSummary, ...]
    comparisons: tuple[ProportionComparison, ...]
    guardrails: tuple[ProportionComparison, ...]
    homogeneity: HomogeneityTest | None
    bayesian: BayesianComparison
    sequential: tuple[SequentialTest, ...]
    srm: SampleRatioTest
    sample_size: SampleSizePlan | None
    current_mde: tuple[MinimumDetectableEffect, ...]
    verdict: Verdict
    assumptions: tuple[str, ...]


def compare_to_control(
    arms: Sequence[ArmCounts],
    control_key: str,
    *,
    metric: str = "open_rate",
    alpha: float = 0.05,
    correction: str = "holm",
) -> tuple[ProportionComparison, ...]:
    """Every variant vs the control on ``metric`` ("open_rate", "meeting_rate" or
    "deal_rate", all per send); p-values adjusted across these comparisons with
    ``correction`` ("holm" family-wise, "bh" false discovery rate, or "none")."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    attr = _SUCCESS_FIELD[metric]
    control = next(a for a in arms if a.key == control_key)
    raw = [
        compare_proportions(
            getattr(a, attr), a.sends, getattr(control, attr), control.sends,
            alpha=alpha, metric=metric, variant_key=a.key, control_key=control_key,
        )
        for a in arms
        if a.key != control_key
    ]
    adjusted = adjust_p_values([c.p_value for c in raw], correction=correction)
    return tuple(
        dataclasses.replace(
            c, p_value_adjusted=p, correction=correction, significant=p is not None and p < alpha
        )
        for c, p in zip(raw, adjusted)
    )


def _pick_control(arms: Sequence[ArmCounts]) -> str:
    controls = [a.key for a in arms if a.is_control]
    if len(controls) > 1:
        raise ValueError(f"exactly one arm may have is_control=True, got {controls}")
    return controls[0] if controls else arms[0].key


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def analyze_experiment(
    arms: Sequence[ArmCounts],
    daily: Sequence[DailyCounts] = (),
    *,
    metric: str = "open_rate",
    alpha: float = 0.05,
    power: float = 0.8,
    correction: str = "holm",
    mde_relative: float = 0.10,
    prior: tuple[float, float] = (1.0, 1.0),
    sends_per_day: float | None = None,
    srm_threshold: float = 0.001,
    mixing_sd: float | None = None,
) -> ExperimentAnalysis:
    """Analyse an A/B(/n) e-mail experiment from aggregated counts.

    ``metric`` is the primary metric, a rate per send. The control is the arm with
    ``is_control=True`` (or the first arm if none is marked). ``alpha`` is the two-sided
    level after ``correction`` across the comparisons vs control. ``mde_relative`` is the
    minimum relative lift worth detecting (0.10 = +10% of the control rate); the sample
    size is planned with Bonferroni over the variants (conservative w.r.t. Holm).
    ``daily`` (per-day increments of sends/opens) enables always-valid sequential
    monitoring of the open rate, with mixing sd ``mixing_sd`` (default: the absolute MDE).
    ``sends_per_day`` (all arms together) turns additional sends into days.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError("alpha and power must lie in (0, 1)")
    if not mde_relative > 0:
        raise ValueError(f"mde_relative must be positive, got {mde_relative!r}")
    arms = list(arms)
    if len(arms) < 2:
        raise ValueError("an experiment needs at least two arms (a control and a variant)")
    keys = [a.key for a in arms]
    if len(set(keys)) != len(keys):
        raise ValueError(f"arm keys must be unique, got {keys}")
    unknown = sorted({d.key for d in daily} - set(keys))
    if unknown:
        raise ValueError(f"daily counts refer to unknown arms {unknown}")
    control_key = _pick_control(arms)
    control = next(a for a in arms if a.key == control_key)
    variants = [a for a in arms if a.key != control_key]
    m = len(variants)
    attr = _SUCCESS_FIELD[metric]
    assumptions = [
        "each send is an independent Bernoulli trial; rates are per send (0..1)",
        "p-values and intervals are two-sided",
        f"multiplicity: {correction} across the {m} comparison(s) vs control",
        "difference interval: Newcombe hybrid score; lift interval: Katz log-ratio, 0.5 added to counts and sends when an arm has 0 events",
        "test: pooled two-proportion z test, Fisher's exact test when an expected count < 5",
        "no_difference's equivalence check uses the (1 - alpha) difference interval against +-MDE",
    ]
    if not any(a.is_control for a in arms):
        assumptions.append(f"no arm marked as control: using the first arm {control_key!r}")

    summaries = tuple(
        ArmSummary(
            key=a.key,
            is_control=a.key == control_key,
            planned_weight=a.planned_weight,
            sends=a.sends,
            open_rate=estimate_proportion(a.opens, a.sends, alpha=alpha),
            meeting_rate=estimate_proportion(a.meetings, a.sends, alpha=alpha),
            deal_rate=estimate_proportion(a.deals, a.sends, alpha=alpha),
            deal_amount_per_send=amount_per_send(
                a.deal_amount, a.sends, sum_of_squares=a.deal_amount_sq, alpha=alpha
            ),
        )
        for a in arms
    )
    comparisons = compare_to_control(arms, control_key, metric=metric, alpha=alpha, correction=correction)
    guardrail_metrics = [g for g in ("meeting_rate", "deal_rate") if g != metric]
    guardrails = tuple(
        c
        for g in guardrail_metrics
        for c in compare_to_control(arms, control_key, metric=g, alpha=alpha, correction=correction)
    )
    homogeneity = (
        chi_square_homogeneity(keys, [getattr(a, attr) for a in arms], [a.sends for a in arms], metric=metric)
        if len(arms) > 2
        else None
    )
    bayesian = beta_binomial_best(
        keys, [getattr(a, attr) for a in arms], [a.sends for a in arms], prior=prior, credible_level=1 - alpha,
        metric=metric,
    )
    srm = sample_ratio_test(keys, [a.sends for a in arms], [a.planned_weight for a in arms], threshold=srm_threshold)

    baseline = getattr(control, attr) / control.sends if control.sends else None
    plan: SampleSizePlan | None = None
    if baseline is not None and 0 < baseline < 1 and baseline * (1 + mde_relative) < 1:
        plan = sample_size_per_arm(baseline, mde_relative, relative=True, alpha=alpha, power=power, comparisons=m)
    current_mde = tuple(
        minimum_detectable_effect(baseline, control.sends, v.sends, alpha=alpha, power=power, comparisons=m)
        for v in variants
        if baseline is not None and 0 < baseline < 1
    )

    sequential: tuple[SequentialTest, ...] = ()
    tau = None
    if daily and metric == "open_rate":
        tau = mixing_sd if mixing_sd is not None else (plan.mde_absolute if plan else 0.01)
        sequential = tuple(
            sequential_difference_test(
                daily, control_key=control_key, variant_key=v.key, mixing_sd=tau, alpha=alpha, comparisons=m
            )
            for v in variants
        )
        assumptions.append(
            f"sequential: {sequential[0].method}, mixing sd {tau:g}, Bonferroni over {m} comparison(s)"
        )
        if mixing_sd is None:
            assumptions.append(
                "mixing sd defaulted to the absolute MDE at the observed control rate; "
                "fix it when the experiment starts for strict always-validity"
            )
    elif daily:
        assumptions.append("daily counts cover opens only: the meeting-rate verdict is fixed-horizon")
    else:
        assumptions.append("no daily data: fixed-horizon decision, requires the planned sample size")

    verdict = _decide(
        metric=metric,
        alpha=alpha,
        arms=arms,
        control=control,
        variants=variants,
        comparisons=comparisons,
        guardrails=guardrails,
        sequential=sequential,
        srm=srm,
        plan=plan,
        tau=tau,
        sends_per_day=sends_per_day,
    )
    return ExperimentAnalysis(
        metric=metric,
        alpha=alpha,
        power=power,
        correction=correction,
        mde_relative=mde_relative,
        control_key=control_key,
        arms=summaries,
        comparisons=comparisons,
        guardrails=guardrails,
        homogeneity=homogeneity,
        bayesian=bayesian,
        sequential=sequential,
        srm=srm,
        sample_size=plan,
        current_mde=current_mde,
        verdict=verdict,
        assumptions=tuple(assumptions),
    )


def _decide(
    *,
    metric: str,
    alpha: float,
    arms: list[ArmCounts],
    control: ArmCounts,
    variants: list[ArmCounts],
    comparisons: tuple[ProportionComparison, ...],
    guardrails: tuple[ProportionComparison, ...],
    sequential: tuple[SequentialTest, ...],
    srm: SampleRatioTest,
    plan: SampleSizePlan | None,
    tau: float | None,
    sends_per_day: float | None,
) -> Verdict:
    label = metric.replace("_", " ")
    weights = {a.key: a.planned_weight for a in arms}
    details: dict[str, Any] = {"metric": metric, "alpha": alpha}
    if plan is not None:
        details["planned_sends_per_arm"] = plan.sends_per_arm
        details["mde_absolute"] = plan.mde_absolute

    def additional_from_plan() -> dict[str, int]:
        if plan is None:
            return {}
        return {a.key: max(0, plan.sends_per_arm - a.sends) for a in arms}

    def verdict(kind, winner, reasons, message, extra=None) -> Verdict:
        extra = extra if extra is not None else additional_from_plan()
        days = days_to_reach(extra, weights, sends_per_day) if extra and sends_per_day else None
        return Verdict(kind, winner, tuple(reasons), message, extra, days, details)

    if srm.mismatch:
        details["srm_p_value"] = srm.p_value
        return verdict(
            "invalid_srm", None, ["srm_mismatch"],
            f"The sends per arm do not match the planned split (sample ratio mismatch, p = {srm.p_value:.2g}); "
            "fix the assignment before trusting any result.",
            {},
        )
    empty = [a.key for a in arms if a.sends == 0]
    attr = _SUCCESS_FIELD[metric]
    if empty:
        return verdict(
            "insufficient_data", None, [f"no_sends:{k}" for k in empty],
            f"No sends yet for {', '.join(empty)}.",
        )
    if sum(getattr(a, attr) for a in arms) == 0:
        return verdict("insufficient_data", None, ["no_events"], f"No arm has a {label} event yet.")

    reasons: list[str] = []
    if plan is None:
        reasons.append("cannot_plan_sample_size")
    planned_reached = plan is not None and all(a.sends >= plan.sends_per_arm for a in arms)
    seq_by_key = {s.variant_key: s for s in sequential}

    def gate(key: str) -> bool:
        if seq_by_key:
            return seq_by_key[key].crossed
        return planned_reached

    failed: dict[str, list[str]] = {}
    for g in guardrails:
        if g.significant and g.diff is not None and g.diff < 0:
            failed.setdefault(g.variant_key, []).append(f"{_GUARDRAIL_CODE[g.metric]}:{g.variant_key}")
    better = [c for c in comparisons if c.significant and c.diff is not None and c.diff > 0]
    worse = [c for c in comparisons if c.significant and c.diff is not None and c.diff < 0]
    for c in better:
        reasons.extend(failed.get(c.variant_key, []))
    eligible = [c for c in better if c.variant_key not in failed]
    ready = [c for c in eligible if gate(c.variant_key)]

    if ready:
        best = max(ready, key=lambda c: (c.variant_rate, -(c.p_value_adjusted or 1.0)))
        details.update(winner_diff=best.diff, winner_lift=best.lift, winner_p_value_adjusted=best.p_value_adjusted)
        reasons.append(f"significant_better:{best.variant_key}")
        reasons.append("sequential_boundary_crossed" if seq_by_key else "planned_sample_reached")
        lift = "n/a" if best.lift is None else f"{100 * best.lift:+.1f}%"
        return verdict(
            "ship", best.variant_key, reasons,
            f"Ship {best.variant_key}: its {label} is {_pct(best.variant_rate)} vs {_pct(best.control_rate)} "
            f"for the control ({lift}), significant after {best.correction} correction.",
            {a.key: 0 for a in arms},
        )
    if eligible:
        if seq_by_key:
            extra: dict[str, int] = {}
            for c in eligible:
                s = seq_by_key[c.variant_key]
                last = s.looks[-1] if s.looks else None
                reasons.append(f"sequential_not_crossed:{c.variant_key}")
                if last is None or last.diff is None:
                    continue
                var = float(_variance(last.control_opens, last.control_sends, last.variant_opens, last.variant_sends))
                need = sequential_sends_needed(
                    last.diff, var, min(last.control_sends, last.variant_sends), tau=s.mixing_sd,
                    alpha=s.alpha_per_comparison,
                )
                if need is not None:
                    for k, n in ((c.variant_key, last.variant_sends), (control.key, last.control_sends)):
                        extra[k] = max(extra.get(k, 0), int(math.ceil(max(0.0, need - n))))
            plan_extra = additional_from_plan()
            for k, v in plan_extra.items():
                extra[k] = max(extra.get(k, 0), v)
            return verdict(
                "keep_testing", None, reasons,
                f"{', '.join(c.variant_key for c in eligible)} looks better on {label}, but the always-valid "
                "sequential test has not crossed its boundary yet; keep testing.",
                extra,
            )
        reasons.append("planned_sample_not_reached")
        return verdict(
            "keep_testing", None, reasons,
            f"{', '.join(c.variant_key for c in eligible)} looks better on {label}, but a fixed-horizon test "
            "needs the planned sample size before it can be trusted; keep testing.",
        )
    # No recommendable variant better than control.
    kept = [c for c in better if c.variant_key in failed]
    if variants and len(worse) + len(kept) == len(variants) and all(gate(c.variant_key) for c in worse + kept):
        reasons.append("control_kept" if kept else "control_best")
        if kept:
            msg = (
                f"Keep the control {control.key}: {', '.join(c.variant_key for c in kept)} wins on {label} "
                "but is significantly worse on a downstream outcome (meetings or deals per send); "
                "see the guardrail reasons."
            )
        else:
            msg = f"Keep the control {control.key}: every variant is significantly worse on {label}."
        return verdict("ship", control.key, reasons, msg, {a.key: 0 for a in arms})
    reasons.extend(f"significant_worse:{c.variant_key}" for c in worse)
    note = ""
    if kept:
        parts = []
        for c in kept:
            worse_on = " and ".join(
                "meetings" if code.startswith("guardrail_meetings") else "deals" for code in failed[c.variant_key]
            )
            parts.append(f"{c.variant_key} is better on {label} but significantly worse on {worse_on} per send")
        note = "; " + "; ".join(parts) + ", so it is not recommended"
    if planned_reached:
        mde = plan.mde_absolute if plan else None
        within = mde is not None and all(
            c.diff_ci_lower is not None and c.diff_ci_lower > -mde and c.diff_ci_upper < mde
            for c in comparisons
            if c not in worse and c not in kept
        )
        reasons.append("equivalent_within_mde" if within else "not_significant_at_planned_sample")
        return verdict(
            "no_difference", None, reasons,
            f"No recommendable variant beats the control on {label} at the planned sample size"
            + (f" (the remaining differences are within +-{_pct(mde)})" if within else "")
            + note
            + (f"; {', '.join(c.variant_key for c in worse)} significantly worse than the control"
               if worse else "") + ".",
            {a.key: 0 for a in arms},
        )
    if plan is None:
        return verdict(
            "insufficient_data", None, reasons,
            f"The control's {label} is {_pct(getattr(control, attr) / control.sends)}, so the sample size "
            f"for a relative effect cannot be planned{note}; collect more data.",
            {},
        )
    reasons.append("planned_sample_not_reached")
    return verdict(
        "keep_testing", None, reasons,
        f"No recommendable variant is significantly better on {label} yet and the planned {plan.sends_per_arm} sends per arm "
        f"are not reached{note}; keep testing.",
    )
