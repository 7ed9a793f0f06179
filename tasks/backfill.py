"""Task shells for lead-backfill: plan the windows, split the history, import one window through intake."""

from __future__ import annotations

import traceback
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from leadflow.steps import backfill as bf
from tasks.common import PRIVATE, current_flow_run_id, store, utc_now

DEFAULT_WORK_DIR = Path("leadflow-output/backfill")


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill will do: its inputs, windows, identity in the ledger and where it stages windows."""

    origin: str
    files: list[str]
    windows: list[bf.Window]
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


@task(name="Plan Backfill Windows")
def plan_backfill(path: str, start: date, end: date, window: str, work_dir: str | None) -> BackfillPlan:
    """List the input files, cut the date range into windows and fix the backfill's identity in the ledger."""
    files = bf.list_inputs(path)
    windows = bf.make_windows(start, end, window)
    key = bf.source_key(files)
    base = Path(work_dir) if work_dir else DEFAULT_WORK_DIR
    staging = base / key[:16] / f"{window}-{start:%Y%m%d}-{end:%Y%m%d}"
    get_run_logger().info("Backfill of %d file(s) in %d %s windows from %s to %s", len(files), len(windows),
                          window, start, end)
    return BackfillPlan(origin=str(Path(path).resolve()), files=[str(f) for f in files], windows=windows,
                        source_key=key, policy_version=bf.policy_version(), work_dir=str(staging))


@task(name="Split History by Window", **PRIVATE)
def split_history(plan: BackfillPlan, column_map: dict[str, str] | None, chunk_size: int) -> bf.SplitManifest:
    """Split the inputs by submitted_at into one input per window, in bounded memory (reused when done before)."""
    manifest = bf.split_by_window([Path(f) for f in plan.files], plan.windows, Path(plan.work_dir),
                                  key=plan.source_key, column_map=column_map, chunk_size=chunk_size)
    get_run_logger().info("Split %d rows into %d windows (%d outside the dates, %d undated)", manifest.rows_read,
                          len(manifest.windows), manifest.outside_range, manifest.undated)
    return manifest


def take_window(plan: BackfillPlan, window: bf.Window, timeout_minutes: int) -> int | None:
    """Claim a window in the ledger; the attempt number, or None when it is done or another run imports it."""
    return bf.start_window(store(), source=plan.source_key, origin=plan.origin, window=window,
                           policy=plan.policy_version, flow_run_id=current_flow_run_id(), now=utc_now(),
                           timeout=timedelta(minutes=timeout_minutes))


def record_window(plan: BackfillPlan, window: bf.Window, status: str, summary: dict[str, Any]) -> WindowResult:
    """Write a window's outcome to the ledger and return it."""
    rows = int(summary.get("rows_read") or 0)
    bf.finish_window(store(), source=plan.source_key, window_id=window.id, policy=plan.policy_version,
                     status=status, rows=rows, summary=summary, now=utc_now())
    return WindowResult(window_id=window.id, status=status, rows=rows, summary=summary, months=window.months,
                        error=summary.get("error"))


@task(name="Import Backfill Window", retries=1, retry_delay_seconds=5, **PRIVATE)
def import_window(plan: BackfillPlan, window: bf.Window, part: str, source_name: str | None,
                  chunk_size: int | None, timeout_minutes: int) -> WindowResult:
    """Replay one window's input through lead-intake (and qualification) in replay mode, recorded in the ledger."""
    from flows.intake import lead_intake

    if take_window(plan, window, timeout_minutes) is None:
        get_run_logger().info("Window %s is done or being imported by another run: skipped", window.id)
        return WindowResult(window_id=window.id, status="skipped")
    try:
        summary = lead_intake(path=part, source_name=source_name, chunk_size=chunk_size, replay=True)
    except BaseException as exc:
        record_window(plan, window, "failed", {"error": error_text(exc)})
        raise
    return record_window(plan, window, "completed", summary)


@task(name="Quarantine Undated Rows", retries=1, retry_delay_seconds=5, **PRIVATE)
def quarantine_undated_rows(plan: BackfillPlan, part: str, source_name: str | None, chunk_size: int | None,
                            timeout_minutes: int) -> WindowResult:
    """Quarantine the rows without a usable submitted_at (they cannot be replayed), recorded in the ledger."""
    window = bf.UNDATED_WINDOW
    if take_window(plan, window, timeout_minutes) is None:
        get_run_logger().info("Undated rows are done or being quarantined by another run: skipped")
        return WindowResult(window_id=window.id, status="skipped")
    try:
        result = bf.quarantine_undated(store(), part, batch_id=str(uuid.uuid4()), origin=plan.origin,
                                       flow_run_id=current_flow_run_id(), now=utc_now(),
                                       chunk_size=chunk_size or 50_000, default_source=source_name)
    except BaseException as exc:
        record_window(plan, window, "failed", {"error": error_text(exc)})
        raise
    get_run_logger().warning("Quarantined %d rows without a usable submitted_at (%d new records): %s",
                             result.quarantined, result.quarantined_new, result.quarantined_by_reason)
    return record_window(plan, window, "completed", result.as_dict())


def error_text(exc: BaseException, limit: int = 4000) -> str:
    """A window's error in full (with where it was raised) for the ledger, addresses masked."""
    from leadflow.domain.privacy import mask_addresses

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return mask_addresses(f"{type(exc).__name__}: {exc}{where}")[:limit]


def publish_backfill_summary(plan: BackfillPlan, manifest: bf.SplitManifest) -> None:
    """The ledger of this backfill as a table artifact under a stable key."""
    rows = [
        {"window": r["window_id"], "status": r["status"], "rows": r["rows"], "attempts": r["attempts"],
         "new_submissions": (r["summary"] or {}).get("submissions_new", 0),
         "quarantined": (r["summary"] or {}).get("quarantined", 0)}
        for r in bf.ledger_rows(store(), plan.source_key, plan.policy_version)
    ]
    create_table_artifact(
        key="lead-backfill-summary",
        table=rows or [{"window": "none", "status": "no rows in range", "rows": 0, "attempts": 0,
                        "new_submissions": 0, "quarantined": 0}],
        description=(f"Backfill of {Path(plan.origin).name}: {manifest.rows_read} rows read, "
                     f"{manifest.outside_range} outside the dates, {manifest.undated} undated"),
    )
