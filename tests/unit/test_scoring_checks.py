"""The GX guard in front of score writes: what the policy can produce passes, anything else stops the write."""

from __future__ import annotations

import pandas as pd
import pytest

from data_checks.runner import DataCheckError
from data_checks.scoring import guard_scores
from leadflow.config.policy import load_policy
from leadflow.domain.scoring import ScoringPolicy, score_leads

POLICY = load_policy(ScoringPolicy, "scoring")


def _scores(**overrides) -> pd.DataFrame:
    frame = pd.DataFrame({
        "fit_score": [10.0, 50.0, 0.0], "intent_score": [0.0, 50.0, 12.5], "score": [10.0, 100.0, 12.5],
        "tier": ["tier_3", "tier_1", "tier_4"], "score_explanation": ["fit 10: ...", "fit 50", "intent 12.5"],
        "score_policy_version": [POLICY.version] * 3,
    })
    for column, value in overrides.items():
        frame.loc[1, column] = value
    return frame


def test_real_scores_pass():
    leads = pd.DataFrame({"email": ["a@acme.com", "b@gmail.com"], "job_title": ["CTO", None],
                          "industry": ["Software", None], "page_views": [10_000_000, None]})
    scored = score_leads(leads, POLICY, pd.Timestamp("2026-11-23", tz="UTC")).rename(
        columns={"explanation": "score_explanation", "policy_version": "score_policy_version"})
    guard_scores(scored, POLICY)
    guard_scores(_scores(), POLICY)


@pytest.mark.parametrize(
    ("overrides", "expectation"),
    [
        ({"fit_score": 50.5, "score": 100.5}, "expect_column_values_to_be_between"),
        ({"intent_score": -1.0, "score": 49.0}, "expect_column_values_to_be_between"),
        ({"score": 99.0}, "expect_column_values_to_be_between"),  # total is not fit + intent
        ({"tier": "tier_9"}, "expect_column_values_to_be_in_set"),
        ({"score_explanation": None}, "expect_column_values_to_not_be_null"),
        ({"score_policy_version": "old"}, "expect_column_values_to_be_in_set"),
    ],
)
def test_impossible_scores_stop_the_write(overrides, expectation):
    with pytest.raises(DataCheckError, match=r"lead_scores\.batch") as caught:
        guard_scores(_scores(**overrides), POLICY)
    assert expectation in {f.expectation for f in caught.value.failures}
