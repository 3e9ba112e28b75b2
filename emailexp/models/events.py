"""Sends and what happened to them: opens, clicks, conversions."""
from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, BigIntPK, utcnow


class Verdict(enum.StrEnum):
    human = "human"
    machine = "machine"
    unknown = "unknown"


class ConversionKind(enum.StrEnum):
    meeting = "meeting"
    deal = "deal"


class Attribution(enum.StrEnum):
    explicit = "explicit"      # the client named the send_id
    window = "window"          # the recipient's latest send within the attribution window
    unattributed = "unattributed"


def sent_hour_of(sent_at: datetime) -> int:
    return int(sent_at.timestamp()) // 3600


def _sent_hour_default(context) -> int:
    return sent_hour_of(context.get_current_parameters()["sent_at"])


class Send(Base):
    """One e-mail to one recipient. `send_id` is the client's id and makes ingestion idempotent.

    `local_weekday` (0 = Monday) and `local_hour` are derived from `sent_at` in the experiment's
    timezone, or the workspace timezone for sends outside experiments. `first_open_at` and
    `first_human_open_at` cache the earliest open event of each kind (the events stay append-only
    in `open_events`); the open rate counts sends with a first human open.
    """

    __tablename__ = "sends"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    send_id: Mapped[str] = mapped_column(sa.String(200), unique=True)
    recipient_id: Mapped[int] = mapped_column(sa.ForeignKey("recipients.id"))
    experiment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("experiments.id"))
    variant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("variants.id"))
    subject: Mapped[str] = mapped_column(sa.String(500))
    segment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("segments.id"))
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("owners.id"))
    campaign: Mapped[str | None] = mapped_column(sa.String(200))
    sent_at: Mapped[datetime]
    # Whole hours since the Unix epoch (UTC) of sent_at: an integer bucket that reports group by
    # (and map to local days in Python) without parsing timestamps per row in the database.
    sent_hour: Mapped[int] = mapped_column(default=_sent_hour_default)
    local_weekday: Mapped[int] = mapped_column(sa.SmallInteger)
    local_hour: Mapped[int] = mapped_column(sa.SmallInteger)
    first_open_at: Mapped[datetime | None]
    first_human_open_at: Mapped[datetime | None]
    first_click_at: Mapped[datetime | None]
    payload_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    links: Mapped[list[SendLink]] = relationship(order_by="SendLink.position", lazy="raise")

    __table_args__ = (
        # Covering, in the experiment report's GROUP BY order: the report streams through this
        # index without touching the table or sorting (1M sends in well under a second on SQLite).
        sa.Index("ix_sends_experiment_report", "experiment_id", "variant_id", "segment_id", "sent_hour",
                 "first_open_at", "first_human_open_at"),
        # Covering, in the insights GROUP BY order (condition cells over all sends).
        sa.Index("ix_sends_conditions", "subject", "local_weekday", "local_hour", "segment_id", "experiment_id",
                 "campaign", "first_human_open_at"),
        sa.Index("ix_sends_recipient_sent_at", "recipient_id", "sent_at"),
        sa.Index("ix_sends_sent_at", "sent_at"),
        sa.Index("ix_sends_owner_sent_at", "owner_id", "sent_at"),
        # the KPI feed's incremental refresh finds what changed since its watermark through these
        sa.Index("ix_sends_created_at", "created_at"),
        sa.Index("ix_sends_first_human_open_at", "first_human_open_at"),
        sa.CheckConstraint("local_weekday between 0 and 6", name="local_weekday"),
        sa.CheckConstraint("local_hour between 0 and 23", name="local_hour"),
    )


class SendLink(Base):
    """A link registered with a send: the only place a click token may redirect to."""

    __tablename__ = "send_links"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    send_id: Mapped[int] = mapped_column(sa.ForeignKey("sends.id", ondelete="CASCADE"))
    position: Mapped[int]
    url: Mapped[str] = mapped_column(sa.Text)

    __table_args__ = (sa.UniqueConstraint("send_id", "position"),)


class OpenEvent(Base):
    """An append-only pixel hit. No raw IP: `ip_hash` is a keyed hash of the /24 (IPv4) or /48 (IPv6)."""

    __tablename__ = "open_events"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    send_id: Mapped[int] = mapped_column(sa.ForeignKey("sends.id", ondelete="CASCADE"), index=True)
    opened_at: Mapped[datetime]
    verdict: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.String(64))
    ua_family: Mapped[str] = mapped_column(sa.String(64))
    ip_hash: Mapped[str | None] = mapped_column(sa.String(32))


class ClickEvent(Base):
    __tablename__ = "click_events"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    send_id: Mapped[int] = mapped_column(sa.ForeignKey("sends.id", ondelete="CASCADE"), index=True)
    # indexed so deleting links (cascades, demo resets) does not scan every click per link
    link_id: Mapped[int] = mapped_column(sa.ForeignKey("send_links.id", ondelete="CASCADE"), index=True)
    clicked_at: Mapped[datetime] = mapped_column(index=True)   # KPI feed: human clicks since the watermark
    verdict: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.String(64))
    ua_family: Mapped[str] = mapped_column(sa.String(64))
    ip_hash: Mapped[str | None] = mapped_column(sa.String(32))


class Conversion(Base):
    """A meeting (商談) or deal (成約) from the CRM/SFA, attributed to a send.

    Attribution: the send named by the client (`explicit`), else the recipient's latest send at or
    before `occurred_at` within the experiment's attribution window (`window`), else none.
    """

    __tablename__ = "conversions"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    conversion_id: Mapped[str] = mapped_column(sa.String(200), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    recipient_id: Mapped[int] = mapped_column(sa.ForeignKey("recipients.id"), index=True)
    send_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sends.id"), index=True)
    attribution: Mapped[str] = mapped_column(sa.String(16))
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("owners.id"))
    amount: Mapped[Decimal | None] = mapped_column(sa.Numeric(16, 2))
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    payload_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)   # KPI feed watermark

    __table_args__ = (
        sa.CheckConstraint("kind in ('meeting', 'deal')", name="kind"),
        sa.CheckConstraint("amount is null or amount >= 0", name="amount_nonnegative"),
    )
