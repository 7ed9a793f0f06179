"""Task shells for the monthly report: volume, conversion, checks, publishing and the manager's notice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from data_checks.report import check_monthly_report
from leadflow.config.settings import get_settings
from leadflow.crm import reports as report_store
from leadflow.domain import reports as rpt
from leadflow.io import report_files as report_render
from leadflow.steps.delivery import queue_monthly_report_notice
from tasks.common import DB_TASK, PRIVATE, current_flow_run_id, store

HISTORY_MONTHS = 12


@dataclass(frozen=True)
class VolumeResult:
    """The volume part of a report: the table with changes, 12 months of history and the direct counts."""

    volume: pd.DataFrame
    history: pd.DataFrame
    direct: dict[str, int]


@dataclass(frozen=True)
class ConversionResult:
    """The conversion part of a report: cohort funnels, disqualification reasons and the SLA."""

    funnel: pd.DataFrame
    reasons: pd.DataFrame
    sla: dict[str, Any]


def aggregate_volume(month: str) -> VolumeResult:
    """Volume by source, channel, country, tier and owner with MoM/YoY, plus history and direct counts."""
    crm = store()
    inputs = report_store.load_volume_inputs(crm, month)
    volume = rpt.monthly_volume(inputs.leads, inputs.submissions, inputs.previous_leads, inputs.last_year_leads,
                                month)
    history = report_store.volume_history(crm, report_render.history_months(month, HISTORY_MONTHS))
    # Counted last and on its own: if leads arrive while the report reads, the totals disagree and the run fails.
    return VolumeResult(volume=volume, history=history, direct=report_store.count_leads(crm, month))


def conversion_report(month: str, cohorts: int, as_of: pd.Timestamp) -> ConversionResult:
    """Funnels of the last `cohorts` creation cohorts (overall, by source, by owner) and the month's SLA."""
    months = rpt.cohort_months(month, cohorts)
    inputs = report_store.load_conversion_inputs(store(), month, months, as_of)
    funnel, reasons = rpt.cohort_funnels(inputs.events, inputs.leads, months, as_of)
    sla = rpt.sla_compliance(inputs.leads, inputs.tasks, inputs.events, month)
    return ConversionResult(funnel=funnel, reasons=reasons, sla=sla)


@task(name="Aggregate Monthly Lead Volume", **DB_TASK)
def aggregate_monthly_lead_volume(month: str) -> VolumeResult:
    """New leads, submissions and repeats of a month by every dimension, with month-over-month and year-over-year."""
    result = aggregate_volume(month)
    get_run_logger().info("%s: %d new leads, %d spam (direct count %d/%d)", month,
                          int(result.volume["new_leads"].iloc[0]), int(result.volume["spam_leads"].iloc[0]),
                          result.direct["new_leads"], result.direct["spam_leads"])
    return result


@task(name="Lead Conversion Report", **DB_TASK)
def lead_conversion_report(month: str, cohorts: int, as_of: pd.Timestamp) -> ConversionResult:
    """The funnel from the event log for the month's cohort and the cohorts before it, and SLA compliance."""
    result = conversion_report(month, cohorts, as_of)
    get_run_logger().info("%s: funnel over %d cohort(s), SLA %s of %s met", month, cohorts, result.sla["met"],
                          result.sla["eligible"])
    return result


@task(name="Check Monthly Report", **PRIVATE)
def check_report(report: rpt.MonthlyReport) -> list[dict[str, Any]]:
    """Great Expectations suite and reconciliation; the run fails here rather than publish wrong numbers."""
    return check_monthly_report(report).results


def publish(report: rpt.MonthlyReport, formats: list[str], checks: list[dict[str, Any]]) -> dict[str, Any]:
    """Replace the month's report tables, write the files and publish the artifacts."""
    written = report_store.write_report(store(), report, current_flow_run_id())
    files = report_render.write_files(report, get_settings().report_dir, formats)
    return {"rows": written, "files": files, "checks": len(checks)}


@task(name="Publish Monthly Report", **DB_TASK)
def publish_monthly_report(report: rpt.MonthlyReport, formats: list[str], checks: list[dict[str, Any]]
                           ) -> dict[str, Any]:
    """Report tables in the database (one transaction per month), files, and artifacts under stable keys."""
    published = publish(report, formats, checks)
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


@task(name="Notify Sales Manager", **DB_TASK)
def notify_sales_manager(report: rpt.MonthlyReport, files: dict[str, list[str]]) -> str:
    """The summary with a link to the report page, queued in the outbox for the delivery run."""
    key = queue_monthly_report_notice(store(), report, files)
    get_run_logger().info("Queued the manager's notice %s", key)
    return key
