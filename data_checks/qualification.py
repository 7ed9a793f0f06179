"""Suite for the qualification boundary: priorities, checklist statuses, match bands and scores a policy can give."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from data_checks.runner import ROW_ID, raise_for_failures, run_suite
from leadflow.domain.accounts import BANDS
from leadflow.domain.qualification import ITEMS, PRIORITIES, QualificationPolicy

STATUSES = ("met", "not_met", "unknown")


def qualification_suite(policy: QualificationPolicy) -> Any:
    """What one batch of qualification decisions must look like before it is written."""
    from data_checks.intake import _gx

    gx = _gx()
    e = gx.expectations
    suite = gx.ExpectationSuite(name="lead_qualification.batch")
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(column="priority", value_set=list(PRIORITIES)))
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(column="priority_rule",
                                                        value_set=[r.name for r in policy.priority_rules]))
    for item in ITEMS:
        suite.add_expectation(e.ExpectColumnValuesToBeInSet(column=item, value_set=list(STATUSES)))
        suite.add_expectation(e.ExpectColumnValuesToNotBeNull(column=f"{item}_why"))
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(column="match_band", value_set=list(BANDS)))
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(column="match_score", min_value=0, max_value=100))
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(column="duplicate_lead_ids", min_value=0, max_value=0))
    return suite


def guard_qualification(leads: pd.DataFrame, checks: pd.DataFrame, priority: pd.DataFrame,
                        match: pd.DataFrame, policy: QualificationPolicy) -> None:
    """Stop before writing decisions the policy cannot produce (a bug must not reach the CRM)."""
    columns = {
        "priority": priority["priority"], "priority_rule": priority["priority_rule"],
        "match_band": match["match_band"], "match_score": match["match_score"].astype("float64"),
        **{item: checks[item] for item in ITEMS}, **{f"{item}_why": checks[f"{item}_why"] for item in ITEMS},
    }
    # Every expectation is about the values of one column, so each column's distinct values are checked once,
    # repeated to a common length: a 50,000-lead batch has a few hundred per column, and GX's cost grows with
    # rows. Duplicate leads are counted here and checked as a number.
    distinct = {name: pd.Series(values.unique()).astype(object).to_numpy() for name, values in columns.items()}
    rows = max(len(values) for values in distinct.values())
    frame = pd.DataFrame({name: np.resize(values, rows) for name, values in distinct.items()})
    frame[ROW_ID] = range(len(frame))
    frame["duplicate_lead_ids"] = int(leads["lead_id"].duplicated().sum())
    raise_for_failures(run_suite(frame, qualification_suite(policy)), "qualification produced impossible values")
