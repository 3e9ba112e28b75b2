"""Values and targets by natural key: parsing/validating rows (API and CSV), idempotent imports, listing.

A row names its KPI by key, its scope as `scope` (workspace | team | owner) plus `scope_id` (the team's
name or the owner's id as sent in PUT /api/v1/owners; none for workspace), and its period as `period`
(day | iso_week | month | quarter) plus `period_start` (YYYY-MM-DD, the first day of the period: a Monday
for iso_week, the 1st for month, 1 Jan/Apr/Jul/Oct for quarter). Ratios are fractions (0.25 = 25 %).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from emailexp.errors import ValidationError
from emailexp.kpi.periods import PERIOD_TYPES, is_period_start, upsert_targets, upsert_values
from emailexp.models import Owner, Team, utcnow
from emailexp.models.kpi import WORKSPACE_SCOPE_ID, KpiDefinition, KpiTarget, KpiValue

MAX_ROWS = 10_000
SCOPES = ("workspace", "team", "owner")


class ScopeNames:
    """Team names and owner ids <-> database ids, loaded once per request."""

    def __init__(self, session: Session):
        self.team_ids = dict(session.execute(sa.select(Team.name, Team.id)).all())
        self.owner_ids = dict(session.execute(sa.select(Owner.external_id, Owner.id)).all())
        self.team_names = {v: k for k, v in self.team_ids.items()}
        self.owner_names = {v: k for k, v in self.owner_ids.items()}

    def resolve(self, scope: str, name, *, field: str, index: int | None = None) -> int:
        if scope == "workspace":
            if name not in (None, ""):
                raise ValidationError("scope_id must be empty for the workspace scope", field=field, index=index)
            return WORKSPACE_SCOPE_ID
        if not isinstance(name, str) or not name:
            raise ValidationError(f"scope_id is required for scope {scope!r} (the team's name or the owner's id)",
                                  field=field, index=index)
        ids = self.team_ids if scope == "team" else self.owner_ids
        if name not in ids:
            raise ValidationError(f"unknown {scope} {name!r}; create it first with PUT /api/v1/owners",
                                  field=field, index=index)
        return ids[name]

    def name(self, scope: str, scope_id: int) -> str | None:
        if scope == "team":
            return self.team_names.get(scope_id)
        if scope == "owner":
            return self.owner_names.get(scope_id)
        return None


def parse_date(value, *, field: str, index: int | None = None) -> date:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError("must be a date YYYY-MM-DD", field=field, index=index)


def _number(row: dict, name: str, prefix: str, index: int | None, *, required: bool = True,
            minimum: float | None = 0.0, integer: bool = False) -> float | None:
    value = row.get(name)
    field = f"{prefix}.{name}"
    if value is None or value == "":
        if required:
            raise ValidationError(f"{name} is required", field=field, index=index)
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValidationError(f"{name} must be a number, not {value!r}", field=field, index=index) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a finite number", field=field, index=index)
    if minimum is not None and value < minimum:
        raise ValidationError(f"{name} must be >= {minimum:g}", field=field, index=index)
    if integer and value != int(value):
        raise ValidationError(f"{name} counts whole events: give an integer", field=field, index=index)
    return float(value)


@dataclass
class _Ctx:
    defs: dict[str, KpiDefinition]
    names: ScopeNames


def _context(session: Session) -> _Ctx:
    return _Ctx({d.key: d for d in session.scalars(sa.select(KpiDefinition))}, ScopeNames(session))


def _key_of(row: dict, ctx: _Ctx, prefix: str, index: int | None) -> tuple[KpiDefinition, str, int, str, date]:
    key = row.get("kpi")
    if not isinstance(key, str) or key not in ctx.defs:
        raise ValidationError(f"unknown KPI {key!r}; list them with GET /api/v1/kpis/definitions",
                              field=f"{prefix}.kpi", index=index)
    scope = row.get("scope")
    if scope not in SCOPES:
        raise ValidationError("scope must be one of workspace, team, owner", field=f"{prefix}.scope", index=index)
    scope_id = ctx.names.resolve(scope, row.get("scope_id"), field=f"{prefix}.scope_id", index=index)
    period = row.get("period")
    if period not in PERIOD_TYPES:
        raise ValidationError("period must be one of day, iso_week, month, quarter", field=f"{prefix}.period",
                              index=index)
    start = parse_date(row.get("period_start"), field=f"{prefix}.period_start", index=index)
    if not is_period_start(start, period):
        what = {"iso_week": "a Monday", "month": "the 1st of a month",
                "quarter": "1 January, April, July or October"}.get(period, "")
        raise ValidationError(f"period_start of a {period} must be {what}", field=f"{prefix}.period_start",
                              index=index)
    return ctx.defs[key], scope, scope_id, period, start


def _rows_list(rows, name: str, max_rows: int) -> list:
    if not isinstance(rows, list) or not rows:
        raise ValidationError(f"{name} must be a non-empty list", field=name)
    if len(rows) > max_rows:
        raise ValidationError(f"at most {max_rows} {name} per request; split the batch", field=name)
    return rows


def parse_value_rows(session: Session, rows, *, name: str = "values", max_rows: int = MAX_ROWS) -> list[dict]:
    """Validate external values; raises ValidationError naming `values[i].field` and index i."""
    ctx = _context(session)
    out, seen = [], {}
    for i, row in enumerate(_rows_list(rows, name, max_rows)):
        prefix = f"{name}[{i}]"
        if not isinstance(row, dict):
            raise ValidationError("each row must be an object", field=prefix, index=i)
        kpi, scope, scope_id, period, start = _key_of(row, ctx, prefix, i)
        if kpi.source != "external":
            raise ValidationError(f"{kpi.key} is {kpi.source}: it is computed by `emailexp kpi refresh`, "
                                  "only external KPIs can be imported", field=f"{prefix}.kpi", index=i)
        if kpi.formula == "ratio":
            num = _number(row, "numerator", prefix, i)
            den = _number(row, "denominator", prefix, i)
            value = num / den if den else None
        else:
            num = _number(row, "value", prefix, i, integer=kpi.formula == "count")
            den, value = None, num
        k = (kpi.id, scope, scope_id, period, start)
        if k in seen:
            raise ValidationError(f"the same KPI, scope and period as row {seen[k]}", field=prefix, index=i)
        seen[k] = i
        out.append({"kpi_id": kpi.id, "scope_type": scope, "scope_id": scope_id, "period_type": period,
                    "period_start": start, "numerator": num, "denominator": den, "value": value})
    return out


def parse_target_rows(session: Session, rows, *, name: str = "targets", max_rows: int = MAX_ROWS) -> list[dict]:
    ctx = _context(session)
    out, seen = [], {}
    for i, row in enumerate(_rows_list(rows, name, max_rows)):
        prefix = f"{name}[{i}]"
        if not isinstance(row, dict):
            raise ValidationError("each row must be an object", field=prefix, index=i)
        kpi, scope, scope_id, period, start = _key_of(row, ctx, prefix, i)
        target = _number(row, "target", prefix, i)
        if kpi.formula == "ratio" and target > 1:
            raise ValidationError("give a ratio target as a fraction (0.25 for 25 %)", field=f"{prefix}.target",
                                  index=i)
        k = (kpi.id, scope, scope_id, period, start)
        if k in seen:
            raise ValidationError(f"the same KPI, scope and period as row {seen[k]}", field=prefix, index=i)
        seen[k] = i
        out.append({"kpi_id": kpi.id, "scope_type": scope, "scope_id": scope_id, "period_type": period,
                    "period_start": start, "target": target})
    return out


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int


def _existing(session: Session, model, rows: list[dict], cols: tuple[str, ...]) -> dict[tuple, tuple]:
    if not rows:
        return {}
    t = model.__table__
    kpi_ids = {r["kpi_id"] for r in rows}
    starts = {r["period_start"] for r in rows}
    q = sa.select(t.c.kpi_id, t.c.scope_type, t.c.scope_id, t.c.period_type, t.c.period_start,
                  *[t.c[c] for c in cols]).where(t.c.kpi_id.in_(kpi_ids), t.c.period_start.in_(starts))
    out = {}
    for r in session.execute(q):
        ps = date.fromisoformat(r[4]) if isinstance(r[4], str) else r[4]
        out[(r[0], r[1], r[2], r[3], ps)] = tuple(r[5:])
    return out


def _key(r: dict) -> tuple:
    return (r["kpi_id"], r["scope_type"], r["scope_id"], r["period_type"], r["period_start"])


def import_values(session: Session, rows: list[dict], *, now: datetime | None = None) -> ImportResult:
    """Upsert parsed external values (idempotent by KPI x scope x period); refreshes roll-ups and derived
    ratios. Writes only new or changed rows. The caller commits."""
    from emailexp.kpi.refresh import refresh_derived, rollup_external

    now = now or utcnow()
    existing = _existing(session, KpiValue, rows, ("numerator", "denominator", "source"))
    write, created, unchanged = [], 0, 0
    for r in rows:
        old = existing.get(_key(r))
        if old == (r["numerator"], r["denominator"], "import"):
            unchanged += 1
            continue
        created += old is None
        write.append({**r, "source": "import", "computed_at": now})
    upsert_values(session, write)
    if write:
        rollup_external(session, now)
        refresh_derived(session, now)
    session.flush()
    return ImportResult(created=created, updated=len(write) - created, unchanged=unchanged)


def set_targets(session: Session, rows: list[dict], *, now: datetime | None = None) -> ImportResult:
    now = now or utcnow()
    existing = _existing(session, KpiTarget, rows, ("target",))
    write, created, unchanged = [], 0, 0
    for r in rows:
        old = existing.get(_key(r))
        if old == (r["target"],):
            unchanged += 1
            continue
        created += old is None
        write.append({**r, "updated_at": now})
    upsert_targets(session, write)
    session.flush()
    return ImportResult(created=created, updated=len(write) - created, unchanged=unchanged)


def parse_scope_filter(session: Session, text: str | None, names: ScopeNames | None = None
                       ) -> tuple[str | None, int | None]:
    """`workspace`, `team`, `owner`, `team:<name>` or `owner:<id>` -> (scope_type, scope_id or None)."""
    if not text:
        return None, None
    scope, _, name = text.partition(":")
    if scope not in SCOPES:
        raise ValidationError("scope must be workspace, team, owner, team:<name> or owner:<id>", field="scope")
    if scope == "workspace":
        return scope, WORKSPACE_SCOPE_ID
    if not name:
        return scope, None
    return scope, (names or ScopeNames(session)).resolve(scope, name, field="scope")


def list_values(session: Session, *, kpi: str | None = None, scope: str | None = None,
                period: str | None = None, date_from: date | None = None, date_to: date | None = None,
                limit: int = 10_000) -> list[dict]:
    names = ScopeNames(session)
    v, d = KpiValue.__table__, KpiDefinition.__table__
    q = (sa.select(d.c.key, v.c.scope_type, v.c.scope_id, v.c.period_type, v.c.period_start, v.c.numerator,
                   v.c.denominator, v.c.value, v.c.source, v.c.computed_at, d.c.unit)
         .select_from(v.join(d, d.c.id == v.c.kpi_id)))
    if kpi:
        keys = kpi.split(",")
        known = set(session.scalars(sa.select(KpiDefinition.key).where(KpiDefinition.key.in_(keys))))
        missing = [k for k in keys if k not in known]
        if missing:
            raise ValidationError(f"unknown KPI {missing[0]!r}", field="kpi")
        q = q.where(d.c.key.in_(keys))
    stype, sid = parse_scope_filter(session, scope, names)
    if stype:
        q = q.where(v.c.scope_type == stype)
    if sid is not None:
        q = q.where(v.c.scope_id == sid)
    if period:
        if period not in PERIOD_TYPES:
            raise ValidationError("period must be one of day, iso_week, month, quarter", field="period")
        q = q.where(v.c.period_type == period)
    if date_from:
        q = q.where(v.c.period_start >= date_from)
    if date_to:
        q = q.where(v.c.period_start <= date_to)
    q = q.order_by(d.c.key, v.c.scope_type, v.c.scope_id, v.c.period_type, v.c.period_start).limit(limit)
    out = []
    for key, st, sid_, pt, ps, num, den, val, src, at, unit in session.execute(q):
        out.append({"kpi": key, "scope": st, "scope_id": names.name(st, sid_), "period": pt,
                    "period_start": (date.fromisoformat(ps) if isinstance(ps, str) else ps).isoformat(),
                    "numerator": num, "denominator": den, "value": val, "unit": unit, "source": src,
                    "computed_at": _iso(at)})
    return out


def _iso(at) -> str | None:
    if at is None:
        return None
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at.tzinfo is None:
        from datetime import UTC
        at = at.replace(tzinfo=UTC)
    return at.isoformat()


def list_targets(session: Session, *, period: str | None = None, date_from: date | None = None,
                 date_to: date | None = None) -> list[dict]:
    names = ScopeNames(session)
    t, d = KpiTarget.__table__, KpiDefinition.__table__
    q = (sa.select(d.c.key, t.c.scope_type, t.c.scope_id, t.c.period_type, t.c.period_start, t.c.target)
         .select_from(t.join(d, d.c.id == t.c.kpi_id)))
    if period:
        q = q.where(t.c.period_type == period)
    if date_from:
        q = q.where(t.c.period_start >= date_from)
    if date_to:
        q = q.where(t.c.period_start <= date_to)
    q = q.order_by(d.c.key, t.c.scope_type, t.c.scope_id, t.c.period_type, t.c.period_start)
    return [{"kpi": key, "scope": st, "scope_id": names.name(st, sid), "period": pt,
             "period_start": (date.fromisoformat(ps) if isinstance(ps, str) else ps).isoformat(), "target": tg}
            for key, st, sid, pt, ps, tg in session.execute(q)]
