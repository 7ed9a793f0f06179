"""Calculate Lead Score and Load Leads to Score: tasks over a batch of leads, thin shells over steps/scoring."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from prefect import get_run_logger, task

from data_checks.scoring import guard_scores
from leadflow.steps import scoring as steps
from leadflow.steps.scoring import scoring_policy
from tasks.common import DB_TASK, current_flow_run_id, store

__all__ = ["calculate_lead_score", "load_leads_to_score", "scoring_policy"]


@task(name="Calculate Lead Score", **DB_TASK)
def calculate_lead_score(
    frame: pd.DataFrame, as_of: datetime, batch_id: str | None, pending: steps.PendingWrite | None = None,
    policy: str | None = None,
) -> steps.ScoreResult:
    """Score fit and intent under the versioned policy, store changed scores and log every re-score.

    Leads whose details are done are marked scored with the scores (leadflow/domain/progress.py); `pending`:
    Retrieve Lead Details' write, left to this one (intake), is stored and marked with the scores.
    """
    chosen = scoring_policy(policy)
    result = steps.calculate_lead_scores(
        store(), frame, chosen, as_of=as_of, batch_id=batch_id, flow_run_id=current_flow_run_id(),
        guard=guard_scores, mark=True, pending=pending,
    )
    get_run_logger().info(
        "Scored %d leads with policy %s (%d changed): tiers %s", result.scored, chosen.version, result.changed,
        dict(sorted(result.by_tier.items())),
    )
    return result


@task(name="List Leads to Score", **DB_TASK)
def list_leads_to_score(after: int, page_size: int) -> list[int]:
    """The next page of lead ids above `after` (a re-score walks every lead page by page)."""
    return store().lead_id_page(page_size, after)


@task(name="Load Leads to Score", **DB_TASK)
def load_leads_to_score(lead_ids: list[int]) -> pd.DataFrame:
    """The stored fields scoring reads, with every message each lead sent."""
    return steps.load_leads_to_score(store(), lead_ids)
