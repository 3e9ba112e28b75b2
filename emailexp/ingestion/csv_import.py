"""Import sends and conversions from CSV files through the same services as the API.

CSV formats (UTF-8, with or without the BOM Excel writes; a header line names the columns, in
any order; empty cells mean "not given"; optional columns may be left out of the header):

sends::

    send_id,recipient_id,segment,owner_id,experiment_id,variant,subject,campaign,sent_at,links
    s-0001,lead-42,enterprise,rep-7,3,B,年末のご挨拶,newsletter-2026-12,2026-12-04T09:30:00+09:00,https://example.com/a https://example.com/b

    required: send_id, recipient_id, sent_at (ISO 8601 with a UTC offset), and subject unless
    experiment_id and variant are given (the variant's subject is used); links are separated by
    spaces (http/https only, at most 50).

conversions::

    conversion_id,kind,recipient_id,send_id,occurred_at,amount,owner_id
    c-1,deal,lead-42,s-0001,2026-12-10T15:00:00+09:00,1200000,rep-7

    required: conversion_id, kind (meeting or deal), recipient_id, occurred_at; amount only for deals.

Each field is checked exactly as `POST /api/v1/sends` and `POST /api/v1/conversions` check it.
The whole file is checked first (`check_csv`, which reads the database but never writes), so a bad
line means nothing of the file is imported; then `import_csv` ingests it batch by batch, the caller
committing each batch. Ingestion is idempotent per send_id/conversion_id, so if the import stops
half-way (a crash, or a conflict caused by another writer after the check) the batches already
committed stay and re-running the same command continues safely.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from emailexp.errors import EmailexpError
from emailexp.ingestion.conversions import ingest_conversions, prepare_conversions
from emailexp.ingestion.sends import ingest_sends, prepare_sends

COLUMNS = {
    "sends": ("send_id", "recipient_id", "segment", "owner_id", "experiment_id", "variant", "subject", "campaign",
              "sent_at", "links"),
    "conversions": ("conversion_id", "kind", "recipient_id", "send_id", "occurred_at", "amount", "owner_id"),
}
REQUIRED = {
    "sends": ("send_id", "recipient_id", "sent_at"),
    "conversions": ("conversion_id", "kind", "recipient_id", "occurred_at"),
}
ID_COLUMN = {"sends": "send_id", "conversions": "conversion_id"}
_ROW_FIELD = re.compile(r"^\w+\[\d+\]\.?")


class CsvImportError(Exception):
    """One line for the user: `FILE:LINE: field: message`."""

    def __init__(self, path: Path | str, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


@dataclass(frozen=True)
class CsvRow:
    line: int   # line number where the record starts (the header is line 1)
    data: dict  # the row as the services take it: absent keys for empty cells


def read_csv(path: Path | str, kind: str) -> Iterator[CsvRow]:
    """The file's records as service rows; raises CsvImportError for a bad header, a record with more
    cells than the header, a non-integer experiment_id or text that is not UTF-8."""
    columns = COLUMNS[kind]
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise CsvImportError(path, 1, None, f"the file is empty; the first line must be the header "
                                                    f"{','.join(columns)}")
            header = [name.strip() for name in header]
            for name in header:
                if name not in columns:
                    raise CsvImportError(path, 1, name or "(empty)", f"unknown column; the columns are "
                                                                     f"{','.join(columns)}")
                if header.count(name) > 1:
                    raise CsvImportError(path, 1, name, "the column appears twice")
            for name in REQUIRED[kind]:
                if name not in header:
                    raise CsvImportError(path, 1, name, "required column missing from the header")
            previous = reader.line_num
            for record in reader:
                line, previous = previous + 1, reader.line_num
                if not any(cell.strip() for cell in record):
                    continue
                if len(record) > len(header):
                    raise CsvImportError(path, line, None, f"{len(record)} cells but the header has {len(header)}; "
                                                           "quote cells that contain commas")
                data = {}
                for name, cell in zip(header, record):
                    if cell == "":
                        continue
                    if name == "links":
                        data[name] = cell.split()
                    elif name == "experiment_id":
                        try:
                            data[name] = int(cell.strip())
                        except ValueError:
                            raise CsvImportError(path, line, name, f"{cell[:40]!r} is not an integer id") from None
                    else:
                        data[name] = cell
                yield CsvRow(line, data)
        except UnicodeDecodeError:
            raise CsvImportError(path, reader.line_num + 1, None, "the file is not UTF-8 text; save it as "
                                                                   "'CSV UTF-8'") from None
        except csv.Error as exc:
            raise CsvImportError(path, reader.line_num, None, f"malformed CSV ({exc})") from None


def batches(rows: Iterator[CsvRow], size: int) -> Iterator[list[CsvRow]]:
    batch: list[CsvRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _csv_error(path: Path | str, kind: str, batch: list[CsvRow], exc: EmailexpError) -> CsvImportError:
    """Map a service error (`sends[3].sent_at`, index 3) to the file's line and column."""
    line = batch[exc.index].line if exc.index is not None and exc.index < len(batch) else None
    field = _ROW_FIELD.sub("", exc.field or "") or (ID_COLUMN[kind] if exc.index is not None else None)
    return CsvImportError(path, line, field, exc.message)


def _ingest(session: Session, kind: str, data: list[dict], *, config: dict, now: datetime, dry_run: bool):
    if kind == "sends":
        return ingest_sends(session, data, public_url=config["public_url"], tracking_key=config["tracking_key"],
                            workspace_tz=config["workspace_tz"], now=now, dry_run=dry_run)
    return ingest_conversions(session, data, default_window_days=config["default_window_days"], now=now,
                              dry_run=dry_run)


def check_csv(session: Session, path: Path | str, kind: str, *, batch_size: int, now: datetime,
              workspace_tz: str = "UTC", default_window_days: int = 14) -> int:
    """Check the whole file (fields, experiments, conflicts with stored rows and between lines of the
    file) without writing; return the number of records. Raises CsvImportError."""
    config = {"public_url": "", "tracking_key": b"", "workspace_tz": workspace_tz,
              "default_window_days": default_window_days}
    prepare = prepare_sends if kind == "sends" else prepare_conversions
    id_attr = ID_COLUMN[kind]
    seen: dict[str, tuple[str, int]] = {}
    count = 0
    for batch in batches(read_csv(path, kind), batch_size):
        data = [row.data for row in batch]
        try:
            prepared = prepare(data, now=now, field=kind)
            _ingest(session, kind, data, config=config, now=now, dry_run=True)
        except EmailexpError as exc:
            raise _csv_error(path, kind, batch, exc) from None
        for row, item in zip(batch, prepared):
            key = getattr(item, id_attr)
            first = seen.setdefault(key, (item.payload_hash, row.line))
            if first[0] != item.payload_hash:
                raise CsvImportError(path, row.line, id_attr, f"{key!r} appears again with different content "
                                                              f"(first on line {first[1]})")
        count += len(batch)
    return count


def import_csv(session: Session, path: Path | str, kind: str, *, batch_size: int, now: datetime,
               public_url: str = "", tracking_key: bytes = b"", workspace_tz: str = "UTC",
               default_window_days: int = 14) -> Iterator[tuple[int, int, int]]:
    """Ingest the file batch by batch, yielding (rows, created, existing) after each batch has been
    written to `session`; the caller commits then (one transaction per batch). Raises CsvImportError
    (the caller rolls back the current batch; earlier committed batches stay)."""
    config = {"public_url": public_url, "tracking_key": tracking_key, "workspace_tz": workspace_tz,
              "default_window_days": default_window_days}
    for batch in batches(read_csv(path, kind), batch_size):
        try:
            result = _ingest(session, kind, [row.data for row in batch], config=config, now=now, dry_run=False)
        except EmailexpError as exc:
            raise _csv_error(path, kind, batch, exc) from None
        yield len(batch), result.created, result.existing
