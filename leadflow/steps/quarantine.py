"""Quarantine retry: stage quarantined rows as an intake input, then record which of them intake recovered.

The caller runs the lead-intake flow on the staged file in between (with the new column map and source name),
so a retried row goes through exactly the checks, writes, spam check and qualification of any import. Afterwards
each row's submission key is computed as intake computes it: a row whose submission the CRM now holds is
`recovered`; one the retry quarantined under other reasons is `superseded` by its new record. Both are stamped
with the retry's batch, so a second retry skips them, and intake's idempotency keys mean a re-run stores nothing
twice.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from leadflow.crm import quarantine as store_q
from leadflow.crm.store import Store
from leadflow.domain import quarantine as q
from leadflow.domain.submissions import normalize_batch, prepare_batch
from leadflow.io.sources import inspect_lead_file, iter_lead_chunks

RETRY_FOLDER = "quarantine-retry"


@dataclass(frozen=True)
class StagedRetry:
    """The retry input written for intake: its path and the record id of each of its rows, in row order."""

    path: str
    ids: list[int]
    skipped: dict[str, int] = field(default_factory=dict)  # matching records no retry can help, by reason


@dataclass
class RetryResult:
    """What a retry did: rows retried, recovered, superseded by a new record, and left as they were."""

    batch_id: str
    retried: int
    recovered: list[int] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    unchanged: int = 0

    def as_dict(self) -> dict[str, object]:
        """The result for JSON output (record ids, never row values)."""
        return {"batch_id": self.batch_id, "retried": self.retried, "recovered": len(self.recovered),
                "superseded": len(self.superseded), "unchanged": self.unchanged,
                "recovered_ids": self.recovered, "superseded_ids": self.superseded}


def stage_retry(store: Store, where: store_q.QuarantineFilter, folder: Path, now: datetime,
                limit: int | None = None) -> StagedRetry:
    """Write the matching, retryable, not yet retried records as a JSON-lines input (no file when there are none).

    The file holds personal data: it is created owner-only and the caller deletes it after the run.
    """
    records = store_q.records_with_payload(store, where, limit)
    ok = q.retryable(records["reason_codes"]) if len(records) else pd.Series(dtype=bool)
    skipped = records.loc[~ok, "reason_codes"].value_counts().to_dict() if len(records) else {}
    records = records.loc[ok] if len(records) else records
    if records.empty:
        return StagedRetry(path="", ids=[], skipped={str(k): int(v) for k, v in skipped.items()})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"retry-{now:%Y%m%dT%H%M%S%f}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for line in q.retry_lines(records["raw_payload"].tolist()):
            handle.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
    return StagedRetry(path=str(path), ids=[int(i) for i in records["id"]],
                       skipped={str(k): int(v) for k, v in skipped.items()})


def submission_keys_of(path: str, mapping: dict[str, str], source_name: str | None) -> list[str]:
    """The submission idempotency key of each row of an input, in row order, computed as intake computes it."""
    keys: list[str] = []
    for raw in iter_lead_chunks(inspect_lead_file(path), 50_000):
        normalized = normalize_batch(prepare_batch(raw, mapping, source_name))
        keys.extend(normalized["idempotency_key"].astype(str).tolist())
    return keys


def settle_retry(store: Store, staged: StagedRetry, mapping: dict[str, str], source_name: str | None,
                 batch_id: str, now: datetime) -> RetryResult:
    """Record what the intake batch `batch_id` made of each staged row (recovered, superseded or unchanged)."""
    keys = submission_keys_of(staged.path, mapping, source_name)
    stored = store_q.stored_submission_keys(store, keys)
    outcomes = q.retry_outcomes(staged.ids, keys, stored, store_q.batch_row_numbers(store, batch_id))
    store_q.mark_retried(store, outcomes, batch_id, now)
    result = RetryResult(batch_id=batch_id, retried=len(staged.ids))
    result.recovered = sorted(i for i, o in outcomes.items() if o == store_q.RECOVERED)
    result.superseded = sorted(i for i, o in outcomes.items() if o == store_q.SUPERSEDED)
    result.unchanged = len(staged.ids) - len(outcomes)
    return result
