"""Owners (sales reps) and their teams, as the CRM knows them.

Sends and conversions create an owner on first use, named after its id; `upsert_owners` gives
owners their real name and team. Teams are created by name.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.ingestion import _rows as v
from emailexp.models import Owner, Team, utcnow

OWNER_FIELDS = frozenset({"id", "name", "team"})


def owner_dict(owner: Owner, team_name: str | None) -> dict:
    return {"id": owner.external_id, "name": owner.name, "team": team_name}


def upsert_owners(session: Session, rows: list, *, field: str = "owners") -> list[dict]:
    """Create or update each owner `{"id", "name", "team"}` (team: a team name or null).

    The whole batch is checked first (ValidationError naming `owners[i].<field>`); a repeated id
    takes its last row. Returns the owners as stored, one per distinct id in order of first
    appearance. Flushes; never commits.
    """
    clean: dict[str, tuple[str, str | None]] = {}
    for i, row in enumerate(rows):
        v.check_keys(row, OWNER_FIELDS, field, i)
        where = "id"
        try:
            external_id = v.external_id(row.get("id"), max_len=120)
            where = "name"
            name = v.text(row.get("name"), max_len=200, required=True).strip()
            where = "team"
            team = v.text(row.get("team"), max_len=120)
        except v.Bad as bad:
            raise bad.at(field, i, where) from None
        clean[external_id] = (name, team.strip() if team else None)
    now = utcnow()
    team_ids = v.ensure_ids(session, Team, "name", {team for _, team in clean.values() if team},
                            lambda name: {"name": name, "created_at": now})
    owners = {o.external_id: o for o in session.scalars(
        sa.select(Owner).where(v.in_values(session, Owner.external_id, list(clean))))} if clean else {}
    for external_id, (name, team) in clean.items():
        owner = owners.get(external_id)
        if owner is None:
            owner = owners[external_id] = Owner(external_id=external_id, name=name, created_at=now)
            session.add(owner)
        owner.name = name
        owner.team_id = team_ids[team] if team else None
    session.flush()
    return [owner_dict(owners[external_id], team) for external_id, (_, team) in clean.items()]


def list_owners(session: Session) -> list[dict]:
    """Every owner with its team name, ordered by id."""
    query = (sa.select(Owner, Team.name).outerjoin(Team, Team.id == Owner.team_id).order_by(Owner.external_id))
    return [owner_dict(owner, team) for owner, team in session.execute(query)]

