"""The experiment report: counts aggregated in the database, statistics from analysis/.

One scan of the experiment's sends grouped by (variant, segment, UTC hour) gives the totals,
the per-segment breakdown, the daily increments for sequential monitoring and the send rate;
conversions are grouped by variant (and segment) in two small queries. Nothing loads send,
open or conversion rows into Python.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.analysis import ArmCounts, DailyCounts, analyze_experiment
from emailexp.analysis.verdict import ExperimentAnalysis, compare_to_control
from emailexp.errors import NotFoundError, ValidationError
from emailexp.models import Conversion, Experiment, OpenEvent, Segment, Send, Variant

from .sql import whole_hours_between

OPEN_MODES = ("human", "all")
# Above this many sends the per-reason breakdown of open events (a join over all of them) is only
# computed on request.
QUALITY_REASONS_MAX_SENDS = 200_000


@dataclass(frozen=True)
class SegmentBreakdown:
    segment: str
    arms: tuple[ArmCounts, ...]
    comparisons: tuple  # ProportionComparison per variant vs control, adjusted within the segment


@dataclass(frozen=True)
class DataQuality:
    """What the open rate leaves out: opens classified as machine or unknown."""

    sends: int
    sends_opened_any: int
    sends_opened_human: int
    open_events: dict[str, int] | None       # verdict -> events (None: not computed, see below)
    machine_reasons: dict[str, int] | None   # reason -> machine/unknown events

    @property
    def machine_only_share(self) -> float | None:
        """Share of opened sends whose only opens were machine/unknown (excluded from the human rate)."""
        if not self.sends_opened_any:
            return None
        return (self.sends_opened_any - self.sends_opened_human) / self.sends_opened_any

    def to_dict(self) -> dict:
        return {"sends": self.sends, "sends_opened_any": self.sends_opened_any,
                "sends_opened_human": self.sends_opened_human, "machine_only_share": self.machine_only_share,
                "open_events": self.open_events, "machine_reasons": self.machine_reasons}


@dataclass(frozen=True)
class ExperimentReport:
    experiment_id: int
    name: str
    status: str
    timezone: str
    opens: str                              # "human" or "all"
    analysis: ExperimentAnalysis | None     # None when there are no sends yet
    arms: tuple[ArmCounts, ...]
    daily: tuple[DailyCounts, ...]
    segments: tuple[SegmentBreakdown, ...]
    sends_per_day: float | None
    quality: DataQuality | None
    first_send_at: datetime | None
    last_send_at: datetime | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "experiment_id": self.experiment_id,
            "name": self.name,
            "status": self.status,
            "timezone": self.timezone,
            "opens": self.opens,
            "first_send_at": self.first_send_at.isoformat() if self.first_send_at else None,
            "last_send_at": self.last_send_at.isoformat() if self.last_send_at else None,
            "sends_per_day": self.sends_per_day,
            "counts": [_arm_dict(a) for a in self.arms],
            "analysis": self.analysis.to_dict() if self.analysis else None,
            "verdict": self.analysis.verdict.to_dict() if self.analysis else
            {"kind": "insufficient_data", "winner_key": None, "reasons": ["no_sends"],
             "message": "No sends recorded for this experiment yet."},
            "segments": [
                {"segment": s.segment, "counts": [_arm_dict(a) for a in s.arms],
                 "comparisons": [c.to_dict() for c in s.comparisons]}
                for s in self.segments
            ],
            "segment_caveat": ("Per-segment comparisons are exploratory: p-values are adjusted across the "
                               "variants within each segment, not across segments; with several segments "
                               "some differences will look significant by chance."),
            "data_quality": self.quality.to_dict() if self.quality else None,
            "notes": list(self.notes),
        }


def _arm_dict(a: ArmCounts) -> dict:
    return {"key": a.key, "sends": a.sends, "opens": a.opens, "meetings": a.meetings, "deals": a.deals,
            "deal_amount": a.deal_amount, "planned_weight": a.planned_weight, "is_control": a.is_control}


def build_experiment_report(session: Session, experiment_id: int, *, opens: str = "human",
                            now: datetime | None = None, include_quality: bool | str = True,
                            correction: str = "holm") -> ExperimentReport:
    """Aggregate an experiment in the database and analyse it.

    `opens="human"` counts sends with a human open (the honest open rate); `"all"` counts any
    open, machine prefetches included, for comparison with what other tools report.
    """
    if opens not in OPEN_MODES:
        raise ValidationError(f"must be one of {', '.join(OPEN_MODES)}", field="opens")
    if correction not in ("holm", "bh"):
        raise ValidationError("must be holm or bh", field="correction")
    experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        raise NotFoundError(f"experiment {experiment_id} does not exist", field="id")
    now = now or datetime.now(UTC)
    variants = session.scalars(sa.select(Variant).where(Variant.experiment_id == experiment_id)
                               .order_by(Variant.id)).all()
    by_id = {v.id: v for v in variants}
    tz = ZoneInfo(experiment.timezone)
    # One pass over the covering index ix_sends_experiment_report, in its order.
    rows = session.execute(
        sa.select(Send.variant_id, Send.segment_id, Send.sent_hour, sa.func.count().label("sends"),
                  sa.func.count(Send.first_human_open_at).label("human"),
                  sa.func.count(Send.first_open_at).label("any"))
        .where(Send.experiment_id == experiment_id)
        .group_by(Send.variant_id, Send.segment_id, Send.sent_hour)
    ).all()

    segment_keys = dict(session.execute(sa.select(Segment.id, Segment.key)).all())
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    seg_totals: dict[tuple[int | None, int], list[int]] = defaultdict(lambda: [0, 0])
    daily_acc: dict[tuple[date, int], list[int]] = defaultdict(lambda: [0, 0])
    first_hour = last_hour = None
    recent_sends = 0
    recent_start = now - timedelta(days=7)
    opened_any = opened_human = total_sends = 0
    local_day: dict[int, date] = {}
    for variant_id, segment_id, sent_hour, n, human, any_open in rows:
        total_sends += n
        opened_any += any_open
        opened_human += human
        if variant_id not in by_id:
            continue
        opened = human if opens == "human" else any_open
        hour_utc = datetime.fromtimestamp(sent_hour * 3600, UTC)
        if sent_hour not in local_day:
            local_day[sent_hour] = hour_utc.astimezone(tz).date()
        totals[variant_id][0] += n
        totals[variant_id][1] += opened
        seg_totals[(segment_id, variant_id)][0] += n
        seg_totals[(segment_id, variant_id)][1] += opened
        daily_acc[(local_day[sent_hour], variant_id)][0] += n
        daily_acc[(local_day[sent_hour], variant_id)][1] += opened
        first_hour = hour_utc if first_hour is None or hour_utc < first_hour else first_hour
        last_hour = hour_utc if last_hour is None or hour_utc > last_hour else last_hour
        if hour_utc >= recent_start:
            recent_sends += n

    conv = _conversion_counts(session, experiment_id)
    arms = tuple(
        ArmCounts(key=v.key, sends=totals[v.id][0], opens=totals[v.id][1],
                  meetings=conv[(v.id, ALL_SEGMENTS, "meeting")][0],
                  deals=conv[(v.id, ALL_SEGMENTS, "deal")][0],
                  deal_amount=conv[(v.id, ALL_SEGMENTS, "deal")][1],
                  deal_amount_sq=conv[(v.id, ALL_SEGMENTS, "deal")][2],
                  planned_weight=v.weight, is_control=v.is_control)
        for v in variants
    )
    daily = tuple(
        DailyCounts(day=d, key=by_id[vid].key, sends=c[0], opens=c[1])
        for (d, vid), c in sorted(daily_acc.items())
    )
    notes: list[str] = []
    sends_per_day = None
    if experiment.status == "running" and recent_sends:
        sends_per_day = recent_sends / 7.0
    elif experiment.status != "running":
        notes.append(f"experiment is {experiment.status}: no further sends are expected")

    analysis = None
    if len(variants) >= 2 and sum(a.sends for a in arms) > 0:
        mde_relative = experiment.mde_relative or 0.10
        # The always-valid guarantee needs a mixing sd fixed before the data: the planned absolute
        # MDE when the experiment was planned with a baseline; otherwise analysis/ derives it from
        # the observed control rate, and says so in its assumptions.
        mixing_sd = experiment.baseline_rate * mde_relative if experiment.baseline_rate else None
        analysis = analyze_experiment(
            arms, daily, metric=experiment.primary_metric, alpha=experiment.alpha, power=experiment.power,
            correction=correction, mde_relative=mde_relative, sends_per_day=sends_per_day,
            mixing_sd=mixing_sd)
    elif len(variants) < 2:
        notes.append("an experiment needs at least two variants to be analysed")

    segments = _segment_breakdown(variants, seg_totals, conv, segment_keys, experiment, correction)
    quality = None
    if include_quality:
        reasons = include_quality == "full" or total_sends <= QUALITY_REASONS_MAX_SENDS
        quality = _data_quality(session, experiment_id, total_sends, opened_any, opened_human, reasons)
    return ExperimentReport(
        experiment_id=experiment.id, name=experiment.name, status=experiment.status,
        timezone=experiment.timezone, opens=opens, analysis=analysis, arms=arms, daily=daily,
        segments=segments, sends_per_day=sends_per_day, quality=quality,
        first_send_at=first_hour, last_send_at=last_hour, notes=tuple(notes))


ALL_SEGMENTS = "*"


def _conversion_counts(session: Session, experiment_id: int) -> dict:
    """(variant_id, segment_id or ALL_SEGMENTS, kind) -> (sends with >= 1 conversion, sum amount, sum amount^2).

    Amounts are summed per send first, so the squares are of the per-send amount.
    """
    per_send = (
        sa.select(Send.variant_id, Send.segment_id, Conversion.kind, Conversion.send_id,
                  sa.func.coalesce(sa.func.sum(Conversion.amount), 0).label("amount"))
        .join(Send, Send.id == Conversion.send_id)
        .where(Send.experiment_id == experiment_id)
        .group_by(Send.variant_id, Send.segment_id, Conversion.kind, Conversion.send_id)
        .subquery()
    )
    amount = sa.cast(per_send.c.amount, sa.Float)
    rows = session.execute(
        sa.select(per_send.c.variant_id, per_send.c.segment_id, per_send.c.kind, sa.func.count(),
                  sa.func.sum(amount), sa.func.sum(amount * amount))
        .group_by(per_send.c.variant_id, per_send.c.segment_id, per_send.c.kind)
    ).all()
    out: dict = defaultdict(lambda: (0, 0.0, 0.0))
    for variant_id, segment_id, kind, n, total, total_sq in rows:
        for key in ((variant_id, segment_id, kind), (variant_id, ALL_SEGMENTS, kind)):
            prev = out[key]
            out[key] = (prev[0] + n, prev[1] + float(total or 0), prev[2] + float(total_sq or 0))
    return out


def _segment_breakdown(variants, seg_totals, conv, segment_keys, experiment, correction):
    if len(variants) < 2:
        return ()
    control = next((v for v in variants if v.is_control), variants[0])
    out = []
    for segment_id in sorted({s for (s, _v) in seg_totals}, key=lambda s: (s is None, segment_keys.get(s, ""))):
        if segment_id is None:
            continue
        arms = tuple(
            ArmCounts(key=v.key, sends=seg_totals[(segment_id, v.id)][0], opens=seg_totals[(segment_id, v.id)][1],
                      meetings=conv[(v.id, segment_id, "meeting")][0],
                      deals=conv[(v.id, segment_id, "deal")][0],
                      deal_amount=conv[(v.id, segment_id, "deal")][1],
                      planned_weight=v.weight, is_control=v.id == control.id)
            for v in variants
        )
        if any(a.sends == 0 for a in arms):
            comparisons = ()
        else:
            comparisons = compare_to_control(arms, control.key, metric=experiment.primary_metric,
                                             alpha=experiment.alpha, correction=correction)
        out.append(SegmentBreakdown(segment=segment_keys.get(segment_id, str(segment_id)), arms=arms,
                                    comparisons=comparisons))
    return tuple(out)


def _data_quality(session: Session, experiment_id: int, sends: int, opened_any: int, opened_human: int,
                  with_reasons: bool) -> DataQuality:
    """Counts from the report's scan; the breakdown of open events by verdict and reason needs a
    join over every open event of the experiment, so it is skipped for large experiments unless
    asked for (`include_quality="full"`)."""
    verdicts: dict[str, int] = defaultdict(int)
    reasons: dict[str, int] = defaultdict(int)
    if with_reasons:
        event_rows = session.execute(
            sa.select(OpenEvent.verdict, OpenEvent.reason, sa.func.count())
            .join(Send, Send.id == OpenEvent.send_id)
            .where(Send.experiment_id == experiment_id)
            .group_by(OpenEvent.verdict, OpenEvent.reason)
        ).all()
        for verdict, reason, n in event_rows:
            verdicts[verdict] += n
            if verdict != "human":
                reasons[reason] += n
    return DataQuality(sends=sends, sends_opened_any=opened_any, sends_opened_human=opened_human,
                       open_events=dict(verdicts) if with_reasons else None,
                       machine_reasons=dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
                       if with_reasons else None)


def opens_by_hours_since_send(session: Session, experiment_id: int, *, max_hours: int = 72,
                              opens: str = "human") -> dict[str, list[int]]:
    """Histogram of the first (human) open's delay after the send, in whole hours, per variant key.

    The last bucket collects everything at or beyond `max_hours`.
    """
    opened_col = Send.first_human_open_at if opens == "human" else Send.first_open_at
    delay = whole_hours_between(session, Send.sent_at, opened_col)
    bucket = sa.case((delay >= max_hours, max_hours), (delay < 0, 0), else_=delay).label("bucket")
    rows = session.execute(
        sa.select(Variant.key, bucket, sa.func.count())
        .join(Variant, Variant.id == Send.variant_id)
        .where(Send.experiment_id == experiment_id, opened_col.is_not(None))
        .group_by(Variant.key, bucket)
    ).all()
    out: dict[str, list[int]] = defaultdict(lambda: [0] * (max_hours + 1))
    for key, b, n in rows:
        out[key][int(b)] += n
    return dict(out)


def user_agent_families(session: Session, experiment_id: int, limit: int = 8) -> list[tuple[str, str, int]]:
    """(ua_family, verdict, open events) of the experiment's opens, most frequent first (GROUP BY)."""
    rows = session.execute(
        sa.select(OpenEvent.ua_family, OpenEvent.verdict, sa.func.count().label("n"))
        .join(Send, Send.id == OpenEvent.send_id)
        .where(Send.experiment_id == experiment_id)
        .group_by(OpenEvent.ua_family, OpenEvent.verdict)
        .order_by(sa.desc("n"))
        .limit(limit)
    ).all()
    return [(ua or "", verdict, n) for ua, verdict, n in rows]
