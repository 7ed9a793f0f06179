"""Outbox steps: the ops alert of a failed run and the manager's monthly notice, queued for Deliver Outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from leadflow.config.settings import get_settings
from leadflow.crm import outbox
from leadflow.crm.store import Store, get_store
from leadflow.domain import messages
from leadflow.domain.reports import MonthlyReport


def queue_ops_alert(flow_name: str, run_name: str, run_id: str, state_name: str, message: str | None,
                    store: Store | None = None) -> dict:
    """Queue the ops alert of a failed flow run (once per run); returns the row, for the log line."""
    urls = get_settings().ops_alert_urls
    row = messages.ops_alert(flow_name, run_name, run_id, state_name, message,
                             urls.get_secret_value() if urls else None, datetime.now(UTC))
    outbox.queue_row(store or get_store(), row)
    return row


def queue_monthly_report_notice(store: Store, report: MonthlyReport, files: dict[str, list[str]]) -> str:
    """Queue the manager's notice of a month's report (one per month; a re-run refreshes it only while unsent)."""
    settings = get_settings()
    recipient = settings.manager_alert_urls.get_secret_value() if settings.manager_alert_urls else "unconfigured"
    links = [Path(p).resolve().as_uri() for fmt in ("html", "md") for p in files.get(fmt, [])]
    row = messages.monthly_report_notice(report.month, report.headline(), report.sla, links, recipient)
    outbox.queue_or_refresh(store, row)
    return row["idempotency_key"]
