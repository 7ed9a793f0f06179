"""The qualification data check passes real decisions and stops impossible ones."""

from __future__ import annotations

import pandas as pd
import pytest

from data_checks.qualification import guard_qualification
from data_checks.runner import DataCheckError
from leadflow.domain import accounts as matching
from leadflow.domain import qualification

POLICY = qualification.load_qualification_policy()
ACCOUNTS = pd.DataFrame({"id": [1], "name_key": ["acme"], "domain": ["acme.com"]})


def decisions():
    leads = pd.DataFrame({"lead_id": [1, 2], "company": ["Acme", None], "company_domain": [None, "x.io"],
                          "job_title": ["CEO", None], "tier": ["tier_1", None]})
    checks = qualification.evaluate_checklist(leads, POLICY)
    return leads, checks, qualification.determine_priority(leads, checks, POLICY), \
        matching.match_companies(leads, ACCOUNTS, POLICY.matching)


def test_real_decisions_pass():
    guard_qualification(*decisions(), POLICY)


@pytest.mark.parametrize(
    ("break_it", "expectation"),
    [
        (lambda lead, c, p, m: p.loc.__setitem__((0, "priority"), "P9"), "expect_column_values_to_be_in_set"),
        (lambda lead, c, p, m: m.loc.__setitem__((1, "match_score"), 140.0), "expect_column_values_to_be_between"),
        (lambda lead, c, p, m: c.loc.__setitem__((0, "need"), "maybe"), "expect_column_values_to_be_in_set"),
        (lambda lead, c, p, m: lead.loc.__setitem__((1, "lead_id"), 1), "expect_column_values_to_be_between"),
        # Checked by distinct values per column: a missing reason next to present ones must still be seen.
        (lambda lead, c, p, m: c.loc.__setitem__((1, "budget_why"), None), "expect_column_values_to_not_be_null"),
    ],
)
def test_impossible_decisions_stop_the_write(break_it, expectation):
    parts = decisions()
    break_it(*parts)
    with pytest.raises(DataCheckError, match="lead_qualification") as caught:
        guard_qualification(*parts, POLICY)
    assert expectation in {f.expectation for f in caught.value.failures}
