"""lead-intake: read a lead export in chunks, check, quarantine, normalize, create lead entries, update sources."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import PurePosixPath
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import opaque, quote

from data_checks.runner import gx_context
from flows.hooks import notify_ops_on_failure, release_inbox_claims
from flows.qualification import lead_qualification
from leadflow.config.settings import get_settings
from leadflow.crm.inbox import INBOX_ORIGIN
from leadflow.domain.summary import IntakeSummary
from leadflow.io.enrichment import DomainResults
from leadflow.io.sources import input_size, iter_lead_chunks, read_ahead
from leadflow.steps.chunk_worker import ChunkWorker
from tasks.common import current_flow_run_id, store, utc_now
from tasks.details import calculate_lead_score, retrieve_lead_details
from tasks.inbox import InboxReader, inbox_plan
from tasks.intake import (
    check_lead_batch,
    create_lead_entries,
    inspect_lead_input,
    normalize_leads,
    quarantine_rejected_rows,
    update_lead_sources,
)
from tasks.reporting import publish_intake_summary
from tasks.spam import check_spam_at_intake


def intake_run_name() -> str:
    """Name runs after the file they read, so the UI's run list says what each run was about."""
    path = str(flow_run.parameters.get("path") or INBOX_ORIGIN)
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
) -> dict[str, Any]:
    """Turn a lead export into clean, deduplicated, attributed leads; rejects go to quarantine with reasons.

    Args:
        path: CSV, JSON-lines or Parquet file, as a local path or fsspec URL; empty claims leads from lead_inbox.
        source_name: Channel for rows that do not name one (for example `event` for a booth scan list).
        column_map: Export header -> canonical column, for exports with their own header names.
        chunk_size: Rows per chunk (default from LEADFLOW_CHUNK_SIZE); memory grows with this, not the file.
        replay: Replaying history (a backfill): no auto-responses or rep alerts, and no row is dated to today.
        qualify: Run the lead-qualification subflow on each chunk's new and changed leads (spam excluded).
    """
    logger = get_run_logger()
    started = time.perf_counter()
    origin = path or INBOX_ORIGIN
    summary = IntakeSummary(batch_id=str(uuid.uuid4()), origin=origin)
    inbox = None if path else InboxReader(chunk_size or get_settings().chunk_size, column_map, replay)
    if inbox and not inbox.has_work():
        # The continuous deployment runs every minute: an idle run leaves no batch row and no artifacts.
        logger.info("lead_inbox has no leads to claim")
        return summary.as_dict()
    # A big file gets its check worker now: it imports Great Expectations on the other core while this process
    # reads, prepares and normalizes the first chunk, instead of this process importing it first.
    worker = _early_worker(path) if path else None
    try:
        plan = (inspect_lead_input(path, column_map, source_name, check_columns=worker is None) if path
                else inbox_plan(source_name))
        if worker is not None:
            # This process needs GX too, for the spam and score guards: its import (seconds of mostly Python)
            # overlaps the first chunk's reading and normalizing, which spend much of their time in Arrow.
            threading.Thread(target=gx_context, name="leadflow-gx-import", daemon=True).start()
        crm = store()
        crm.start_batch(summary.batch_id, origin, source_name, current_flow_run_id(), utc_now())
    except BaseException:
        if worker is not None:
            worker.close()
        raise
    try:
        chunks = iter(inbox) if inbox else read_ahead(iter_lead_chunks(plan.lead_file,
                                                                       chunk_size or get_settings().chunk_size))
        # Two-stage pipeline: while the flow thread writes chunk N to the CRM, chunk N+1 is checked and
        # normalized and chunk N+2 is read. At most three chunks are in memory: memory follows the chunk size.
        pending = _start_chunk(_read(chunks, summary), plan, summary, worker, normalize_here=worker is not None)
        # Lookups answered once per run: a company with 1,000 leads across chunks costs one lookup.
        lookups = DomainResults()
        while pending is not None:
            raw = _read(chunks, summary)
            if raw is not None and worker is None and not inbox and get_settings().check_worker \
                    and ChunkWorker.available():
                # A second chunk exists: from now on a helper process checks and normalizes on the other core.
                worker = ChunkWorker()
            upcoming = _start_chunk(raw, plan, summary, worker)
            lead_ids = _finish_chunk(*pending, summary, lookups)
            if qualify and lead_ids:
                # Per chunk, so a huge import starts reaching reps before it ends and memory stays bounded.
                tick = time.perf_counter()
                # A bulk import's tens of thousands of messages are the outbox-delivery run's job: sent here, they
                # would hold the import up for as long again as qualifying.
                deliver = len(lead_ids) <= get_settings().inline_delivery_max_leads
                summary.add_qualification(lead_qualification(lead_ids=lead_ids, replay=replay, deliver=deliver))
                summary.add_time("lead_qualification", time.perf_counter() - tick)
            if inbox:
                inbox.chunk_written(summary.batch_id)
            pending = upcoming
            if pending is None and inbox:
                # Leads posted while this run worked (their own runs may have been refused a slot): take them now.
                pending = _start_chunk(_read(chunks, summary), plan, summary, worker)
        summary.enrichment_calls, summary.enrichment_failed_calls = lookups.calls, lookups.failed_calls
    except BaseException:
        if inbox:
            inbox.release()
        summary.seconds = round(time.perf_counter() - started, 3)
        crm.finish_batch(summary.batch_id, "failed", summary.as_dict(), utc_now())
        raise
    finally:
        if worker is not None:
            worker.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    crm.finish_batch(summary.batch_id, "completed", summary.as_dict(), utc_now())
    publish_intake_summary(summary)
    logger.info(
        "Read %d rows: %d new submissions, %d leads created, %d updated, %d quarantined",
        summary.rows_read, summary.submissions_new, summary.leads_created, summary.leads_updated, summary.quarantined,
    )
    return summary.as_dict()


def _early_worker(path: str) -> ChunkWorker | None:
    """A check worker started with the run, for a file whose first chunk takes longer to check than it to start."""
    settings = get_settings()
    if not settings.check_worker or not ChunkWorker.available():
        return None
    size = input_size(path)
    if size is None or size < settings.check_worker_min_bytes:
        return None
    return ChunkWorker()


def _read(chunks, summary: IntakeSummary):
    """The next raw chunk, or None at the end of the input."""
    tick = time.perf_counter()
    raw = next(chunks, None)
    summary.add_time("read", time.perf_counter() - tick)
    if raw is not None:
        summary.chunks += 1
        summary.rows_read += len(raw)
    return raw


def _start_chunk(raw, plan, summary: IntakeSummary, worker: ChunkWorker | None = None, normalize_here: bool = False):
    """Submit the CPU-bound steps of a chunk (check, then normalize) to the task runner."""
    if raw is None:
        return None
    now = utc_now()
    checked = check_lead_batch.submit(quote(raw), plan, now, quote(worker), normalize_here)
    # opaque: hand the checked chunk over without Prefect walking every value inside it.
    return now, checked, normalize_leads.submit(opaque(checked), quote(worker))


def _finish_chunk(now, checked_future, normalized_future, summary: IntakeSummary, lookups: DomainResults) -> list[int]:
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
    quarantined = quarantine_rejected_rows(quote(checked.prepared), quote(checked.outcome), summary.batch_id,
                                           summary.origin, now)
    summary.add_time("quarantine", time.perf_counter() - tick)
    summary.quarantined += quarantined.rows
    summary.quarantined_new += quarantined.new_records
    summary.add_reasons(quarantined.by_reason)
    tick = time.perf_counter()
    written = create_lead_entries(quote(normalized.subs), summary.batch_id, now)
    summary.add_time("create_lead_entries", time.perf_counter() - tick)
    summary.submissions_new += written.submissions_new
    summary.submissions_duplicate += written.submissions_duplicate
    summary.leads_created += written.leads_created
    summary.leads_updated += written.leads_updated
    tick = time.perf_counter()
    summary.sources_updated += update_lead_sources(quote(normalized.subs), summary.batch_id, now,
                                                   quote(written.settled_emails))
    summary.add_time("update_lead_sources", time.perf_counter() - tick)
    if written.lead_ids:
        # Spam is flagged before anything downstream sees it: no task, alert or auto-response for it.
        tick = time.perf_counter()
        spam = check_spam_at_intake(quote(written.lead_ids), summary.batch_id, now, quote(normalized.subs))
        summary.add_time("check_spam", time.perf_counter() - tick)
        summary.spam_flagged += int(spam.get("flagged", 0))
        summary.add_counts("spam_by_reason", spam.get("by_reason", {}))
        details = retrieve_lead_details(quote(written.lead_ids), quote(lookups), now)
        summary.add_time("retrieve_lead_details", details.seconds)
        summary.add_counts("enrichment", details.result.by_status)
        summary.add_counts("fields_filled", details.result.fields_filled)
        tick = time.perf_counter()
        scored = calculate_lead_score(quote(details.leads), now, summary.batch_id)
        summary.add_time("calculate_lead_score", time.perf_counter() - tick)
        summary.leads_scored += scored.scored
        summary.scores_changed += scored.changed
        summary.add_counts("tiers", scored.by_tier)
        summary.add_counts("score_bands", scored.by_band)
    return written.lead_ids
