"""Suite for spam flagging: a lead with a converted or won status is never flagged as spam."""

from __future__ import annotations

from typing import Any

import pandas as pd

from data_checks.runner import ROW_ID, CheckOutcome, gx_context, raise_for_failures, run_suite
from leadflow.domain.spam import NEVER_FLAGGED


def spam_flag_suite() -> Any:
    """The leads about to be flagged must not have been won: converted and won statuses are out of bounds."""
    gx_context()
    import great_expectations as gx

    suite = gx.ExpectationSuite(name="spam_cleanup.flags")
    suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeInSet(column="previous_status",
                                                                         value_set=list(NEVER_FLAGGED)))
    return suite


def check_spam_flags(plan: pd.DataFrame) -> CheckOutcome:
    """Validate a flag plan (lead_id, previous_status) before it is written."""
    frame = pd.DataFrame({ROW_ID: plan["lead_id"].astype("int64").to_numpy(),
                          "previous_status": plan["previous_status"].astype("string").to_numpy()})
    return run_suite(frame, spam_flag_suite())


def guard_spam_flags(plan: pd.DataFrame) -> None:
    """Stop with a DataCheckError (nothing written) when a flag plan would touch a converted or won lead."""
    if plan.empty:
        return
    raise_for_failures(check_spam_flags(plan), hint="a converted or won lead was about to be flagged as spam")
