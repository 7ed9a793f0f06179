"""A link a person decided in the review queue stands when a later run matches the lead to another account."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from leadflow.domain.accounts import link_leads_to_accounts

REVIEW = {"decision": "link", "account_id": 5, "reviewer": "dana", "reviewed_at": "2026-01-05T10:00:00+00:00"}


@pytest.mark.parametrize(("old_details", "stored", "expected", "written"), [
    # Reviewed: kept, evidence and all.
    ({"band": "needs_review", "score": 88.0, "review": REVIEW}, 5, 5, False),
    # Not reviewed: the stronger match moves the link.
    ({"band": "needs_review", "score": 88.0}, 5, 7, True),
    # Reviewed but unlinked since (a person or an import cleared it): matched like any lead.
    ({"band": "needs_review", "score": 88.0, "review": REVIEW}, None, 7, True),
    # A company name quoting the key is no review.
    ({"band": "auto_link", "key": 'say "review": yes'}, 5, 7, True),
])
def test_reviewed_links_stand(old_details, stored, expected, written):
    leads = pd.DataFrame({"account_id": [stored], "match_details": [json.dumps(old_details)]})
    new = json.dumps({"band": "auto_link", "score": 95.0, "candidate_account_id": 7})
    match = pd.DataFrame({"matched_account_id": pd.array([7], dtype="Int64"), "match_details": [new]})
    links = link_leads_to_accounts(leads, match, pd.Series([pd.NA], dtype="Int64"))
    assert int(links.account.iloc[0]) == expected
    assert bool(links.write[0]) is written
    if not written:
        assert json.loads(links.details.iloc[0])["review"] == REVIEW
