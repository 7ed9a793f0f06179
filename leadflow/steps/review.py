"""The company-match review queue: leads whose company resembles an account too loosely to be linked unseen.

Check Company Existence keeps such leads unlinked with band `needs_review`, the best candidate and its score in
`leads.match_details`. A person then links the lead to the candidate (or another account) or says it is a new
company; the decision is stored in `match_details["review"]` and as a `match_reviewed` event, and later
qualification runs keep a reviewed link instead of matching the lead again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from leadflow.crm import review as review_store
from leadflow.crm.accounts import ACCOUNT_COLUMNS, create_accounts
from leadflow.crm.leads import load_leads
from leadflow.crm.review import REVIEW_BAND
from leadflow.crm.store import Store
from leadflow.domain import accounts as matching
from leadflow.domain.qualification import load_qualification_policy


class ReviewError(ValueError):
    """A review decision that cannot be applied; the message says why in one line."""


@dataclass
class Resolution:
    """What one review decision did."""

    lead_id: int
    decision: str
    account_id: int
    account_created: bool = False
    changed: bool = True

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields."""
        return asdict(self)


def resolve_match(store: Store, lead_id: int, *, now: datetime, account_id: int | None = None,
                  new_account: bool = False, reviewer: str | None = None, policy: str | None = None) -> Resolution:
    """Apply a person's decision on a needs_review lead: link it to an account (default: the candidate) or to a new one.

    Deciding the same again changes nothing; a lead linked otherwise, or not waiting for a review, is refused.
    """
    decision = "new_account" if new_account else "link"
    if new_account and account_id is not None:
        raise ReviewError("give an account to link to or ask for a new account, not both")
    state = review_store.review_state(store, lead_id)
    if state is None:
        raise ReviewError(f"no lead with id {lead_id}")
    linked, details, is_spam = state
    review = details.get("review")
    if linked is not None:
        if review and review.get("decision") == decision and (account_id is None or account_id == linked):
            return Resolution(lead_id, decision, linked, changed=False)
        raise ReviewError(f"lead {lead_id} is already linked to account {linked}; "
                          "the review queue holds unlinked leads only")
    if is_spam:
        raise ReviewError(f"lead {lead_id} is flagged as spam")
    if details.get("band") != REVIEW_BAND:
        raise ReviewError(f"lead {lead_id}'s company match is {details.get('band') or 'missing'}, not {REVIEW_BAND}")
    created = False
    if new_account:
        account_id, created = _new_account(store, lead_id, policy)
    else:
        account_id = account_id if account_id is not None else details.get("candidate_account_id")
        if account_id is None:
            raise ReviewError(f"lead {lead_id} has no candidate account: give one, or ask for a new account")
        if not review_store.account_exists(store, account_id):
            raise ReviewError(f"no account with id {account_id}")
    account_id = int(account_id)
    record = {"decision": decision, "account_id": account_id, "reviewer": reviewer, "reviewed_at": now.isoformat()}
    if not review_store.record_review(store, lead_id, account_id, details, record, created, now):
        raise ReviewError(f"lead {lead_id} was linked by someone else meanwhile")
    return Resolution(lead_id, decision, account_id, account_created=created)


def _new_account(store: Store, lead_id: int, policy: str | None) -> tuple[int, bool]:
    """Create (or find) the account of the lead's own company, as Create Account Entry would have."""
    leads = load_leads(store, [lead_id])
    # No accounts at all (what load_accounts gives on an empty CRM), without reading every account for one lead.
    none = pd.DataFrame(columns=list(ACCOUNT_COLUMNS))
    # Matched against no accounts, the lead's company comes out as a new company with its cleaned name and domain.
    match = matching.match_companies(leads, none, load_qualification_policy(policy or "qualification").matching)
    if match["match_band"].iloc[0] != "new_company":
        raise ReviewError(f"lead {lead_id} has no company name to create an account from")
    result = create_accounts(store, leads, match)
    account = result.account_ids.iloc[0]
    if pd.isna(account):
        raise ReviewError(f"no account could be created for lead {lead_id}")
    return int(account), result.created > 0
