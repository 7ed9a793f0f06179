"""scoring-review: the scoring policy against outcomes, and the current policy or model against a candidate."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.hooks import notify_ops_on_failure
from tasks.common import utc_now
from tasks.scoring_review import publish_scoring_review, review_lead_scoring


def review_run_name() -> str:
    """Name runs after the policy reviewed and the candidate, if any."""
    params = flow_run.parameters
    name = f"scoring-review-{params.get('policy') or 'current'}"
    return f"{name}-vs-{params['candidate']}" if params.get("candidate") else name


@flow(name="scoring-review", flow_run_name=review_run_name, on_failure=[notify_ops_on_failure],
      on_crashed=[notify_ops_on_failure], log_prints=False)
def scoring_review(policy: str | None = None, since: datetime | None = None, candidate: str | None = None,
                   config: str | None = None, as_of: datetime | None = None) -> dict[str, Any]:
    """Review scores against outcomes (leads past the maturity period only) and publish the page and artifact.

    Args:
        policy: Review only this scoring policy's version (name or JSON file); default every version in use.
        since: Only leads first touched at or after this time.
        candidate: A trained model (version or .joblib file) or a policy to compare with the current one.
        config: Model configuration (maturity, feature window): a name in leadflow/config/policies/ or a file.
        as_of: The review's "now" (default: now); fix it to reproduce a review.
    """
    review = review_lead_scoring(policy, since, candidate, config, as_of or utc_now())
    review["files"] = publish_scoring_review(review)
    return review
