"""Backfill steps: plan the windows, split the history, take and record a window in the ledger, import it.

The window arithmetic lives in domain/backfill.py, the file splitting in io/backfill_files.py and the ledger's SQL
in crm/backfill.py; these functions put them together in the order the lead-backfill flow runs them.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadflow.config.settings import get_settings
from leadflow.crm import backfill as ledger
from leadflow.crm import submissions as batches
from leadflow.crm.store import Store, is_transient_db_error
from leadflow.domain import submissions as intake
from leadflow.domain.backfill import BackfillError, Window, make_windows, policy_version
from leadflow.domain.contract import CANONICAL_COLUMNS, ReasonCode
from leadflow.domain.privacy import mask_addresses
from leadflow.domain.qualification import load_qualification_policy
from leadflow.domain.summary import IntakeSummary, QualificationSummary
from leadflow.io import backfill_files
from leadflow.io.backfill_files import SplitManifest
from leadflow.io.processes import this_process
from leadflow.io.sources import MALFORMED_COLUMN, ROW_COLUMN, LeadFileError, inspect_lead_file, iter_lead_chunks
from leadflow.steps import qualification
from leadflow.steps.intake import (
    BULK_LOAD_ROWS,
    STATISTICS_TABLES,
    field_options,
    intake_chunks,
    overlap_chunks,
    plain_steps,
    plan_intake,
    quarantine_rows,
)

MALFORMED_ROW = "malformed_row"  # intake's reason code for an unreadable row (data_checks/intake.py)


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill will do: its inputs, windows, identity in the ledger and where it stages windows."""

    origin: str
    files: list[str]
    windows: list[Window]
    source_key: str
    policy_version: str
    work_dir: str


@dataclass
class WindowResult:
    """How one window's import ended."""

    window_id: str
    status: str
    rows: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    months: list[str] = field(default_factory=list)
    error: str | None = None


def plan_backfill(path: str, start: date, end: date, window: str, work_dir: str | None) -> BackfillPlan:
    """List the input files, cut the date range into windows and fix the backfill's identity in the ledger."""
    files = backfill_files.list_inputs(path)
    windows = make_windows(start, end, window)
    key = backfill_files.source_key(files)
    # The CRM's own folder by default: two CRMs backfilling the same export never share staged windows.
    base = Path(work_dir) if work_dir else get_settings().backfill_dir
    staging = base / key[:16] / f"{window}-{start:%Y%m%d}-{end:%Y%m%d}"
    return BackfillPlan(origin=str(Path(path).resolve()), files=[str(f) for f in files], windows=windows,
                        source_key=key, policy_version=policy_version(), work_dir=str(staging))


def split_history(plan: BackfillPlan, column_map: dict[str, str] | None, chunk_size: int,
                  submitted_at: str | None = None, date_order: str = "mdy") -> SplitManifest:
    """Split the inputs by submitted_at into one input per window, in bounded memory (reused when done before).

    `submitted_at` (an ISO time, from `--submitted-at`) dates every row of inputs without times; `date_order` is the
    day/month order of a file whose date column leaves it open.
    """
    return backfill_files.split_by_window([Path(f) for f in plan.files], plan.windows, Path(plan.work_dir),
                                          key=plan.source_key, column_map=column_map, chunk_size=chunk_size,
                                          submitted_at=submitted_at, date_order=date_order)


def windows_done_before(store: Store, plan: BackfillPlan) -> set[str]:
    """The windows of this plan's input already imported under its policy version."""
    return ledger.completed_windows(store, plan.source_key, plan.policy_version)


def take_window(store: Store, plan: BackfillPlan, window: Window, timeout: timedelta, *, flow_run_id: str | None,
                now: datetime) -> int | None:
    """Claim a window in the ledger; the attempt number, or None when it is done or another run imports it."""
    return ledger.start_window(store, source=plan.source_key, origin=plan.origin, window=window,
                               policy=plan.policy_version, flow_run_id=flow_run_id, now=now, timeout=timeout)


def record_window(store: Store, plan: BackfillPlan, window: Window, status: str, summary: dict[str, Any],
                  now: datetime) -> WindowResult:
    """Write a window's outcome to the ledger and return it."""
    rows = int(summary.get("rows_read") or 0)
    ledger.finish_window(store, source=plan.source_key, window_id=window.id, policy=plan.policy_version,
                         status=status, rows=rows, summary=summary, now=now)
    return WindowResult(window_id=window.id, status=status, rows=rows, summary=summary, months=window.months,
                        error=summary.get("error"))


def error_text(exc: BaseException, limit: int = 4000) -> str:
    """A window's error in full (with where it was raised) for the ledger, addresses masked."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return mask_addresses(f"{type(exc).__name__}: {exc}{where}")[:limit]


def import_window(store: Store, plan: BackfillPlan, window: Window, run: Callable[[], dict[str, Any]],
                  timeout: timedelta, *, flow_run_id: str | None, now: Callable[[], datetime]) -> WindowResult:
    """Take a window, run its import (`run`: intake in replay mode, or the undated quarantine) and record it.

    Returns status "skipped" when the window is done or another run has it; a failure is recorded and re-raised.
    """
    if take_window(store, plan, window, timeout, flow_run_id=flow_run_id, now=now()) is None:
        return WindowResult(window_id=window.id, status="skipped")
    try:
        summary = run()
    except BaseException as exc:
        record_window(store, plan, window, "failed", {"error": error_text(exc)}, now())
        raise
    return record_window(store, plan, window, "completed", summary, now())


def group_input(plan: BackfillPlan, windows: list[Window], parts: dict[str, str]) -> str:
    """The one input a group of adjacent windows is replayed from: their inputs joined, beside them."""
    first = Path(parts[windows[0].id])
    return backfill_files.join_parts([parts[w.id] for w in windows],
                                     first.with_name(f"group-{windows[0].id}--{windows[-1].id}.jsonl"))


def import_group(store: Store, plan: BackfillPlan, windows: list[Window], rows: dict[str, int],
                 run: Callable[[list[Window]], dict[str, Any]], timeout: timedelta, *, flow_run_id: str | None,
                 now: Callable[[], datetime], log: Callable[[str], None] = lambda _: None) -> list[WindowResult]:
    """Take adjacent windows, replay the taken ones in one pass (`run`), and record each window in its ledger row.

    One pass pays intake's and qualification's fixed costs (a chunk's checks, qualification's batch reads) once
    for the group. Each window keeps its own ledger row with its own rows (from the split); the group's counts are
    kept in its first window's row (`group`: the windows replayed together), so sums over the ledger stay exact.
    A failed pass is redone window by window (intake and qualification are idempotent), so a window that fails
    alone is recorded failed alone and the others complete; a kill leaves the taken windows running, and the next
    run takes them over after `timeout` and replays them again.
    """
    results: list[WindowResult] = []
    taken: list[Window] = []
    for window in windows:
        if take_window(store, plan, window, timeout, flow_run_id=flow_run_id, now=now()) is None:
            results.append(WindowResult(window_id=window.id, status="skipped"))
        else:
            taken.append(window)
    if len(taken) > 1:
        try:
            summary = run(taken)
        except Exception as exc:
            log(f"windows {taken[0].id}..{taken[-1].id} failed as a group ({type(exc).__name__}): "
                "replaying them one by one")
        except BaseException as exc:
            for window in taken:
                record_window(store, plan, window, "failed", {"error": error_text(exc)}, now())
            raise
        else:
            ids = [w.id for w in taken]
            for position, window in enumerate(taken):
                own = {"rows_read": int(rows.get(window.id, 0)), "group": ids}
                shared = {**summary, "group_rows_read": summary.get("rows_read")} if position == 0 else {}
                results.append(record_window(store, plan, window, "completed", {**shared, **own}, now()))
            return _in_order(windows, results)
    for window in taken:
        try:
            summary = run([window])
        except Exception as exc:
            results.append(record_window(store, plan, window, "failed", {"error": error_text(exc)}, now()))
            continue
        except BaseException as exc:
            record_window(store, plan, window, "failed", {"error": error_text(exc)}, now())
            raise
        results.append(record_window(store, plan, window, "completed", summary, now()))
    return _in_order(windows, results)


def _in_order(windows: list[Window], results: list[WindowResult]) -> list[WindowResult]:
    place = {w.id: i for i, w in enumerate(windows)}
    return sorted(results, key=lambda r: place[r.window_id])


# Intake steps that start CPU-bound work and return a future: they touch no database.
STARTED_STEPS = frozenset({"check_lead_batch", "normalize_leads"})
STEP_RETRIES = 3


def retrying(step: Callable[..., Any], retries: int = STEP_RETRIES, pause: float = 1.0) -> Callable[..., Any]:
    """A step retried after a lock, deadlock or dropped connection, as its task would be (DB_TASK in tasks/common).

    Every step writes in one transaction, so a retry after a rollback is safe; parallel windows that share a
    returning person or an account can deadlock on their rows, and PostgreSQL then aborts one of them.
    """
    def call(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(retries + 1):
            try:
                return step(*args, **kwargs)
            except Exception as exc:
                if attempt == retries or not is_transient_db_error(exc):
                    raise
                # Jittered, so the two windows of a deadlock do not meet again at once.
                time.sleep(pause * random.uniform(0.2, 1.0) * (attempt + 1))
        raise AssertionError("unreachable")

    return call


def _with_retries(steps: Any, skip: frozenset[str] = frozenset()) -> Any:
    """These steps (a dataclass of callables), each retried on transient database errors (but those in `skip`)."""
    return dataclasses.replace(steps, **{f.name: retrying(getattr(steps, f.name))
                                         for f in dataclasses.fields(steps) if f.name not in skip})


def replay_window(store: Store, part: str | Path, *, source_name: str | None, chunk_size: int | None,
                  default_country: str | None, flow_run_id: str | None,
                  clock: Callable[[], datetime]) -> dict[str, Any]:
    """Replay one window's input through intake and qualification in replay mode, in this process; its summary.

    The same steps, checks and writes as a lead-intake run with `replay=True` (and its lead-qualification per
    chunk), called as plain functions: a window is one unit of work, so the dozen task and flow runs, artifacts and
    check-worker process a lead-intake run would start for it are fixed costs the backfill does without (its own
    window task and ledger row say what the window did). The intake batch row is kept, owned by this process, so
    that a killed window's batch is found dead like any intake run's.
    """
    started = time.perf_counter()
    origin = str(part)
    plan = plan_intake(origin, None, source_name, fields=field_options(default_country, None))
    summary = IntakeSummary(batch_id=str(uuid.uuid4()), origin=origin)
    summary.note_plan(plan.profile, plan.submitted_at)
    owner = this_process()
    batches.start_batch(store, summary.batch_id, origin, source_name, flow_run_id, clock(),
                        owner=(owner.host, owner.pid, owner.started_at))
    settings = get_settings()
    rules = load_qualification_policy("qualification")
    qualify_steps = _with_retries(qualification.local_steps(store, flow_run_id=flow_run_id))
    # The planner needs statistics of tables the earlier windows filled. Each window used to check and ANALYZE the
    # tables grown by a quarter (15% of a 100k backfill's time, in windows of 4,000 rows); now this process's first
    # window refreshes the never-analyzed and stale ones, and later ones only when the rows this process stored
    # since its last ANALYZE exceed the biggest table's rows then (the bulk-load rule; small windows count at
    # their end).
    store.refresh_statistics(STATISTICS_TABLES, added=0)

    def qualify_chunk(lead_ids: list[int]) -> None:
        if not lead_ids:
            return
        tick = time.perf_counter()
        done = QualificationSummary(replay=True, policy_version=rules.version)
        # In id order, as lead-qualification takes them: parallel windows then lock shared leads in one order.
        ids = sorted({int(i) for i in lead_ids})
        qualification.qualify(qualify_steps, ids, rules, done, replay=True, timezone=settings.timezone,
                              clock=clock, chunk_size=settings.chunk_size)
        summary.add_qualification(done.as_dict())
        summary.add_time("lead_qualification", time.perf_counter() - tick)
        # Its steps too (a lead-intake run keeps them in its qualification subflow's summary artifact).
        for step, spent in done.step_seconds.items():
            summary.add_time(f"lead_qualification.{step}", spent)

    try:
        intake_chunks(_with_retries(plain_steps(store, flow_run_id=flow_run_id), STARTED_STEPS),
                      iter_lead_chunks(plan.lead_file, chunk_size or settings.chunk_size), plan, summary,
                      after_chunk=qualify_chunk, overlap=overlap_chunks(store))
    except BaseException:
        summary.seconds = round(time.perf_counter() - started, 3)
        batches.finish_batch(store, summary.batch_id, "failed", summary.as_dict(), clock())
        raise
    if summary.submissions_new < BULK_LOAD_ROWS:
        # Create Lead Entry counts bulk loads itself; a window smaller than one is counted here.
        store.refresh_statistics(STATISTICS_TABLES, added=summary.submissions_new)
    if in_dask_worker():
        # The flow waits for its own process's ANALYZE only, and a LocalCluster's workers are closed when the flow
        # ends, killing one still running (a worker cannot tell its last window). So a worker's window waits for
        # its ANALYZE itself, giving up its overlap with the next window for statistics that are surely in place.
        store.wait_for_statistics()
    summary.seconds = round(time.perf_counter() - started, 3)
    batches.finish_batch(store, summary.batch_id, "completed", summary.as_dict(), clock())
    return summary.as_dict()


def in_dask_worker() -> bool:
    """Whether this code runs as a task of a Dask worker (whose process may close when the flow ends)."""
    # Only a process that imported distributed can be a worker: the others do not pay for importing it.
    worker = sys.modules.get("distributed.worker")
    if worker is None:
        return False
    try:
        worker.get_worker()
    except ValueError:
        return False
    return True


def ledger_table(store: Store, plan: BackfillPlan) -> list[dict[str, Any]]:
    """This backfill's ledger as table rows (window, status, rows, attempts, new submissions, quarantined)."""
    return [
        {"window": r["window_id"], "status": r["status"], "rows": r["rows"], "attempts": r["attempts"],
         "new_submissions": (r["summary"] or {}).get("submissions_new", 0),
         "quarantined": (r["summary"] or {}).get("quarantined", 0)}
        for r in ledger.ledger_rows(store, plan.source_key, plan.policy_version)
    ]


def undated_reasons(prepared: pd.DataFrame) -> dict[int, list[str]]:
    """Why each row of the undated input cannot be replayed: unreadable, no submitted_at, or one that is no time."""
    malformed = prepared[MALFORMED_COLUMN].notna()
    blank = prepared["submitted_at"].isna()
    codes = np.where(malformed, MALFORMED_ROW,
                     np.where(blank, ReasonCode.MISSING_SUBMITTED_AT, ReasonCode.INVALID_SUBMITTED_AT))
    return {int(row): [str(code)] for row, code in zip(prepared[ROW_COLUMN], codes, strict=True)}


@dataclass
class UndatedResult:
    """What quarantining the undated input did, in the shape of an intake summary's counts."""

    rows_read: int = 0
    blank_rows: int = 0
    quarantined: int = 0
    quarantined_new: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The counts, for the ledger's summary."""
        return asdict(self)


def quarantine_undated(
    store: Store, part: str | Path, *, batch_id: str, origin: str, flow_run_id: str | None, now: datetime,
    chunk_size: int = 50_000, default_source: str | None = None,
) -> UndatedResult:
    """Quarantine every row of the undated input with its reason code, instead of replaying it through intake.

    Intake would quarantine them too, but a chunk of mostly undated rows trips its batch check (a mostly broken
    chunk stops the run), and in a history export such rows are what the undated input is made of. Records are
    keyed by payload and reason like intake's, so a re-run or a later intake of the same rows adds nothing.
    """
    try:
        lead_file = inspect_lead_file(part)
    except LeadFileError as exc:
        raise BackfillError(str(exc)) from exc
    mapping = {c: c for c in CANONICAL_COLUMNS}
    result = UndatedResult()
    reasons: Counter[str] = Counter()
    for raw in iter_lead_chunks(lead_file, chunk_size):
        result.rows_read += len(raw)
        prepared = intake.prepare_batch(raw, mapping, default_source)
        blank = intake.blank_rows(prepared)
        result.blank_rows += int(blank.sum())
        prepared = prepared.loc[~blank]
        done = quarantine_rows(store, prepared, undated_reasons(prepared), batch_id=batch_id, origin=origin,
                               flow_run_id=flow_run_id, now=now)
        result.quarantined += done.rows
        result.quarantined_new += done.new_records
        reasons.update(done.by_reason)
    result.quarantined_by_reason = dict(sorted(reasons.items()))
    return result
