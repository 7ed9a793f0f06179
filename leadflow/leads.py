"""Intake steps that touch the CRM: quarantine rejects, create lead entries, update lead sources."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from leadflow.intake import (
    PAYLOAD_COLUMN,
    SOURCE_COLUMN,
    aggregate_leads,
    aggregate_touches,
    attribution_changes,
    split_duplicate_keys,
)
from leadflow.sources import ROW_COLUMN
from leadflow.store import Store


@dataclass
class QuarantineResult:
    """Rows a batch rejected: how many, how many were new to the quarantine table, and why."""

    rows: int = 0
    new_records: int = 0
    by_reason: Counter = field(default_factory=Counter)


@dataclass
class LeadWriteResult:
    """What creating lead entries did to the CRM for one batch."""

    submissions_new: int = 0
    submissions_duplicate: int = 0
    leads_created: int = 0
    leads_updated: int = 0
    lead_ids: list[int] = field(default_factory=list)


def quarantine_rows(
    store: Store,
    prepared: pd.DataFrame,
    row_reasons: dict[int, list[str]],
    *,
    batch_id: str,
    origin: str,
    flow_run_id: str | None,
    now: datetime,
) -> QuarantineResult:
    """Keep every rejected row with its raw payload and reason codes (idempotent by content)."""
    result = QuarantineResult()
    if not row_reasons:
        return result
    rejected = prepared.loc[prepared[ROW_COLUMN].isin(row_reasons.keys())]
    reasons = rejected[ROW_COLUMN].map(lambda row: ",".join(sorted(row_reasons[row])))
    keys = [
        hashlib.sha256(f"{payload}|{reason}".encode()).hexdigest()
        for payload, reason in zip(rejected[PAYLOAD_COLUMN], reasons, strict=True)
    ]
    frame = pd.DataFrame(
        {
            "idempotency_key": keys,
            "batch_id": batch_id,
            "origin": origin[:1000],
            "row_number": rejected[ROW_COLUMN].to_numpy(),
            "source": rejected[SOURCE_COLUMN].to_numpy(),
            "reason_codes": reasons.to_numpy(),
            "raw_payload": rejected[PAYLOAD_COLUMN].to_numpy(),
            "created_at": now,
            "flow_run_id": flow_run_id,
        }
    ).drop_duplicates("idempotency_key")
    with store.begin() as conn:
        result.new_records = store.insert_quarantine(conn, frame)
    result.rows = len(rejected)
    for codes in row_reasons.values():
        result.by_reason.update(codes)
    return result


def create_lead_entries(
    store: Store, subs: pd.DataFrame, *, batch_id: str, flow_run_id: str | None, now: datetime
) -> LeadWriteResult:
    """Upsert one lead per email and store each new submission, in one transaction."""
    result = LeadWriteResult()
    if subs.empty:
        return result
    unique, repeats = split_duplicate_keys(subs)
    with store.begin() as conn:
        known = store.known_submission_keys(conn, unique["idempotency_key"].tolist())
        fresh = unique.loc[~unique["idempotency_key"].isin(known)]
        result.submissions_duplicate = len(repeats) + len(unique) - len(fresh)
        if fresh.empty:
            return result
        existing = store.lead_ids(conn, fresh["email"].unique().tolist())
        leads = aggregate_leads(fresh)
        store.upsert_leads(conn, leads, now)
        # An upsert keeps the id of a lead it updates, so only the leads it created need looking up.
        ids = {**existing, **store.lead_ids(conn, [e for e in leads["email"] if e not in existing])}
        fresh = fresh.assign(lead_id=fresh["email"].map(ids))
        store.insert_submissions(conn, fresh, batch_id, now)
        created = ~leads["email"].isin(list(existing))
        details = [
            json.dumps({"new_submissions": int(n), "source": source} if new else {"new_submissions": int(n)})
            for n, source, new in zip(leads["submissions"], leads["first_touch_source"], created, strict=True)
        ]
        events = pd.DataFrame({
            "lead_id": leads["email"].map(ids).to_numpy(),
            "event_type": np.where(created, "lead_created", "lead_updated"),
            "occurred_at": now,
            "batch_id": batch_id,
            "flow_run_id": flow_run_id,
            "details": details,
        })
        store.insert_events(conn, events)
    result.submissions_new = len(fresh)
    result.leads_created = int(created.sum())
    result.leads_updated = len(leads) - result.leads_created
    result.lead_ids = [ids[email] for email in leads["email"]]
    return result


def update_lead_sources(
    store: Store, subs: pd.DataFrame, *, batch_id: str, flow_run_id: str | None, now: datetime
) -> int:
    """Keep first-touch attribution at the earliest touch and move last-touch to the latest; returns leads moved."""
    if subs.empty:
        return 0
    touches = aggregate_touches(subs)
    with store.begin() as conn:
        current = store.lead_touches(conn, touches["email"].tolist())
        changes = attribution_changes(touches, current)
        if changes.empty:
            return 0
        store.move_touches(conn, changes, now)
        parts = []
        for which in ("first", "last"):
            moved = changes.loc[changes[f"{which}_touch_changed"]]
            details = [
                json.dumps({"touch": which, "from": old, "to": new, "at": at.isoformat()})
                for old, new, at in zip(moved[f"{which}_touch_source_current"], moved[f"{which}_touch_source"],
                                        moved[f"{which}_touch_at"], strict=True)
            ]
            parts.append(pd.DataFrame({"lead_id": moved["id"].to_numpy(), "details": details}))
        events = pd.concat(parts, ignore_index=True).assign(
            event_type="lead_source_updated", occurred_at=now, batch_id=batch_id, flow_run_id=flow_run_id
        )
        store.insert_events(conn, events)
    return len(changes)
