"""The quarantine table as ops read and retry it: list with filters, one record, export, and retry outcomes.

Intake writes quarantine records (crm/submissions.py); this module reads them for people and records what a
`leadflow quarantine retry` made of each (`retry_outcome`: recovered or superseded, with the retry's batch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import bindparam, func, or_, select, update

from leadflow.crm.schema import LeadSubmission, QuarantineRecord
from leadflow.crm.store import Store, read_in, utc

QUARANTINE = QuarantineRecord.__table__
SUBMISSIONS = LeadSubmission.__table__
LISTED = ("id", "created_at", "batch_id", "origin", "row_number", "source", "reason_codes", "retry_outcome",
          "retried_at", "retry_batch_id")
RECOVERED = "recovered"
SUPERSEDED = "superseded"


@dataclass(frozen=True)
class QuarantineFilter:
    """Which quarantine records a command is about; None filters nothing."""

    reason: str | None = None
    batch_id: str | None = None
    since: datetime | None = None
    ids: tuple[int, ...] = ()
    # Records a retry recovered or superseded are history: shown only when asked for.
    include_retried: bool = False

    def where(self) -> list[Any]:
        """The filter as SQL conditions."""
        conditions: list[Any] = []
        if self.reason:
            codes = QUARANTINE.c.reason_codes
            # reason_codes is a sorted, comma-joined list: match one code exactly, wherever it stands.
            conditions.append(or_(codes == self.reason, codes.like(f"{_like(self.reason)},%", escape="\\"),
                                  codes.like(f"%,{_like(self.reason)}", escape="\\"),
                                  codes.like(f"%,{_like(self.reason)},%", escape="\\")))
        if self.batch_id:
            conditions.append(QUARANTINE.c.batch_id == self.batch_id)
        if self.since is not None:
            conditions.append(QUARANTINE.c.created_at >= self.since)
        if self.ids:
            conditions.append(QUARANTINE.c.id.in_(sorted(set(self.ids))))
        if not self.include_retried:
            conditions.append(QUARANTINE.c.retry_outcome.is_(None))
        return conditions


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for name in ("created_at", "retried_at"):
        if name in frame.columns:
            frame[name] = utc(frame[name]) if len(frame) else pd.Series(dtype="datetime64[us, UTC]")
    return frame


def count_by_reason(store: Store, where: QuarantineFilter) -> dict[str, int]:
    """How many records match, by their reason codes as stored (a row with two reasons counts under both joined)."""
    stmt = (select(QUARANTINE.c.reason_codes, func.count()).where(*where.where())
            .group_by(QUARANTINE.c.reason_codes))
    with store.engine.connect() as conn:
        return {str(codes): int(n) for codes, n in conn.execute(stmt)}


def list_records(store: Store, where: QuarantineFilter, limit: int | None = 50) -> tuple[int, pd.DataFrame]:
    """How many records match, and the newest `limit` of them without their payloads."""
    with store.engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(QUARANTINE).where(*where.where())).scalar_one())
        stmt = (select(*(QUARANTINE.c[name] for name in LISTED)).where(*where.where())
                .order_by(QUARANTINE.c.id.desc()))
        if limit is not None:
            stmt = stmt.limit(limit)
        rows = [tuple(r) for r in conn.execute(stmt)]
    return total, _typed(pd.DataFrame(rows, columns=list(LISTED)))


def get_record(store: Store, record_id: int) -> dict[str, Any] | None:
    """One record with its raw payload, None if there is none with this id."""
    with store.engine.connect() as conn:
        row = conn.execute(select(*(QUARANTINE.c[name] for name in LISTED), QUARANTINE.c.raw_payload)
                           .where(QUARANTINE.c.id == record_id)).mappings().first()
    if row is None:
        return None
    record = dict(row)
    if isinstance(record["raw_payload"], str):
        record["raw_payload"] = json.loads(record["raw_payload"])
    for name in ("created_at", "retried_at"):
        if record[name] is not None:
            record[name] = utc(pd.Series([record[name]])).iloc[0].isoformat()
    return record


def records_with_payload(store: Store, where: QuarantineFilter, limit: int | None = None) -> pd.DataFrame:
    """Matching records, oldest first, with their raw payloads as dicts (export and retry read these)."""
    stmt = (select(*(QUARANTINE.c[name] for name in LISTED), QUARANTINE.c.raw_payload).where(*where.where())
            .order_by(QUARANTINE.c.id))
    if limit is not None:
        stmt = stmt.limit(limit)
    with store.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(stmt)]
    frame = _typed(pd.DataFrame(rows, columns=[*LISTED, "raw_payload"]))
    frame["raw_payload"] = [json.loads(p) if isinstance(p, str) else (p or {}) for p in frame["raw_payload"]]
    return frame


def stored_submission_keys(store: Store, keys: Sequence[str]) -> set[str]:
    """Which of these submission idempotency keys the CRM holds."""
    with store.engine.connect() as conn:
        return store.known_keys(conn, SUBMISSIONS, list(keys))


def batch_row_numbers(store: Store, batch_id: str) -> set[int]:
    """Row numbers of the records an intake batch quarantined."""
    stmt = select(QUARANTINE.c.row_number).where(QUARANTINE.c.batch_id == batch_id)
    with store.engine.connect() as conn:
        return {int(r[0]) for r in conn.execute(stmt) if r[0] is not None}


def mark_retried(store: Store, outcomes: dict[int, str], batch_id: str, now: datetime) -> int:
    """Stamp records with what a retry made of them; a record stamped before keeps its first outcome."""
    changed = 0
    with store.begin() as conn:
        for outcome in (RECOVERED, SUPERSEDED):
            ids = sorted(i for i, o in outcomes.items() if o == outcome)
            if not ids:
                continue
            for start in range(0, len(ids), 1000):
                changed += conn.execute(
                    update(QUARANTINE).where(QUARANTINE.c.id.in_(bindparam("ids", expanding=True)),
                                             QUARANTINE.c.retry_outcome.is_(None))
                    .values(retry_outcome=outcome, retried_at=now, retry_batch_id=batch_id),
                    {"ids": ids[start:start + 1000]},
                ).rowcount
    return changed


def retried_ids(store: Store, ids: Sequence[int]) -> dict[int, str]:
    """Retry outcome by id of these records (records never retried are left out)."""
    stmt = select(QUARANTINE.c.id, QUARANTINE.c.retry_outcome).where(
        QUARANTINE.c.id.in_(bindparam("values", expanding=True)), QUARANTINE.c.retry_outcome.is_not(None))
    with store.engine.connect() as conn:
        return {int(i): str(o) for i, o in read_in(conn, stmt, list(ids))}
