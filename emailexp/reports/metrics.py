"""Per-variant counts of an experiment, aggregated in the database.

All counts are per variant of the experiment (sends with the experiment's id and that variant):

sends               sends
unique_opens        sends with any open (`sends.first_open_at IS NOT NULL`)
unique_human_opens  sends with an open judged human (`sends.first_human_open_at IS NOT NULL`);
                    the numerator of the open rate
total_opens         open events of all verdicts (a send opened three times counts three)
clicks              click events of all verdicts
meetings, deals     sends with at least one attributed conversion of that kind (explicit or window
                    attribution), i.e. COUNT(DISTINCT send) — a rate per send, not a count of events
deal_amount         SUM(amount) of every attributed deal conversion (all of them, not one per send);
                    0 when there is none
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.errors import NotFoundError
from emailexp.models import (Attribution, ClickEvent, Conversion, ConversionKind, Experiment, OpenEvent, Send,
                             Variant)

MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class VariantMetrics:
    key: str
    sends: int
    unique_opens: int
    unique_human_opens: int
    total_opens: int
    clicks: int
    meetings: int
    deals: int
    deal_amount: Decimal


@dataclass(frozen=True)
class ExperimentMetrics:
    experiment_id: int
    variants: tuple[VariantMetrics, ...]

    def variant(self, key: str) -> VariantMetrics:
        return next(v for v in self.variants if v.key == key)


def experiment_metrics(session: Session, experiment_id: int) -> ExperimentMetrics:
    """Counts per variant (in variant order, zeros for a variant without sends) in four GROUP BY queries."""
    if isinstance(experiment_id, bool) or not isinstance(experiment_id, int) or not 1 <= experiment_id <= MAX_ID:
        raise NotFoundError(f"experiment {experiment_id} does not exist", field="experiment_id")
    if session.get(Experiment, experiment_id) is None:
        raise NotFoundError(f"experiment {experiment_id} does not exist", field="experiment_id")
    variants = session.execute(
        sa.select(Variant.id, Variant.key).where(Variant.experiment_id == experiment_id).order_by(Variant.id)).all()

    in_experiment = sa.and_(Send.experiment_id == experiment_id, Send.variant_id.is_not(None))
    send_counts = {row.variant_id: row for row in session.execute(
        sa.select(Send.variant_id,
                  sa.func.count().label("sends"),
                  sa.func.count(Send.first_open_at).label("unique_opens"),
                  sa.func.count(Send.first_human_open_at).label("unique_human_opens"))
        .where(in_experiment).group_by(Send.variant_id))}
    total_opens = dict(session.execute(
        sa.select(Send.variant_id, sa.func.count(OpenEvent.id))
        .join(Send, OpenEvent.send_id == Send.id).where(in_experiment).group_by(Send.variant_id)).all())
    clicks = dict(session.execute(
        sa.select(Send.variant_id, sa.func.count(ClickEvent.id))
        .join(Send, ClickEvent.send_id == Send.id).where(in_experiment).group_by(Send.variant_id)).all())
    conversions: dict[tuple[int, str], tuple[int, Decimal | None]] = {
        (row.variant_id, row.kind): (row.sends, row.amount) for row in session.execute(
            sa.select(Send.variant_id, Conversion.kind,
                      sa.func.count(sa.distinct(Conversion.send_id)).label("sends"),
                      sa.func.sum(Conversion.amount).label("amount"))
            .join(Send, Conversion.send_id == Send.id)
            .where(in_experiment, Conversion.attribution != Attribution.unattributed.value)
            .group_by(Send.variant_id, Conversion.kind))}

    out = []
    for variant_id, key in variants:
        counts = send_counts.get(variant_id)
        meetings = conversions.get((variant_id, ConversionKind.meeting.value), (0, None))
        deals = conversions.get((variant_id, ConversionKind.deal.value), (0, None))
        out.append(VariantMetrics(
            key=key,
            sends=counts.sends if counts else 0,
            unique_opens=counts.unique_opens if counts else 0,
            unique_human_opens=counts.unique_human_opens if counts else 0,
            total_opens=total_opens.get(variant_id, 0),
            clicks=clicks.get(variant_id, 0),
            meetings=meetings[0],
            deals=deals[0],
            deal_amount=Decimal(deals[1] if deals[1] is not None else 0),
        ))
    return ExperimentMetrics(experiment_id=experiment_id, variants=tuple(out))


def metrics_to_dict(metrics: ExperimentMetrics) -> dict:
    """The API representation; deal_amount is a JSON number (an integer when it has no fraction)."""
    def amount(value: Decimal):
        return int(value) if value == value.to_integral_value() else float(value)

    return {
        "experiment_id": metrics.experiment_id,
        "variants": [
            {"key": v.key, "sends": v.sends, "unique_opens": v.unique_opens,
             "unique_human_opens": v.unique_human_opens, "total_opens": v.total_opens, "clicks": v.clicks,
             "meetings": v.meetings, "deals": v.deals, "deal_amount": amount(v.deal_amount)}
            for v in metrics.variants
        ],
    }
