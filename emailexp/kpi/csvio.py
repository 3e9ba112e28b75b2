"""CSV import and export of KPI values and targets (UTF-8, a BOM is accepted, header line required).

Values:  kpi,scope,scope_id,period,period_start,value[,numerator,denominator]
         (external KPIs only; `value` for count/sum KPIs, numerator and denominator for ratio KPIs)
Targets: kpi,scope,scope_id,period,period_start,target      (ratio targets as fractions: 0.25 = 25 %)
scope_id is the team's name or the owner's id, empty for the workspace. The whole file is checked
before anything is written; the first bad row is reported as `FILE:LINE: field: message`.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy.orm import Session

from emailexp.errors import EmailexpError
from emailexp.kpi.store import (ImportResult, import_values, list_targets, list_values, parse_target_rows,
                                parse_value_rows, set_targets)

VALUE_COLUMNS = ("kpi", "scope", "scope_id", "period", "period_start", "value", "numerator", "denominator")
TARGET_COLUMNS = ("kpi", "scope", "scope_id", "period", "period_start", "target")
EXPORT_VALUE_COLUMNS = ("kpi", "scope", "scope_id", "period", "period_start", "numerator", "denominator",
                        "value", "unit", "source", "computed_at")


CSV_MAX_ROWS = 1_000_000


class CsvError(Exception):
    """One line: FILE:LINE: field: message."""


def _read(path: Path, required: tuple[str, ...], allowed: tuple[str, ...]) -> list[dict]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CsvError(f"{path}:1: file: not UTF-8; save the CSV as UTF-8") from None
    except OSError as exc:
        raise CsvError(f"{path}: {exc.strerror}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise CsvError(f"{path}:1: {missing[0]}: missing column; the header must be {','.join(allowed)}")
    unknown = [c for c in header if c not in allowed]
    if unknown:
        raise CsvError(f"{path}:1: {unknown[0]}: unknown column; allowed: {','.join(allowed)}")
    rows = []
    for row in reader:
        if None in row:
            raise CsvError(f"{path}:{reader.line_num}: row: more fields than columns in the header")
        rows.append({k: (v.strip() if isinstance(v, str) else v) or None for k, v in row.items()})
    if not rows:
        raise CsvError(f"{path}:2: file: no data rows")
    return rows


def _located(path: Path, exc: EmailexpError) -> CsvError:
    line = (exc.index + 2) if exc.index is not None else 1      # +1 header, +1 one-based
    field = (exc.field or "row").split(".", 1)[-1] if exc.field and "." in exc.field else (exc.field or "row")
    if exc.index is not None and field.endswith("]"):
        field = "row"
    return CsvError(f"{path}:{line}: {field}: {exc.message}")


def import_values_csv(session: Session, path: Path) -> ImportResult:
    """Check every row, then upsert them all; raises CsvError (nothing written). The caller commits."""
    rows = _read(path, ("kpi", "scope", "period", "period_start"), VALUE_COLUMNS)
    try:
        parsed = parse_value_rows(session, rows, name="values", max_rows=CSV_MAX_ROWS)
    except EmailexpError as exc:
        raise _located(path, exc) from None
    return import_values(session, parsed)


def import_targets_csv(session: Session, path: Path) -> ImportResult:
    rows = _read(path, ("kpi", "scope", "period", "period_start", "target"), TARGET_COLUMNS)
    try:
        parsed = parse_target_rows(session, rows, name="targets", max_rows=CSV_MAX_ROWS)
    except EmailexpError as exc:
        raise _located(path, exc) from None
    return set_targets(session, parsed)


def export_values_csv(session: Session, out, **filters) -> int:
    writer = csv.DictWriter(out, fieldnames=EXPORT_VALUE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    rows = list_values(session, limit=10_000_000, **filters)
    writer.writerows(rows)
    return len(rows)


def export_targets_csv(session: Session, out, **filters) -> int:
    writer = csv.DictWriter(out, fieldnames=TARGET_COLUMNS, lineterminator="\n")
    writer.writeheader()
    rows = list_targets(session, **filters)
    writer.writerows(rows)
    return len(rows)
