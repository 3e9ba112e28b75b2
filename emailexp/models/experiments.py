"""Experiments and their variants."""
from __future__ import annotations

import enum
from datetime import datetime, time

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, utcnow


class ExperimentStatus(enum.StrEnum):
    draft = "draft"
    running = "running"
    stopped = "stopped"


class PrimaryMetric(enum.StrEnum):
    open_rate = "open_rate"
    meeting_rate = "meeting_rate"


class Experiment(Base):
    __tablename__ = "experiments"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    hypothesis: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[str] = mapped_column(sa.String(16), default=ExperimentStatus.draft.value, index=True)
    timezone: Mapped[str] = mapped_column(sa.String(64))
    primary_metric: Mapped[str] = mapped_column(sa.String(32), default=PrimaryMetric.open_rate.value)
    # Guardrail metrics that must not get significantly worse (JSON list of metric names).
    guardrails: Mapped[list] = mapped_column(sa.JSON, default=lambda: ["meeting_rate"])
    attribution_window_days: Mapped[int] = mapped_column(default=14)
    # Planning inputs kept with the experiment so reports can show the plan next to the data.
    baseline_rate: Mapped[float | None] = mapped_column(sa.Float)
    mde_relative: Mapped[float | None] = mapped_column(sa.Float)
    alpha: Mapped[float] = mapped_column(sa.Float, default=0.05)
    power: Mapped[float] = mapped_column(sa.Float, default=0.8)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]

    variants: Mapped[list[Variant]] = relationship(
        back_populates="experiment", order_by="Variant.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        sa.CheckConstraint("status in ('draft', 'running', 'stopped')", name="status"),
        sa.CheckConstraint("attribution_window_days between 1 and 365", name="attribution_window"),
    )

    @property
    def control(self) -> Variant | None:
        return next((v for v in self.variants if v.is_control), None)


class Variant(Base):
    __tablename__ = "variants"
    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(sa.String(64))
    subject: Mapped[str] = mapped_column(sa.String(500))
    # 0 = Monday ... 6 = Sunday, in the experiment's timezone; None = any day.
    send_weekday: Mapped[int | None] = mapped_column(sa.SmallInteger)
    send_time: Mapped[time | None] = mapped_column(sa.Time)
    segment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("segments.id"))
    weight: Mapped[float] = mapped_column(sa.Float, default=1.0)
    is_control: Mapped[bool] = mapped_column(default=False)

    experiment: Mapped[Experiment] = relationship(back_populates="variants")

    __table_args__ = (
        sa.UniqueConstraint("experiment_id", "key"),
        sa.CheckConstraint("weight > 0", name="weight_positive"),
        sa.CheckConstraint("send_weekday is null or send_weekday between 0 and 6", name="weekday"),
    )
