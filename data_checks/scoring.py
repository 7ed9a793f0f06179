"""Suite for the Calculate Lead Score boundary: scores within the policy's caps, known tiers, an explanation."""

from __future__ import annotations

from typing import Any

import pandas as pd

from data_checks.runner import ROW_ID, raise_for_failures, run_suite
from leadflow.domain.scoring import TIERS, ScoringPolicy


def scores_suite(policy: ScoringPolicy) -> Any:
    """Scores a policy can give: each group within 0..its cap, the total their sum, a tier and a reason."""
    from data_checks.intake import _gx

    gx = _gx()
    e = gx.expectations
    suite = gx.ExpectationSuite(name="lead_scores.batch")
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(column="fit_score", min_value=0, max_value=policy.fit_cap))
    suite.add_expectation(
        e.ExpectColumnValuesToBeBetween(column="intent_score", min_value=0, max_value=policy.intent_cap)
    )
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(column="score_gap", min_value=-1e-6, max_value=1e-6))
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(column="tier", value_set=list(TIERS)))
    suite.add_expectation(e.ExpectColumnValuesToNotBeNull(column="score_explanation"))
    suite.add_expectation(e.ExpectColumnValuesToBeInSet(column="score_policy_version", value_set=[policy.version]))
    return suite


def guard_scores(scores: pd.DataFrame, policy: ScoringPolicy) -> None:
    """Stop before writing scores the policy cannot produce (a scoring bug must not reach the CRM)."""
    frame = pd.DataFrame({
        ROW_ID: range(len(scores)),
        "fit_score": scores["fit_score"].astype("float64").to_numpy(),
        "intent_score": scores["intent_score"].astype("float64").to_numpy(),
        "score_gap": (scores["score"] - scores["fit_score"] - scores["intent_score"]).astype("float64").to_numpy(),
        "tier": scores["tier"].astype(object).to_numpy(),
        "score_explanation": scores["score_explanation"].astype(object).to_numpy(),
        "score_policy_version": scores["score_policy_version"].astype(object).to_numpy(),
    })
    raise_for_failures(run_suite(frame, scores_suite(policy)), "scores outside what the policy allows")
