"""The suite a monthly report must pass before it is published: sane counts and rates, totals that reconcile."""

from __future__ import annotations

from typing import Any

import pandas as pd

from data_checks.runner import ROW_ID, CheckOutcome, DataCheckError, gx_context, run_suite
from leadflow.domain.reports import COUNT_COLUMNS, MonthlyReport, reconcile

SUITE = "monthly_report"


def _gx():
    gx_context()
    import great_expectations as gx

    return gx


def report_suite() -> Any:
    """Counts non-negative, rates within 0..1, and the report's totals equal to direct counts (spam apart)."""
    gx = _gx()
    e = gx.expectations
    suite = gx.ExpectationSuite(name=SUITE)
    for column in ("new_leads", "submissions", "repeat_submissions", "spam_leads", "spam_submissions", "reached",
                   "passed", "dq_leads", "sla_eligible", "sla_met"):
        suite.add_expectation(e.ExpectColumnValuesToBeBetween(column=column, min_value=0))
    for column in ("conversion_to_next", "dq_share", "sla_rate"):
        suite.add_expectation(e.ExpectColumnValuesToBeBetween(column=column, min_value=0, max_value=1))
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(column="median_hours_to_next", min_value=0))
    # The volume total must equal a count of the month's leads taken straight from the leads table, spam apart.
    suite.add_expectation(e.ExpectColumnPairValuesToBeEqual(column_A="report_new_leads", column_B="direct_new_leads"))
    suite.add_expectation(e.ExpectColumnPairValuesToBeEqual(column_A="report_spam_leads",
                                                            column_B="direct_spam_leads"))
    return suite


def _floats(values: pd.Series) -> list[float]:
    return pd.to_numeric(values, errors="coerce").astype("float64").tolist()


def check_frame(report: MonthlyReport) -> pd.DataFrame:
    """One long frame holding every value the suite checks (columns padded with NaN, which GX skips)."""
    volume, funnel, reasons = report.volume, report.funnel, report.reasons
    columns: dict[str, list[float]] = {c: _floats(volume[c]) for c in COUNT_COLUMNS}
    columns.update({c: _floats(funnel[c]) for c in ("reached", "passed", "conversion_to_next",
                                                    "median_hours_to_next")})
    columns["dq_leads"] = _floats(reasons["leads"])
    columns["dq_share"] = _floats(reasons["share"])
    columns["sla_eligible"] = [float(report.sla["eligible"])]
    columns["sla_met"] = [float(report.sla["met"])]
    columns["sla_rate"] = [float("nan") if report.sla["rate"] is None else float(report.sla["rate"])]
    columns["report_new_leads"] = [float(report.total("new_leads"))]
    columns["direct_new_leads"] = [float(report.direct["new_leads"])]
    columns["report_spam_leads"] = [float(report.total("spam_leads"))]
    columns["direct_spam_leads"] = [float(report.direct["spam_leads"])]
    length = max(len(v) for v in columns.values())
    frame = pd.DataFrame({name: values + [float("nan")] * (length - len(values)) for name, values in columns.items()})
    frame[ROW_ID] = range(length)
    return frame


def check_monthly_report(report: MonthlyReport) -> CheckOutcome:
    """Run the report suite and the breakdown reconciliation; raise when the report must not be published."""
    outcome = run_suite(check_frame(report), report_suite())
    if outcome.failures:
        raise DataCheckError(SUITE, outcome.failures, hint=f"monthly report {report.month} not published")
    # Every breakdown must add up to the total as well (ReconciliationError otherwise).
    reconcile(report.volume, report.direct["new_leads"])
    return outcome
