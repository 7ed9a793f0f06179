"""Task shells for lead-backfill: plan the windows, split the history, import one window through intake."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from leadflow.crm.submissions import batch_summary
from leadflow.domain.backfill import UNDATED_WINDOW, Window
from leadflow.io.backfill_files import SplitManifest
from leadflow.steps import backfill as bf
from leadflow.steps.backfill import BackfillPlan, WindowResult
from tasks.common import DB_TASK, PRIVATE, current_flow_run_id, store, utc_now

__all__ = ["BackfillPlan", "WindowResult", "import_window", "import_window_group", "plan_backfill",
           "publish_backfill_summary", "quarantine_undated_rows", "record_window", "split_history", "take_window",
           "window_run_summary", "windows_done_before"]


@task(name="Plan Backfill Windows")
def plan_backfill(path: str, start: date, end: date, window: str, work_dir: str | None) -> BackfillPlan:
    """List the input files, cut the date range into windows and fix the backfill's identity in the ledger."""
    plan = bf.plan_backfill(path, start, end, window, work_dir)
    get_run_logger().info("Backfill of %d file(s) in %d %s windows from %s to %s", len(plan.files),
                          len(plan.windows), window, start, end)
    return plan


@task(name="Split History by Window", **PRIVATE)
def split_history(plan: BackfillPlan, column_map: dict[str, str] | None, chunk_size: int,
                  submitted_at: str | None = None, date_order: str = "mdy") -> SplitManifest:
    """Split the inputs by submitted_at into one input per window, in bounded memory (reused when done before)."""
    manifest = bf.split_history(plan, column_map, chunk_size, submitted_at, date_order)
    get_run_logger().info("Split %d rows into %d windows (%d outside the dates, %d undated)", manifest.rows_read,
                          len(manifest.windows), manifest.outside_range, manifest.undated)
    return manifest


@task(name="List Done Backfill Windows", **DB_TASK)
def windows_done_before(plan: BackfillPlan) -> set[str]:
    """The windows of this plan's input already imported under its policy version."""
    return bf.windows_done_before(store(), plan)


@task(name="Take Backfill Window", **DB_TASK)
def take_window(plan: BackfillPlan, window: Window, timeout_minutes: int) -> int | None:
    """Claim a window in the ledger; the attempt number, or None when it is done or another run imports it."""
    return bf.take_window(store(), plan, window, timedelta(minutes=timeout_minutes),
                          flow_run_id=current_flow_run_id(), now=utc_now())


@task(name="Record Backfill Window", **DB_TASK)
def record_window(plan: BackfillPlan, window: Window, status: str, summary: dict[str, Any]) -> WindowResult:
    """Write a window's outcome to the ledger and return it."""
    return bf.record_window(store(), plan, window, status, summary, utc_now())


@task(name="Read Window Run Summary", **DB_TASK)
def window_run_summary(flow_run_id: str) -> dict[str, Any]:
    """What a window's remote intake run recorded for its batch (results of remote runs are not kept)."""
    return batch_summary(store(), flow_run_id)


@task(name="Import Backfill Window", retries=1, retry_delay_seconds=5, **PRIVATE)
def import_window(plan: BackfillPlan, window: Window, part: str, source_name: str | None,
                  chunk_size: int | None, timeout_minutes: int, default_country: str | None = None) -> WindowResult:
    """Replay one window's input through intake and qualification in replay mode, recorded in the ledger."""
    crm, flow_run_id = store(), current_flow_run_id()
    result = bf.import_window(
        crm, plan, window,
        lambda: bf.replay_window(crm, part, source_name=source_name, chunk_size=chunk_size,
                                 default_country=default_country, flow_run_id=flow_run_id, clock=utc_now),
        timedelta(minutes=timeout_minutes), flow_run_id=flow_run_id, now=utc_now)
    if result.status == "skipped":
        get_run_logger().info("Window %s is done or being imported by another run: skipped", window.id)
    else:
        get_run_logger().info("Window %s: %d rows in %.1f s", window.id, result.rows,
                              float(result.summary.get("seconds") or 0))
    return result


@task(name="Import Backfill Window Group", retries=1, retry_delay_seconds=5, **PRIVATE)
def import_window_group(plan: BackfillPlan, windows: list[Window], parts: dict[str, str], rows: dict[str, int],
                        source_name: str | None, chunk_size: int | None, timeout_minutes: int,
                        default_country: str | None = None) -> list[WindowResult]:
    """Replay adjacent small windows in one pass through intake and qualification, one ledger row per window."""
    crm, flow_run_id = store(), current_flow_run_id()
    logger = get_run_logger()

    def replay(taken: list[Window]) -> dict[str, Any]:
        if len(taken) == 1:
            return bf.replay_window(crm, parts[taken[0].id], source_name=source_name, chunk_size=chunk_size,
                                    default_country=default_country, flow_run_id=flow_run_id, clock=utc_now)
        joined = bf.group_input(plan, taken, parts)
        try:
            return bf.replay_window(crm, joined, source_name=source_name, chunk_size=chunk_size,
                                    default_country=default_country, flow_run_id=flow_run_id, clock=utc_now)
        finally:
            # A copy of the windows' rows: kept no longer than the pass (erasure finds the window inputs).
            Path(joined).unlink(missing_ok=True)

    results = bf.import_group(crm, plan, windows, rows, replay, timedelta(minutes=timeout_minutes),
                              flow_run_id=flow_run_id, now=utc_now, log=logger.warning)
    done = [r for r in results if r.status == "completed"]
    logger.info("Windows %s..%s: %d imported (%d rows), %d skipped, %d failed", windows[0].id, windows[-1].id,
                len(done), sum(r.rows for r in done), sum(r.status == "skipped" for r in results),
                sum(r.status == "failed" for r in results))
    return results


@task(name="Quarantine Undated Rows", retries=1, retry_delay_seconds=5, **PRIVATE)
def quarantine_undated_rows(plan: BackfillPlan, part: str, source_name: str | None, chunk_size: int | None,
                            timeout_minutes: int) -> WindowResult:
    """Quarantine the rows without a usable submitted_at (they cannot be replayed), recorded in the ledger."""
    crm, flow_run_id = store(), current_flow_run_id()

    def quarantine() -> dict[str, Any]:
        return bf.quarantine_undated(crm, part, batch_id=str(uuid.uuid4()), origin=plan.origin,
                                     flow_run_id=flow_run_id, now=utc_now(), chunk_size=chunk_size or 50_000,
                                     default_source=source_name).as_dict()

    result = bf.import_window(crm, plan, UNDATED_WINDOW, quarantine, timedelta(minutes=timeout_minutes),
                              flow_run_id=flow_run_id, now=utc_now)
    if result.status == "skipped":
        get_run_logger().info("Undated rows are done or being quarantined by another run: skipped")
    else:
        get_run_logger().warning("Quarantined %d rows without a usable submitted_at (%d new records): %s",
                                 result.summary["quarantined"], result.summary["quarantined_new"],
                                 result.summary["quarantined_by_reason"])
    return result


def publish_backfill_summary(plan: BackfillPlan, manifest: SplitManifest) -> None:
    """The ledger of this backfill as a table artifact under a stable key."""
    rows = bf.ledger_table(store(), plan)
    create_table_artifact(
        key="lead-backfill-summary",
        table=rows or [{"window": "none", "status": "no rows in range", "rows": 0, "attempts": 0,
                        "new_submissions": 0, "quarantined": 0}],
        description=(f"Backfill of {Path(plan.origin).name}: {manifest.rows_read} rows read, "
                     f"{manifest.outside_range} outside the dates, {manifest.undated} undated"),
    )
