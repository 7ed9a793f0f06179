"""lead-backfill: replay lead history in windows through intake in replay mode, resumably, then redo reports."""

from __future__ import annotations

import time
from datetime import date
from pathlib import PurePosixPath
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.hooks import notify_ops_on_failure
from leadflow.config.settings import get_settings
from leadflow.domain.backfill import UNDATED, UNDATED_WINDOW, Window, group_limit, group_windows
from leadflow.domain.contract import resolve_submitted_at
from leadflow.io.backfill_files import SplitManifest
from leadflow.steps.intake import field_options, wait_for_statistics
from tasks.backfill import (
    BackfillPlan,
    WindowResult,
    import_window,
    import_window_group,
    plan_backfill,
    publish_backfill_summary,
    quarantine_undated_rows,
    record_window,
    split_history,
    take_window,
    window_run_summary,
    windows_done_before,
)

FILE_IMPORT_DEPLOYMENT = "lead-intake/file-import"
# `leadflow serve` names its deployments with this suffix (deployments/serve.py SERVED_SUFFIX).
SERVED_SUFFIX = "-served"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def backfill_run_name() -> str:
    """Name runs after the input, the dates and the window size."""
    params = flow_run.parameters
    name = PurePosixPath(str(params.get("path", "input")).rstrip("/")).name
    return f"backfill-{name}-{params.get('start')}..{params.get('end')}-{params.get('window', 'month')}"


class _Progress:
    """The `lead-backfill-progress` artifact: windows done out of total."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.artifact_id = create_progress_artifact(progress=self.percent, key="lead-backfill-progress",
                                                    description=self.text)

    @property
    def percent(self) -> float:
        return 100.0 if not self.total else round(100.0 * self.done / self.total, 1)

    @property
    def text(self) -> str:
        return f"{self.done} of {self.total} windows done"

    def step(self) -> None:
        self.done += 1
        update_progress_artifact(self.artifact_id, progress=self.percent, description=self.text)


@flow(name="lead-backfill", flow_run_name=backfill_run_name, task_runner=ThreadPoolTaskRunner(max_workers=2),
      on_failure=[notify_ops_on_failure], on_crashed=[notify_ops_on_failure], log_prints=False)
def lead_backfill(
    path: str,
    start: date,
    end: date,
    window: Literal["day", "week", "month"] = "month",
    runner: Literal["threads", "dask", "deployment"] = "threads",
    dask_address: str | None = None,
    max_parallel: int = 2,
    source_name: str | None = None,
    column_map: dict[str, str] | None = None,
    chunk_size: int | None = None,
    work_dir: str | None = None,
    window_timeout_minutes: int = 60,
    recompute_reports: bool = True,
    submitted_at: str | None = None,
    default_country: str | None = None,
    date_order: str | None = None,
    group_rows: int | None = None,
) -> dict[str, Any]:
    """Replay a file or folder of lead exports between two dates, window by window, skipping windows already done.

    Args:
        path: A lead export or a folder of them (local paths; workers must see the same files).
        start: First day to replay (UTC).
        end: Last day to replay, inclusive (UTC).
        window: Size of the windows: day, week or month.
        runner: Where windows run: threads of this flow, a Dask cluster, or runs of the file-import deployment.
        dask_address: Scheduler address of an existing Dask cluster; empty starts a LocalCluster.
        max_parallel: Windows imported at the same time (threads, Dask workers, or deployment runs in flight).
        source_name: Channel for rows that name none.
        column_map: Export header -> canonical column.
        chunk_size: Rows per chunk when splitting and importing (default LEADFLOW_CHUNK_SIZE).
        work_dir: Where the per-window inputs are staged (default LEADFLOW_BACKFILL_DIR: the CRM's own folder,
            `leadflow-output/<crm>/backfill`).
        window_timeout_minutes: A window another run started this long ago counts as abandoned and is taken over.
        recompute_reports: Recompute the monthly reports of the months this backfill changed.
        submitted_at: `now` or an ISO time with zone that dates every row, for exports without times; recorded on
            each submission (its raw payload's `submitted_at_from_option`).
        default_country: Country of national phone numbers of leads without one (default LEADFLOW_DEFAULT_COUNTRY).
        date_order: mdy or dmy for a file whose date column leaves the day/month order open (default
            LEADFLOW_DATE_ORDER); each file's column is decided as a whole, never row by row.
        group_rows: Adjacent windows holding this many rows together are replayed in one pass (each keeps its
            own ledger row); default: one chunk, or less so that every parallel slot gets work; 0 keeps every
            window alone.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    chunk_size = chunk_size or get_settings().chunk_size
    fields = field_options(default_country, date_order)
    plan = plan_backfill(path, start, end, window, work_dir)
    manifest = split_history(plan, column_map, chunk_size, resolve_submitted_at(submitted_at), fields.date_order)
    windows = [w for w in [*plan.windows, UNDATED_WINDOW] if w.id in manifest.windows]
    done_before = windows_done_before(plan)
    todo = [w for w in windows if w.id not in done_before]
    progress = _Progress(total=len(windows), done=len(windows) - len(todo))
    logger.info("%d windows hold rows; %d already done, %d to import on %s", len(windows), progress.done, len(todo),
                runner)
    options = {"source_name": source_name, "chunk_size": chunk_size, "timeout_minutes": window_timeout_minutes,
               "default_country": fields.default_country}
    # Rows without a usable submitted_at cannot be replayed: they are quarantined here, not run through intake.
    results = [_quarantine_undated(plan, manifest, options, progress)] if UNDATED in {w.id for w in todo} else []
    dated = [w for w in todo if w.id != UNDATED]
    if runner == "deployment":
        results += _run_as_deployments(plan, manifest, dated, options, max_parallel, progress)
    else:
        sizes = [manifest.windows[w.id] for w in dated]
        limit = group_rows if group_rows is not None else group_limit(sizes, chunk_size, max_parallel)
        groups = group_windows(dated, manifest.windows, limit, manifest.shapes)
        if len(groups) < len(dated):
            logger.info("%d windows in %d replay passes (adjacent windows up to %d rows together)", len(dated),
                        len(groups), limit)
        results += _run_on_task_runner(plan, manifest, groups, options,
                                       _task_runner(runner, dask_address, max_parallel), progress)
    # The windows' last ANALYZE (those run in this process) ran beside their qualification: it ends with the run.
    wait_for_statistics()
    publish_backfill_summary(plan, manifest)
    imported = [r for r in results if r.status == "completed"]
    failed = [r for r in results if r.status == "failed"]
    months = sorted({m for r in imported if r.rows for m in r.months})
    reported = _recompute_reports(months) if recompute_reports and months else []
    outcome = {
        "source_key": plan.source_key, "policy_version": plan.policy_version, "windows_total": len(windows),
        "windows_done_before": len(windows) - len(todo), "windows_imported": len(imported),
        "windows_skipped": sum(r.status == "skipped" for r in results), "windows_failed": [r.window_id for r in failed],
        "rows_read": manifest.rows_read, "rows_outside_range": manifest.outside_range, "rows_undated": manifest.undated,
        "rows_imported": sum(r.rows for r in imported),
        "date_orders": manifest.date_orders,
        "submissions_new": sum(int(r.summary.get("submissions_new") or 0) for r in imported),
        "months_reported": reported, "seconds": round(time.perf_counter() - started, 3),
    }
    logger.info("Backfill: %d windows imported, %d skipped, %d failed; %d rows; reports redone for %s",
                outcome["windows_imported"], outcome["windows_skipped"], len(failed), outcome["rows_imported"],
                ", ".join(reported) or "no month")
    if failed:
        raise RuntimeError(f"{len(failed)} backfill window(s) failed: {', '.join(r.window_id for r in failed)}; "
                           "re-run the backfill to retry only them")
    return outcome


def _task_runner(runner: str, dask_address: str | None, max_parallel: int):
    if runner == "threads":
        return ThreadPoolTaskRunner(max_workers=max_parallel)
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        # Processes, one thread each: intake is CPU-bound pandas work that holds the GIL.
        return DaskTaskRunner(cluster_kwargs={"n_workers": max_parallel, "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None})
    raise ValueError(f"unknown runner {runner!r} (expected threads, dask or deployment)")


def _quarantine_undated(plan: BackfillPlan, manifest: SplitManifest, options: dict[str, Any],
                        progress: _Progress) -> WindowResult:
    state = quarantine_undated_rows(plan, manifest.parts[UNDATED], options["source_name"], options["chunk_size"],
                                    options["timeout_minutes"], return_state=True)
    if not state.is_completed():
        # The task recorded the failure in the ledger; a re-run retries it alone.
        return WindowResult(window_id=UNDATED, status="failed", error=state.message)
    progress.step()
    return state.result()


def _run_on_task_runner(plan: BackfillPlan, manifest: SplitManifest, groups: list[list[Window]],
                        options: dict[str, Any], task_runner, progress: _Progress) -> list[WindowResult]:
    """Each group of windows as one task (a window alone as Import Backfill Window), in order of the windows."""
    results: list[WindowResult] = []
    if not groups:
        return results
    with task_runner as tr:
        futures = []
        for group in groups:
            if len(group) == 1:
                future = tr.submit(import_window, parameters={"plan": plan, "window": group[0],
                                                              "part": manifest.parts[group[0].id], **options})
            else:
                future = tr.submit(import_window_group, parameters={
                    "plan": plan, "windows": group, "parts": {w.id: manifest.parts[w.id] for w in group},
                    "rows": {w.id: manifest.windows[w.id] for w in group}, **options})
            futures.append((group, future))
        for group, future in futures:
            future.wait()
            if future.state.is_completed():
                value = future.result()
                done = value if isinstance(value, list) else [value]
            else:
                # The task recorded the failure in the ledger; a re-run retries these windows alone.
                done = [WindowResult(window_id=w.id, status="failed", error=future.state.message) for w in group]
            for result in done:
                results.append(result)
                if result.status in {"completed", "skipped"}:
                    progress.step()
    return results


def file_import_deployment(this_deployment: str | None = None) -> str:
    """The file-import deployment beside this run's own: the served one when this backfill was served."""
    from prefect.runtime import deployment

    name = this_deployment if this_deployment is not None else (deployment.name or "")
    return FILE_IMPORT_DEPLOYMENT + SERVED_SUFFIX if name.endswith(SERVED_SUFFIX) else FILE_IMPORT_DEPLOYMENT


def _run_as_deployments(plan: BackfillPlan, manifest: SplitManifest, todo: list[Window],
                        options: dict[str, Any], max_parallel: int, progress: _Progress) -> list[WindowResult]:
    """Each window as a run of the file-import deployment, so the work pool's workers share the windows."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    results: list[WindowResult] = []
    queue = list(todo)
    in_flight: dict[Any, Window] = {}
    with get_client(sync_client=True) as client:
        while queue or in_flight:
            while queue and len(in_flight) < max_parallel:
                window = queue.pop(0)
                attempt = take_window(plan, window, options["timeout_minutes"])
                if attempt is None:
                    results.append(WindowResult(window_id=window.id, status="skipped"))
                    progress.step()
                    continue
                run = run_deployment(
                    file_import_deployment(), timeout=0, as_subflow=True,
                    parameters={"path": manifest.parts[window.id], "source_name": options["source_name"],
                                "chunk_size": options["chunk_size"], "replay": True,
                                "default_country": options["default_country"]},
                    # One key per window and attempt: a retried window gets a new run, a repeated call does not.
                    idempotency_key=f"lead-backfill:{plan.source_key[:16]}:{plan.policy_version}:{window.id}:{attempt}",
                    flow_run_name=f"backfill-window-{window.id}",
                )
                in_flight[run.id] = window
            time.sleep(1.0)
            for run_id, window in list(in_flight.items()):
                state = client.read_flow_run(run_id).state
                if state is None or state.type.value not in TERMINAL:
                    continue
                del in_flight[run_id]
                if state.type.value == "COMPLETED":
                    # Results of remote runs are not kept: read what the run's intake batch recorded.
                    summary = window_run_summary(str(run_id))
                    results.append(record_window(plan, window, "completed", summary))
                    progress.step()
                else:
                    logger.warning("Window %s: run %s ended %s", window.id, run_id, state.name)
                    results.append(record_window(plan, window, "failed", {"error": f"flow run {state.name}"}))
    return results


def _recompute_reports(months: list[str]) -> list[str]:
    """Recompute the monthly report of every touched month (when the monthly-report flow is installed)."""
    logger = get_run_logger()
    try:
        from flows.monthly_report import monthly_report
    except ImportError:
        logger.info("monthly-report flow not available: reports of %s not recomputed", ", ".join(months))
        return []
    done = []
    for month in months:
        try:
            monthly_report(month=month)
            done.append(month)
        except Exception as exc:
            logger.warning("Report of %s not recomputed: %s", month, f"{type(exc).__name__}: {exc}".splitlines()[0])
    return done
