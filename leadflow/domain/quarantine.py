"""Quarantined rows as ops handle them: which can be retried, the retry input, its outcome, and the export table."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import pandas as pd

from leadflow.domain.contract import ReasonCode
from leadflow.domain.privacy import ERASED_HASH_FIELD, neutralize_formulas

# An erased person's record keeps only a keyed hash, and a malformed line only its broken text: no column map or
# source name can make a lead of either, so a retry leaves them (and re-quarantining would add records).
NOT_RETRYABLE = frozenset({ReasonCode.ERASED_PERSON, "malformed_row"})
EXPORT_PREFIX = "quarantine_"
EXPORT_META = ("id", "created_at", "batch_id", "origin", "row_number", "source", "reason_codes", "retry_outcome")


def codes_of(reason_codes: str | None) -> set[str]:
    """The reason codes of one record (stored comma-joined)."""
    return {c for c in (reason_codes or "").split(",") if c}


def retryable(reason_codes: pd.Series) -> pd.Series:
    """Which records a retry can re-run: none of their reasons is in NOT_RETRYABLE."""
    return reason_codes.map(lambda codes: not (codes_of(codes) & NOT_RETRYABLE)).astype(bool)


def retry_lines(payloads: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The retry input: each payload as one JSON-lines object over the union of every payload's fields.

    A payload holds only a row's non-empty fields, and a JSON-lines input's columns are its first line's keys; so
    every line carries every field (null where the row had none), in the order the fields first appear, which
    keeps an export's own column order and so the raw payload intake stores.
    """
    fields = field_order(payloads)
    return [{name: payload.get(name) for name in fields} for payload in payloads]


def field_order(payloads: Sequence[dict[str, Any]]) -> list[str]:
    """Every payload's fields in one order that keeps each payload's own order (its file's header order).

    Each payload says which of its fields come before which; a topological sort of those constraints (ties by
    first appearance) gives rows of one export back exactly the payload, and so the quarantine key, they had.
    Exports whose header orders disagree cannot all be kept: the fields left in a cycle follow first appearance.
    """
    import heapq
    from itertools import pairwise

    first: dict[str, int] = {}
    after: dict[str, set[str]] = {}
    pending: dict[str, int] = {}
    for payload in payloads:
        keys = list(payload)
        for name in keys:
            if name not in first:
                first[name] = len(first)
                after[name], pending[name] = set(), 0
        for before, later in pairwise(keys):
            if later not in after[before]:
                after[before].add(later)
                pending[later] += 1
    ready = [(first[name], name) for name, n in pending.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    placed: set[str] = set()
    while len(order) < len(first):
        if not ready:
            # Conflicting header orders: take the earliest-seen field left and go on from it.
            name = min((n for n in first if n not in placed), key=first.__getitem__)
            heapq.heappush(ready, (first[name], name))
        _, name = heapq.heappop(ready)
        if name in placed:
            continue
        placed.add(name)
        order.append(name)
        for later in after[name]:
            pending[later] -= 1
            if pending[later] == 0 and later not in placed:
                heapq.heappush(ready, (first[later], later))
    return order


def retry_outcomes(ids: Sequence[int], keys: Sequence[str], stored: Collection[str],
                   requarantined_rows: Collection[int]) -> dict[int, str]:
    """What a retry made of each record, by id; records it left as they were are absent.

    `keys` are the submission keys of the retry input's rows (row n is ids[n-1]), `stored` the keys the CRM holds
    after the retry, `requarantined_rows` the input rows the retry quarantined as new records. Quarantined again
    under other reasons wins: such a row has a record of its own now (`superseded`); else a row whose submission
    the CRM holds is `recovered`. A row quarantined again for the same reasons matches its own record: unchanged.
    """
    outcomes: dict[int, str] = {}
    for row, (record_id, key) in enumerate(zip(ids, keys, strict=True), start=1):
        if row in requarantined_rows:
            outcomes[int(record_id)] = "superseded"
        elif key in stored:
            outcomes[int(record_id)] = "recovered"
    return outcomes


def export_table(records: pd.DataFrame) -> pd.DataFrame:
    """Records as one spreadsheet-safe table: `quarantine_*` columns, then the payload's fields as columns.

    The fields keep their original header names, so a fixed export can be imported again; an erased person's
    keyed hash is left out (it identifies them to whoever holds the key); text cells cannot start a formula.
    """
    meta = pd.DataFrame({f"{EXPORT_PREFIX}{name}": records[name].to_numpy() if name in records.columns else None
                         for name in EXPORT_META}, index=records.index)
    if "created_at" in records.columns and len(records):
        meta[f"{EXPORT_PREFIX}created_at"] = pd.to_datetime(records["created_at"], utc=True).dt.strftime(
            "%Y-%m-%dT%H:%M:%SZ")
    payloads = [{k: v for k, v in (p or {}).items() if k != ERASED_HASH_FIELD} for p in records["raw_payload"]]
    fields = pd.DataFrame(retry_lines(payloads), index=records.index) if payloads else pd.DataFrame(index=records.index)
    # A payload field named like a metadata column keeps its name: the prefix keeps the two apart.
    table = pd.concat([meta, fields.astype(object).where(fields.notna(), None)], axis=1)
    return neutralize_formulas(table.astype(object).where(table.notna(), None).astype("string")
                               if len(table) else table)
