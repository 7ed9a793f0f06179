"""Monthly report steps: aggregate volume, the conversion report, check, publish; the notice is steps.delivery's.

The arithmetic lives in domain/reports.py, the reads and the report tables in crm/reports.py and the files in
io/report_files.py; the monthly-report flow's tasks and the benchmark's core mode call these in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from data_checks.report import check_monthly_report
from leadflow.crm import followup as followup_store
from leadflow.crm import reports as report_store
from leadflow.crm.store import Store
from leadflow.domain import followup as fu
from leadflow.domain import reports as rpt
from leadflow.io import report_files as report_render

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
    followup: dict[str, Any] = field(default_factory=dict)


def aggregate_monthly_lead_volume(store: Store, month: str) -> VolumeResult:
    """Volume by source, channel, country, tier and owner with MoM/YoY, plus history and direct counts."""
    inputs = report_store.load_volume_inputs(store, month)
    volume = rpt.monthly_volume(inputs.leads, inputs.submissions, inputs.previous_leads, inputs.last_year_leads,
                                month)
    history = rpt.history_by_channel(
        report_store.volume_history(store, report_render.history_months(month, HISTORY_MONTHS)))
    # Counted last and on its own: if leads arrive while the report reads, the totals disagree and the run fails.
    return VolumeResult(volume=volume, history=history, direct=report_store.count_leads(store, month))


def lead_conversion_report(store: Store, month: str, cohorts: int, as_of: pd.Timestamp) -> ConversionResult:
    """Funnels of the last `cohorts` first-touch cohorts (overall, by source, by owner) and the month's SLA."""
    months = rpt.cohort_months(month, cohorts)
    inputs = report_store.load_conversion_inputs(store, month, months, as_of)
    funnel, reasons = rpt.cohort_funnels(inputs.events, inputs.leads, months, as_of)
    sla = rpt.sla_compliance(inputs.leads, inputs.tasks, inputs.events, month)
    start, end = rpt.month_bounds(month)
    followup = fu.report_figures(*followup_store.report_inputs(store, start.to_pydatetime(), end.to_pydatetime(),
                                                               as_of.to_pydatetime()), start, end, as_of)
    return ConversionResult(funnel=funnel, reasons=reasons, sla=sla, followup=followup)


def assemble_report(month: str, as_of: pd.Timestamp, volume: VolumeResult, conversion: ConversionResult
                    ) -> rpt.MonthlyReport:
    """The month's report from its volume and conversion parts, stamped now."""
    return rpt.MonthlyReport(
        month=month, as_of=as_of, generated_at=pd.Timestamp.now(tz="UTC"), volume=volume.volume,
        funnel=conversion.funnel, reasons=conversion.reasons, sla=conversion.sla, history=volume.history,
        direct=volume.direct, followup=conversion.followup,
    )


def check_report(report: rpt.MonthlyReport) -> list[dict[str, Any]]:
    """Great Expectations suite and reconciliation; raises rather than let wrong numbers be published."""
    return check_monthly_report(report).results


def publish_monthly_report(store: Store, report: rpt.MonthlyReport, formats: list[str], checks: list[dict[str, Any]],
                           report_dir: Path, flow_run_id: str | None = None) -> dict[str, Any]:
    """Replace the month's report tables (one transaction) and write the files."""
    written = report_store.write_report(store, report, flow_run_id)
    files = report_render.write_files(report, report_dir, formats)
    return {"rows": written, "files": files, "checks": len(checks)}
