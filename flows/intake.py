"""lead-intake: read a lead export in chunks, check, quarantine, normalize, create lead entries, update sources."""

from __future__ import annotations

import time
import uuid
from pathlib import PurePosixPath
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from leadflow.settings import get_settings
from leadflow.sources import iter_lead_chunks
from leadflow.summary import IntakeSummary
from tasks.common import current_flow_run_id, store, utc_now
from tasks.intake import (
    check_lead_batch,
    create_lead_entries,
    inspect_lead_input,
    normalize_leads,
    quarantine_rejected_rows,
    update_lead_sources,
)
from tasks.reporting import publish_intake_summary


def intake_run_name() -> str:
    """Name runs after the file they read, so the UI's run list says what each run was about."""
    path = str(flow_run.parameters.get("path", "input"))
    return f"intake-{PurePosixPath(path.rstrip('/')).name or path}"


@flow(name="lead-intake", flow_run_name=intake_run_name, task_runner=ThreadPoolTaskRunner(max_workers=2),
      log_prints=False)
def lead_intake(
    path: str,
    source_name: str | None = None,
    column_map: dict[str, str] | None = None,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Turn a lead export into clean, deduplicated, attributed leads; rejects go to quarantine with reasons.

    Args:
        path: CSV, JSON-lines or Parquet file, as a local path or fsspec URL.
        source_name: Channel for rows that do not name one (for example `event` for a booth scan list).
        column_map: Export header -> canonical column, for exports with their own header names.
        chunk_size: Rows per chunk (default from LEADFLOW_CHUNK_SIZE); memory grows with this, not the file.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    summary = IntakeSummary(batch_id=str(uuid.uuid4()), origin=path)
    plan = inspect_lead_input(path, column_map, source_name)
    crm = store()
    crm.start_batch(summary.batch_id, path, source_name, current_flow_run_id(), utc_now())
    try:
        chunks = iter_lead_chunks(plan.lead_file, chunk_size or get_settings().chunk_size)
        # Two-stage pipeline: while the flow thread writes chunk N to the CRM, a worker thread checks and
        # normalizes chunk N+1. At most two chunks are in memory, so memory still follows the chunk size.
        pending = _start_chunk(_read(chunks, summary), plan, summary)
        while pending is not None:
            upcoming = _start_chunk(_read(chunks, summary), plan, summary)
            _finish_chunk(*pending, summary)
            pending = upcoming
        # Seam: the lead-qualification subflow runs here on the leads this run created or changed.
    except BaseException:
        summary.seconds = round(time.perf_counter() - started, 3)
        crm.finish_batch(summary.batch_id, "failed", summary.as_dict(), utc_now())
        raise
    summary.seconds = round(time.perf_counter() - started, 3)
    crm.finish_batch(summary.batch_id, "completed", summary.as_dict(), utc_now())
    publish_intake_summary(summary)
    logger.info(
        "Read %d rows: %d new submissions, %d leads created, %d updated, %d quarantined",
        summary.rows_read, summary.submissions_new, summary.leads_created, summary.leads_updated, summary.quarantined,
    )
    return summary.as_dict()


def _read(chunks, summary: IntakeSummary):
    """The next raw chunk, or None at the end of the input."""
    tick = time.perf_counter()
    raw = next(chunks, None)
    summary.add_time("read", time.perf_counter() - tick)
    if raw is not None:
        summary.chunks += 1
        summary.rows_read += len(raw)
    return raw


def _start_chunk(raw, plan, summary: IntakeSummary):
    """Submit the CPU-bound steps of a chunk (check, then normalize) to the task runner."""
    if raw is None:
        return None
    now = utc_now()
    checked = check_lead_batch.submit(raw, plan, now)
    return now, checked, normalize_leads.submit(checked)


def _finish_chunk(now, checked_future, normalized_future, summary: IntakeSummary) -> list[int]:
    """Run the database steps of a chunk and fold its counts into the summary."""
    tick = time.perf_counter()
    checked = checked_future.result()
    normalized = normalized_future.result()
    summary.add_time("wait_for_check", time.perf_counter() - tick)
    summary.add_time("check", checked.seconds)
    summary.add_time("normalize", normalized.seconds)
    summary.blank_rows += checked.blank_rows
    summary.add_check_results(checked.outcome.results)
    tick = time.perf_counter()
    quarantined = quarantine_rejected_rows(checked.prepared, checked.outcome, summary.batch_id, summary.origin, now)
    summary.add_time("quarantine", time.perf_counter() - tick)
    summary.quarantined += quarantined.rows
    summary.quarantined_new += quarantined.new_records
    summary.add_reasons(quarantined.by_reason)
    tick = time.perf_counter()
    written = create_lead_entries(normalized.subs, summary.batch_id, now)
    summary.add_time("create_lead_entries", time.perf_counter() - tick)
    summary.submissions_new += written.submissions_new
    summary.submissions_duplicate += written.submissions_duplicate
    summary.leads_created += written.leads_created
    summary.leads_updated += written.leads_updated
    tick = time.perf_counter()
    summary.sources_updated += update_lead_sources(normalized.subs, summary.batch_id, now)
    summary.add_time("update_lead_sources", time.perf_counter() - tick)
    # Seam: Retrieve Lead Details and Calculate Lead Score run here on `normalized.subs` and `written.lead_ids`.
    return written.lead_ids
