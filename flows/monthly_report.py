"""monthly-report: lead volume and conversion of a month, checked against direct counts, then published."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.hooks import notify_ops_on_failure
from flows.quiet import announce_queued_messages
from leadflow.config.settings import get_settings
from leadflow.domain import reports as rpt
from leadflow.io.report_files import FORMATS
from leadflow.steps.reports import assemble_report
from tasks.reports import (
    aggregate_monthly_lead_volume,
    check_report,
    lead_conversion_report,
    publish_monthly_report,
    queue_monthly_report_notice,
)

DEFAULT_COHORTS = 3


def default_month(now: datetime | None = None, timezone: str | None = None) -> str:
    """The month before today in the configured time zone (the report runs on the 1st for the month before)."""
    zone = ZoneInfo(timezone or get_settings().timezone)
    today = (now or datetime.now(zone)).astimezone(zone)
    return rpt.previous_month(f"{today.year:04d}-{today.month:02d}")


def report_run_name() -> str:
    """Name runs after the month they report on."""
    return f"monthly-report-{flow_run.parameters.get('month') or 'last-month'}"


@flow(name="monthly-report", flow_run_name=report_run_name, task_runner=ThreadPoolTaskRunner(max_workers=2),
      on_failure=[notify_ops_on_failure], on_crashed=[notify_ops_on_failure], log_prints=False)
def monthly_report(month: str | None = None, formats: list[str] | None = None) -> dict[str, Any]:
    """Build, check and publish one month's lead report; re-running a month replaces its report.

    Args:
        month: 'YYYY-MM'; default the month before today in LEADFLOW_TIMEZONE.
        formats: Files to write into LEADFLOW_REPORT_DIR/YYYY-MM: md, csv, html, json (default all).
    """
    logger = get_run_logger()
    month = month or default_month()
    _start, end = rpt.month_bounds(month)  # validates the month
    formats = list(dict.fromkeys(formats or FORMATS))
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown report format(s) {', '.join(unknown)}; expected {', '.join(FORMATS)}")
    # The funnel counts events up to the month's end, so a re-run later reproduces the same numbers.
    as_of = end
    volume_future = aggregate_monthly_lead_volume.submit(month)
    conversion_future = lead_conversion_report.submit(month, DEFAULT_COHORTS, as_of)
    volume, conversion = volume_future.result(), conversion_future.result()
    report = assemble_report(month, as_of, volume, conversion)
    checks = check_report(report)
    published = publish_monthly_report(report, formats, checks)
    notice = queue_monthly_report_notice(report, published["files"])
    announce_queued_messages(1)
    head = report.headline()
    logger.info("Report %s: %d new leads, %d spam, %d submissions", month, head["new_leads"], head["spam_leads"],
                head["submissions"])
    return {**head, "files": published["files"], "rows": published["rows"], "notice": notice,
            "as_of": as_of.isoformat()}
