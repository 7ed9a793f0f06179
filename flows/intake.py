"""lead-intake: read a lead export in chunks, check, quarantine, normalize, create lead entries, update sources."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import PurePosixPath
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from data_checks.runner import gx_context
from flows.hooks import notify_ops_on_failure, release_inbox_claims
from flows.qualification import lead_qualification
from flows.quiet import name_run_idle
from leadflow.config.settings import get_settings
from leadflow.domain.inbox import INBOX_ORIGIN
from leadflow.domain.summary import IntakeSummary
from leadflow.io.sources import iter_lead_chunks, read_ahead
from leadflow.steps.intake import (
    IntakeSteps,
    early_worker,
    field_options,
    inbox_plan,
    intake_chunks,
    late_worker,
    overlap_chunks,
    wait_for_statistics,
)
from tasks.batches import find_dead_batches
from tasks.common import called_quoted, submitted_quoted, utc_now
from tasks.enrichment import retrieve_lead_details
from tasks.inbox import InboxReader
from tasks.intake import (
    check_lead_batch,
    create_lead_entries,
    finish_intake_batch,
    inspect_lead_input,
    normalize_leads,
    quarantine_rejected_rows,
    start_intake_batch,
    update_lead_sources,
)
from tasks.reporting import publish_intake_summary
from tasks.scoring import calculate_lead_score
from tasks.spam import check_spam_at_intake

# The intake sequence runs these tasks: check and normalize on the task runner (the next chunk's, while this one
# is written), the database steps in the flow thread, every argument handed over without Prefect walking it.
INTAKE_TASKS = IntakeSteps(
    check_lead_batch=submitted_quoted(check_lead_batch),
    normalize_leads=submitted_quoted(normalize_leads),
    quarantine_rejected_rows=called_quoted(quarantine_rejected_rows),
    create_lead_entries=called_quoted(create_lead_entries),
    update_lead_sources=called_quoted(update_lead_sources),
    check_spam=called_quoted(check_spam_at_intake),
    retrieve_lead_details=called_quoted(retrieve_lead_details),
    calculate_lead_score=called_quoted(calculate_lead_score),
)


def intake_run_name() -> str:
    """Name runs after the file they read, so the UI's run list says what each run was about."""
    parameters = flow_run.parameters
    if not parameters.get("path") and parameters.get("from_inbox") is False:
        return "intake-no-path"
    path = str(parameters.get("path") or INBOX_ORIGIN)
    return f"intake-{PurePosixPath(path.rstrip('/')).name or path}"


@flow(name="lead-intake", flow_run_name=intake_run_name, task_runner=ThreadPoolTaskRunner(max_workers=2),
      on_failure=[notify_ops_on_failure], on_crashed=[release_inbox_claims, notify_ops_on_failure],
      on_cancellation=[release_inbox_claims], log_prints=False)
def lead_intake(
    path: str | None = None,
    source_name: str | None = None,
    column_map: dict[str, str] | None = None,
    chunk_size: int | None = None,
    replay: bool = False,
    qualify: bool = True,
    from_inbox: bool = True,
    profile: str | None = None,
    submitted_at: str | None = None,
    messages: Literal["auto", "none", "all"] = "auto",
    default_country: str | None = None,
    date_order: str | None = None,
) -> dict[str, Any]:
    """Turn a lead export into clean, deduplicated, attributed leads; rejects go to quarantine with reasons.

    Args:
        path: CSV, JSON-lines or Parquet file, as a local path or fsspec URL; empty claims leads from lead_inbox.
        source_name: Channel for rows that do not name one (for example `event` for a booth scan list).
        column_map: Export header -> canonical column, for exports with their own header names.
        chunk_size: Rows per chunk (default from LEADFLOW_CHUNK_SIZE); memory grows with this, not the file.
        replay: Replaying history (a backfill): no auto-responses or rep alerts, and no row is dated to today.
        qualify: Run the lead-qualification subflow on each chunk's new and changed leads (spam excluded).
        from_inbox: Whether a run without a path drains lead_inbox; the file-import deployment sets False, so that
            a run started without its `path` fails instead of taking the inbox's leads.
        profile: Export profile to read the file with (salesforce, hubspot, ...; `generic` for none); empty
            recognises it from the headers.
        submitted_at: `now` or an ISO time with zone that dates every row, for a file without times; recorded on
            each submission (its raw payload's `submitted_at_from_option`).
        messages: auto: auto-responses and rep alerts only for leads whose latest submission is within the
            qualification policy's freshness window, older ones recorded as history; none: no messages; all: every
            lead is treated as fresh.
        default_country: Country whose national phone numbers a lead without a country has (ISO code or name);
            default LEADFLOW_DEFAULT_COUNTRY, else such numbers need their own + prefix.
        date_order: mdy or dmy, for a date column whose values leave the day/month order open (default
            LEADFLOW_DATE_ORDER, mdy); a column with a part over 12 decides for itself.
    """
    if not path and not from_inbox:
        raise ValueError("lead-intake needs the `path` parameter: the file to import (lead_inbox is drained by "
                         "the lead-intake/continuous deployment)")
    logger = get_run_logger()
    started = time.perf_counter()
    fields = field_options(default_country, date_order)
    origin = path or INBOX_ORIGIN
    summary = IntakeSummary(batch_id=str(uuid.uuid4()), origin=origin)
    inbox = None if path else InboxReader(chunk_size or get_settings().chunk_size, column_map, replay)
    if inbox and not inbox.has_work():
        # The continuous deployment runs every minute: an idle run leaves no batch row and no artifacts.
        logger.info("lead_inbox has no leads to claim")
        name_run_idle()
        return summary.as_dict()
    # A big file gets its check worker now: it imports Great Expectations on the other core while this process
    # reads, prepares and normalizes the first chunk, instead of this process importing it first.
    worker = early_worker(path) if path else None
    try:
        plan = (inspect_lead_input(path, column_map, source_name, check_columns=worker is None, fields=fields,
                                   profile=profile, submitted_at=submitted_at) if path
                else inbox_plan(source_name, fields))
        summary.note_plan(plan.profile, plan.submitted_at)
        if worker is not None:
            # This process needs GX too, for the spam and score guards: its import (seconds of mostly Python)
            # overlaps the first chunk's reading and normalizing, which spend much of their time in Arrow.
            threading.Thread(target=gx_context, name="leadflow-gx-import", daemon=True).start()
        # Batches that earlier runs left running (killed, out of memory) are marked crashed and reported first.
        if find_dead_batches(return_state=True).is_failed():
            logger.warning("Could not look for dead intake batches; this run goes on")
        start_intake_batch(summary.batch_id, origin, source_name, utc_now())
    except BaseException:
        if worker is not None:
            worker.close()
        raise
    try:
        chunks = iter(inbox) if inbox else read_ahead(iter_lead_chunks(plan.lead_file,
                                                                       chunk_size or get_settings().chunk_size))

        def after_chunk(lead_ids: list[int]) -> None:
            if qualify and lead_ids:
                # Per chunk, so a huge import starts reaching reps before it ends and memory stays bounded.
                tick = time.perf_counter()
                # A bulk import's tens of thousands of messages are the outbox-delivery run's job: sent here, they
                # would hold the import up for as long again as qualifying.
                deliver = len(lead_ids) <= get_settings().inline_delivery_max_leads
                summary.add_qualification(lead_qualification(lead_ids=lead_ids, replay=replay, deliver=deliver,
                                                             messages=messages))
                summary.add_time("lead_qualification", time.perf_counter() - tick)
            if inbox:
                inbox.chunk_written(summary.batch_id)

        # Leads posted while an inbox run worked (their own runs may have been refused a slot) are taken at its end.
        intake_chunks(INTAKE_TASKS, chunks, plan, summary, worker=worker,
                      start_worker=None if inbox else late_worker, after_chunk=after_chunk, read_again=bool(inbox),
                      overlap=overlap_chunks())
        # The last bulk load's ANALYZE ran beside the steps after it: this run ends with it, not the next one.
        wait_for_statistics()
    except BaseException:
        if inbox:
            inbox.release()
        summary.seconds = round(time.perf_counter() - started, 3)
        finish_intake_batch(summary.batch_id, "failed", summary.as_dict(), utc_now())
        raise
    finally:
        if worker is not None:
            worker.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    finish_intake_batch(summary.batch_id, "completed", summary.as_dict(), utc_now())
    publish_intake_summary(summary)
    logger.info(
        "Read %d rows: %d new submissions, %d leads created, %d updated, %d quarantined",
        summary.rows_read, summary.submissions_new, summary.leads_created, summary.leads_updated, summary.quarantined,
    )
    return summary.as_dict()
