"""Who sends and who receives: teams, owners (sales reps), segments, recipients."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, utcnow


class Team(Base):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    owners: Mapped[list[Owner]] = relationship(back_populates="team")


class Owner(Base):
    """A sales rep who sends e-mails; individual KPIs are kept per owner."""

    __tablename__ = "owners"
    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(sa.String(120), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    team_id: Mapped[int | None] = mapped_column(sa.ForeignKey("teams.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    team: Mapped[Team | None] = relationship(back_populates="owners")


class Segment(Base):
    __tablename__ = "segments"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(120), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Recipient(Base):
    """A lead, known only by the client's external id: no e-mail address is stored."""

    __tablename__ = "recipients"
    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(sa.String(200), unique=True)
    segment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("segments.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
