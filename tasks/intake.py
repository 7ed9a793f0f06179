"""Task shells for the lead-intake steps: inspect, check, quarantine, normalize, create lead entries, update sources."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from prefect import get_run_logger, task

from data_checks.runner import CheckOutcome
from leadflow.crm import submissions
from leadflow.domain.normalize import FieldOptions
from leadflow.io.processes import this_process
from leadflow.steps import intake as steps
from leadflow.steps.chunk_worker import ChunkWorker
from leadflow.steps.intake import CheckedBatch, IntakePlan, NormalizedBatch
from tasks.common import DB_TASK, PRIVATE, current_flow_run_id, retry_on_transient_io, store


@task(name="Inspect Lead File", retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_on_transient_io, **PRIVATE)
def inspect_lead_input(path: str, column_map: dict[str, str] | str | None, source_name: str | None,
                       check_columns: bool = True, fields: FieldOptions | None = None, profile: str | None = None,
                       submitted_at: str | None = None) -> IntakePlan:
    """Detect format, export profile and columns of an input and check it has the required columns."""
    plan = steps.plan_intake(path, column_map, source_name, check_columns, fields, profile=profile,
                             submitted_at=submitted_at)
    get_run_logger().info("Input is %s%s", plan.describe(),
                          "" if check_columns else "; its columns are checked with the first chunk")
    return plan


@task(name="Check Lead Batch", **PRIVATE)
def check_lead_batch(raw: pd.DataFrame, plan: IntakePlan, now: datetime, worker: ChunkWorker | None = None,
                     normalize_here: bool = False) -> CheckedBatch:
    """Prepare a raw chunk and validate it with the intake suites; stops on a batch-level failure.

    With `normalize_here` (a run's first chunk, while the worker warms up) the worker runs the suites and this
    task normalizes the chunk meanwhile; Normalize Leads then hands on the accepted rows.
    """
    checked = steps.check_lead_batch(raw, plan, now, worker, normalize_here)
    get_run_logger().info("Checked %d rows: %d rejected", checked.rows, len(checked.outcome.row_reasons))
    return checked


@task(name="Quarantine Rejected Rows", **DB_TASK)
def quarantine_rejected_rows(
    prepared: pd.DataFrame, outcome: CheckOutcome, batch_id: str, origin: str, now: datetime
) -> steps.QuarantineResult:
    """Store rejected rows with their raw payload and reason codes."""
    result = steps.quarantine_rows(
        store(), prepared, outcome.row_reasons, batch_id=batch_id, origin=origin,
        flow_run_id=current_flow_run_id(), now=now,
    )
    if result.rows:
        get_run_logger().warning("Quarantined %d rows: %s", result.rows, dict(result.by_reason))
    return result


@task(name="Normalize Leads", **PRIVATE)
def normalize_leads(checked: CheckedBatch, worker: ChunkWorker | None = None) -> NormalizedBatch:
    """Clean and type the accepted rows: emails, names, phones, domains, countries, consent, intent."""
    return steps.normalize_leads(checked, worker)


@task(name="Create Lead Entry", **DB_TASK)
def create_lead_entries(subs: pd.DataFrame, batch_id: str, now: datetime,
                        hold: steps.Hold | None = None) -> steps.LeadWriteResult:
    """Upsert leads by normalized email and store new submissions, in one transaction.

    `hold`: the previous chunk's later steps run beside this task (PostgreSQL); see leadflow/steps/intake.py.
    """
    result = steps.create_lead_entries(store(), subs, batch_id=batch_id, flow_run_id=current_flow_run_id(), now=now,
                                       hold=hold)
    get_run_logger().info(
        "%d new submissions (%d already known): %d leads created, %d updated",
        result.submissions_new, result.submissions_duplicate, result.leads_created, result.leads_updated,
    )
    return result


@task(name="Update Lead Source", **DB_TASK)
def update_lead_sources(subs: pd.DataFrame, batch_id: str, now: datetime, settled: set[str] | None = None) -> int:
    """Keep first-touch attribution and move last-touch attribution to the latest submission."""
    moved = steps.update_lead_sources(store(), subs, batch_id=batch_id, flow_run_id=current_flow_run_id(), now=now,
                                      settled=settled or frozenset())
    get_run_logger().info("Attribution moved for %d leads", moved)
    return moved


@task(name="Start Intake Batch", **DB_TASK)
def start_intake_batch(batch_id: str, origin: str, source_name: str | None, now: datetime) -> None:
    """Record the intake batch this run is about to write, with the run and the process that own it."""
    owner = this_process()
    submissions.start_batch(store(), batch_id, origin, source_name, current_flow_run_id(), now,
                            owner=(owner.host, owner.pid, owner.started_at))


@task(name="Finish Intake Batch", **DB_TASK)
def finish_intake_batch(batch_id: str, status: str, summary: dict, now: datetime) -> None:
    """Record how the intake batch ended and what became of its rows."""
    submissions.finish_batch(store(), batch_id, status, summary, now)
