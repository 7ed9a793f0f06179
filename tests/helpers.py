"""Small builders shared by the tests."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

from leadflow.crm import outbox
from leadflow.crm.schema import Base
from leadflow.crm.store import Store

# Columns that name a run or a moment of processing rather than what was learned about a lead.
VOLATILE = frozenset({"id", "lead_id", "created_at", "updated_at", "received_at", "occurred_at", "batch_id",
                      "flow_run_id", "started_at", "finished_at", "scored_at", "enriched_at",
                      "spam_flagged_at", "step_marked_at"})


def write_csv(path: Path, rows: list[dict[str, Any]]) -> str:
    """Write rows as a CSV lead export and return its path."""
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def snapshot(store: Store, skip: tuple[str, ...] = ("intake_batches",), ignore: frozenset[str] = frozenset()
             ) -> dict[str, list[str]]:
    """Every CRM table's rows (sorted), minus `ignore`d columns, for comparing a database across runs."""
    tables: dict[str, list[str]] = {}
    with store.engine.connect() as conn:
        for name, table in Base.metadata.tables.items():
            if name in skip:
                continue
            rows = conn.execute(select(table)).mappings().all()
            tables[name] = sorted(repr(sorted((k, v) for k, v in r.items() if k not in ignore)) for r in rows)
    return tables


def lead(email: str, submitted_at: str = "2025-03-01T10:00:00Z", source: str = "web_form", **extra: Any) -> dict:
    """One intake row with the required columns."""
    return {"email": email, "submitted_at": submitted_at, "source": source, **extra}


def lenient_spam_policy(folder: Path) -> str:
    """A spam policy file as before today's lists: only known-bad addresses are flagged (for nightly-sweep tests)."""
    import json

    from leadflow.config.policy import POLICY_DIR
    from leadflow.domain.spam import REASON_CODES

    data = json.loads((POLICY_DIR / "spam.json").read_text(encoding="utf-8"))
    data["rules"] = {code: code == "known_bad_address" for code in REASON_CODES}
    data["min_reasons_to_flag"] = 1
    path = folder / "spam-yesterday.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def run_intake(store: Store, path: str, *, column_map: dict[str, str] | str | None = None,
               source_name: str | None = None, chunk_size: int | None = None, profile: str | None = None,
               submitted_at: str | None = None) -> dict[str, Any]:
    """lead-intake on a file without Prefect or qualification: the flow's sequence over the plain steps.

    Check workers are chosen as the flow chooses them (settings, file size), and the batch is recorded the same
    way; returns the summary as the flow does.
    """
    import uuid
    from datetime import UTC, datetime

    from leadflow.config.settings import get_settings
    from leadflow.crm import submissions
    from leadflow.domain.summary import IntakeSummary
    from leadflow.io.sources import iter_lead_chunks, read_ahead
    from leadflow.steps.intake import (
        early_worker,
        intake_chunks,
        late_worker,
        overlap_chunks,
        plain_steps,
        plan_intake,
    )

    summary = IntakeSummary(batch_id=str(uuid.uuid4()), origin=path)
    worker = early_worker(path)
    try:
        plan = plan_intake(path, column_map, source_name, check_columns=worker is None, profile=profile,
                           submitted_at=submitted_at)
        summary.note_plan(plan.profile, plan.submitted_at)
        submissions.start_batch(store, summary.batch_id, path, source_name, None, datetime.now(UTC))
    except BaseException:
        if worker is not None:
            worker.close()
        raise
    chunks = read_ahead(iter_lead_chunks(plan.lead_file, chunk_size or get_settings().chunk_size))
    try:
        intake_chunks(plain_steps(store), chunks, plan, summary, worker=worker, start_worker=late_worker,
                      overlap=overlap_chunks(store))
    except BaseException:
        submissions.finish_batch(store, summary.batch_id, "failed", summary.as_dict(), datetime.now(UTC))
        raise
    submissions.finish_batch(store, summary.batch_id, "completed", summary.as_dict(), datetime.now(UTC))
    return summary.as_dict()


def queue_outbox_rows(crm: Store, channels: list[str], now: datetime) -> None:
    """Queue one pending auto-response per channel given (keys k:0, k:1, ...)."""
    n = len(channels)
    outbox.queue_messages(crm, pd.DataFrame({
        "idempotency_key": [f"k:{i}" for i in range(n)], "lead_id": pd.array([None] * n, dtype="Int64"),
        "kind": "auto_response", "channel": channels, "recipient": [f"p{i}@example.com" for i in range(n)],
        "subject": "s", "body": "b", "status": "pending", "attempts": 0, "created_at": now,
    }))


def outbox_by_key(crm: Store) -> pd.DataFrame:
    """The outbox rows indexed and sorted by idempotency key."""
    return outbox.outbox_frame(crm).set_index("idempotency_key").sort_index()


def run_flow(flow: Any, **parameters: Any) -> tuple[Any, Any]:
    """Run a flow and return its return value with its flow run id.

    `flow(..., return_state=True).result()` can lose the value: when the test API is slow, the client retries
    the final state and Prefect rejects the duplicate transition, handing back the server's copy without data.
    Calling the flow returns the engine's own value; hooks note the run id.
    """
    seen: list[Any] = []

    def note(_flow: Any, flow_run: Any, _state: Any) -> None:
        seen.append(flow_run.id)

    result = flow.with_options(on_completion=[*flow.on_completion_hooks, note])(**parameters)
    return result, seen[-1]
