"""Task shells for the monthly report: volume, conversion, checks, publishing and the manager's notice."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from leadflow.config.settings import get_settings
from leadflow.domain import reports as rpt
from leadflow.io import report_files as report_render
from leadflow.steps import delivery
from leadflow.steps import reports as report_steps
from leadflow.steps.reports import ConversionResult, VolumeResult
from tasks.common import DB_TASK, PRIVATE, current_flow_run_id, store

__all__ = ["ConversionResult", "VolumeResult", "aggregate_monthly_lead_volume", "check_report",
           "lead_conversion_report", "publish_monthly_report", "queue_monthly_report_notice"]


@task(name="Aggregate Monthly Lead Volume", **DB_TASK)
def aggregate_monthly_lead_volume(month: str) -> VolumeResult:
    """New leads, submissions and repeats of a month by every dimension, with month-over-month and year-over-year."""
    result = report_steps.aggregate_monthly_lead_volume(store(), month)
    get_run_logger().info("%s: %d new leads, %d spam (direct count %d/%d)", month,
                          int(result.volume["new_leads"].iloc[0]), int(result.volume["spam_leads"].iloc[0]),
                          result.direct["new_leads"], result.direct["spam_leads"])
    return result


@task(name="Lead Conversion Report", **DB_TASK)
def lead_conversion_report(month: str, cohorts: int, as_of: pd.Timestamp) -> ConversionResult:
    """The funnel from the event log for the month's cohort and the cohorts before it, and SLA compliance."""
    result = report_steps.lead_conversion_report(store(), month, cohorts, as_of)
    get_run_logger().info("%s: funnel over %d cohort(s), SLA %s of %s met", month, cohorts, result.sla["met"],
                          result.sla["eligible"])
    return result


@task(name="Check Monthly Report", **PRIVATE)
def check_report(report: rpt.MonthlyReport) -> list[dict[str, Any]]:
    """Great Expectations suite and reconciliation; the run fails here rather than publish wrong numbers."""
    return report_steps.check_report(report)


@task(name="Publish Monthly Report", **DB_TASK)
def publish_monthly_report(report: rpt.MonthlyReport, formats: list[str], checks: list[dict[str, Any]]
                           ) -> dict[str, Any]:
    """Report tables in the database (one transaction per month), files, and artifacts under stable keys."""
    published = report_steps.publish_monthly_report(store(), report, formats, checks, get_settings().report_dir,
                                                    current_flow_run_id())
    name = report_render.report_name(report.month)
    create_markdown_artifact(key=name, markdown=report_render.to_markdown(report),
                             description=f"Monthly lead report {report.month}")
    volume = report.volume.loc[report.volume["dimension"].isin(["total", "source"])]
    create_table_artifact(key=f"{name}-volume", table=report_render._table(volume),
                          description=f"New leads by source {report.month}, with MoM and YoY")
    create_table_artifact(key=f"{name}-checks", table=checks or [{"expectation": "none", "success": True}],
                          description=f"Checks of the monthly report {report.month}")
    get_run_logger().info("Published %s: %s", name, ", ".join(f"{k}={v}" for k, v in published["rows"].items()))
    return published


@task(name="Queue Monthly Report Notice", **DB_TASK)
def queue_monthly_report_notice(report: rpt.MonthlyReport, files: dict[str, list[str]]) -> str:
    """The summary with a link to the report page, queued in the outbox for the delivery run."""
    key = delivery.queue_monthly_report_notice(store(), report, files)
    get_run_logger().info("Queued the manager's notice %s", key)
    return key
