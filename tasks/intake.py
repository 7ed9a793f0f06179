"""Task shells for the lead-intake steps: check, quarantine, normalize, create lead entries, update sources."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from prefect import get_run_logger, task

from data_checks.intake import check_intake_columns
from data_checks.runner import CheckOutcome, gx_context, raise_for_failures
from leadflow.config.settings import get_settings
from leadflow.domain import submissions as intake
from leadflow.domain.contract import REQUIRED_COLUMNS, load_column_map, resolve_columns
from leadflow.io.sources import ROW_COLUMN, LeadFile, inspect_lead_file
from leadflow.steps import intake as leads
from leadflow.steps.chunk_worker import COLUMNS_FAILED, ChunkWorker, prepare_and_check, prepare_chunk
from tasks.common import DB_TASK, PRIVATE, current_flow_run_id, retry_on_transient_io, store

# A chunk that stored this many submissions changed the tables enough to refresh PostgreSQL's statistics.
BULK_LOAD_ROWS = 5_000
STATISTICS_TABLES = ("leads", "lead_submissions", "lead_events", "accounts", "crm_tasks", "outbox")
BROKEN_BATCH_HINT = "most rows are broken: check the column map and the file format"


@dataclass(frozen=True)
class IntakePlan:
    """How to read one input: the file, which header feeds which column, and the default source."""

    lead_file: LeadFile
    mapping: dict[str, str]
    default_source: str | None
    # False when the required-columns suite was left to the first chunk's check (in the check worker).
    columns_checked: bool = True

    @property
    def columns(self) -> list[str]:
        """The canonical columns this input provides (a default source provides `source`)."""
        return sorted(set(self.mapping.values()) | ({"source"} if self.default_source else set()))

    def missing_hint(self) -> str:
        """What to tell the user when required columns are missing."""
        provided = self.columns
        missing = [c for c in REQUIRED_COLUMNS if c not in provided]
        return f"no column for {', '.join(missing)}; pass a column map" if missing else ""

    def describe(self) -> str:
        """One line for logs: format and the mapped columns."""
        mapped = ", ".join(f"{h}->{c}" for h, c in self.mapping.items() if h != c)
        return f"{self.lead_file.format} with {len(self.lead_file.headers)} columns; renamed: {mapped or 'none'}"


def plan_intake(path: str, column_map: dict[str, str] | str | None, source_name: str | None,
                check_columns: bool = True) -> IntakePlan:
    """Inspect an input and resolve its columns; raises when it cannot be read or lacks required columns.

    `check_columns=False` leaves the required-columns suite to the first chunk's check (see `IntakePlan`), unless
    a required column is plainly missing: then the suite runs here, so that such a file still fails before any read.
    """
    lead_file = inspect_lead_file(path)
    explicit = load_column_map(column_map) if isinstance(column_map, str) else column_map
    plan = IntakePlan(lead_file=lead_file, mapping=resolve_columns(lead_file.headers, explicit),
                      default_source=source_name)
    hint = plan.missing_hint()
    if not check_columns and not hint:
        return dataclasses.replace(plan, columns_checked=False)
    raise_for_failures(check_intake_columns(plan.columns), hint=hint)
    return plan


@task(name="Inspect Lead File", retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_on_transient_io, **PRIVATE)
def inspect_lead_input(path: str, column_map: dict[str, str] | str | None, source_name: str | None,
                       check_columns: bool = True) -> IntakePlan:
    """Detect format and columns of an input and check it has the required columns."""
    plan = plan_intake(path, column_map, source_name, check_columns)
    get_run_logger().info("Input is %s%s", plan.describe(),
                          "" if check_columns else "; its columns are checked with the first chunk")
    return plan


@dataclass
class CheckedBatch:
    """A prepared chunk without its blank rows, and what the checks said about it.

    When a chunk worker checked it, `prepared` holds only the rejected rows and `token` names the accepted
    rows the worker kept for Normalize Leads.
    """

    prepared: pd.DataFrame
    outcome: CheckOutcome
    blank_rows: int
    seconds: float
    rows: int = 0
    token: str | None = None
    # Set when the chunk was normalized while the worker checked it: its accepted rows, already clean.
    subs: pd.DataFrame | None = None
    normalize_seconds: float = 0.0


@dataclass
class NormalizedBatch:
    """The accepted rows of a chunk as clean submissions, one per row."""

    subs: pd.DataFrame
    seconds: float


def _raise_check_failure(outcome: CheckOutcome, failed: str, plan: IntakePlan) -> None:
    hint = plan.missing_hint() if failed == COLUMNS_FAILED else BROKEN_BATCH_HINT
    raise_for_failures(outcome, hint=hint)


def _check_there_normalize_here(raw: pd.DataFrame, plan: IntakePlan, now: datetime, tolerance: pd.Timedelta,
                                worker: ChunkWorker) -> CheckedBatch:
    """Prepare a chunk here, check it in the worker and normalize it here meanwhile; keep the accepted rows.

    For a run's first chunk: the worker is still importing Great Expectations when it arrives, and the flow would
    otherwise wait idle. Each row's clean values depend on that row alone, so normalizing the rows the checks then
    reject changes nothing for the others; they are dropped here and quarantined from their prepared rows as usual.
    """
    started = time.perf_counter()
    prepared, blank_rows = prepare_chunk(raw, plan.mapping, plan.default_source)
    pending = worker.submit_check(prepared, now, tolerance, None if plan.columns_checked else plan.columns)
    tick = time.perf_counter()
    subs = intake.normalize_batch(prepared)
    normalize_seconds = time.perf_counter() - tick
    # This process needs Great Expectations too (the spam and score guards): the flow started importing it in a
    # thread; finishing that here, while the worker checks, fills a wait instead of delaying Check Spam.
    gx_context()
    outcome, failed = pending.result()
    if failed:
        _raise_check_failure(outcome, failed, plan)
    rejected = prepared[ROW_COLUMN].isin(list(outcome.row_reasons))
    return CheckedBatch(prepared=prepared.loc[rejected], outcome=outcome, blank_rows=blank_rows,
                        seconds=time.perf_counter() - started - normalize_seconds, rows=len(prepared),
                        subs=subs.loc[~rejected.to_numpy()], normalize_seconds=normalize_seconds)


@task(name="Check Lead Batch", **PRIVATE)
def check_lead_batch(raw: pd.DataFrame, plan: IntakePlan, now: datetime, worker: ChunkWorker | None = None,
                     normalize_here: bool = False) -> CheckedBatch:
    """Prepare a raw chunk and validate it with the intake suites; stops on a batch-level failure.

    With `normalize_here` (a run's first chunk, while the worker warms up) the worker runs the suites and this
    task normalizes the chunk meanwhile; Normalize Leads then hands on the accepted rows.
    """
    started = time.perf_counter()
    tolerance = pd.Timedelta(minutes=get_settings().future_tolerance_minutes)
    if worker is not None and normalize_here:
        checked = _check_there_normalize_here(raw, plan, now, tolerance, worker)
    elif worker is not None:
        done = worker.check(raw, plan.mapping, plan.default_source, now, tolerance)
        if done.batch_failed:
            raise_for_failures(done.outcome, hint=BROKEN_BATCH_HINT)
        checked = CheckedBatch(prepared=done.rejected, outcome=done.outcome, blank_rows=done.blank_rows,
                               seconds=time.perf_counter() - started, rows=done.rows, token=done.token)
    else:
        here = prepare_and_check(raw, plan.mapping, plan.default_source, now, tolerance)
        if here.batch_failed:
            raise_for_failures(here.outcome, hint=BROKEN_BATCH_HINT)
        checked = CheckedBatch(prepared=here.prepared, outcome=here.outcome, blank_rows=here.blank_rows,
                               seconds=time.perf_counter() - started, rows=len(here.prepared))
    get_run_logger().info("Checked %d rows: %d rejected", checked.rows, len(checked.outcome.row_reasons))
    return checked


@task(name="Quarantine Rejected Rows", **DB_TASK)
def quarantine_rejected_rows(
    prepared: pd.DataFrame, outcome: CheckOutcome, batch_id: str, origin: str, now: datetime
) -> leads.QuarantineResult:
    """Store rejected rows with their raw payload and reason codes."""
    result = leads.quarantine_rows(
        store(), prepared, outcome.row_reasons, batch_id=batch_id, origin=origin,
        flow_run_id=current_flow_run_id(), now=now,
    )
    if result.rows:
        get_run_logger().warning("Quarantined %d rows: %s", result.rows, dict(result.by_reason))
    return result


@task(name="Normalize Leads", **PRIVATE)
def normalize_leads(checked: CheckedBatch, worker: ChunkWorker | None = None) -> NormalizedBatch:
    """Clean and type the accepted rows: emails, names, phones, domains, countries, consent, intent."""
    if checked.subs is not None:
        return NormalizedBatch(subs=checked.subs, seconds=checked.normalize_seconds)
    if checked.token is not None and worker is not None:
        subs, seconds = worker.normalize(checked.token)
        return NormalizedBatch(subs=subs, seconds=seconds)
    started = time.perf_counter()
    prepared = checked.prepared
    accepted = prepared.loc[~prepared[ROW_COLUMN].isin(list(checked.outcome.row_reasons))]
    return NormalizedBatch(subs=intake.normalize_batch(accepted), seconds=time.perf_counter() - started)


@task(name="Create Lead Entry", **DB_TASK)
def create_lead_entries(subs: pd.DataFrame, batch_id: str, now: datetime) -> leads.LeadWriteResult:
    """Upsert leads by normalized email and store new submissions, in one transaction."""
    crm = store()
    result = leads.create_lead_entries(crm, subs, batch_id=batch_id, flow_run_id=current_flow_run_id(), now=now)
    if result.submissions_new >= BULK_LOAD_ROWS:
        # After a bulk load the planner needs fresh statistics for the rest of this run (and the next ones).
        crm.refresh_statistics(STATISTICS_TABLES)
    get_run_logger().info(
        "%d new submissions (%d already known): %d leads created, %d updated",
        result.submissions_new, result.submissions_duplicate, result.leads_created, result.leads_updated,
    )
    return result


@task(name="Update Lead Source", **DB_TASK)
def update_lead_sources(subs: pd.DataFrame, batch_id: str, now: datetime, settled: set[str] | None = None) -> int:
    """Keep first-touch attribution and move last-touch attribution to the latest submission."""
    moved = leads.update_lead_sources(store(), subs, batch_id=batch_id, flow_run_id=current_flow_run_id(), now=now,
                                      settled=settled or frozenset())
    get_run_logger().info("Attribution moved for %d leads", moved)
    return moved
