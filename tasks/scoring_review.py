"""Review Lead Scoring and Publish Scoring Review: thin task shells over steps/scoring_models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from leadflow.config.settings import get_settings
from leadflow.io import scoring_review_files as files
from leadflow.steps import scoring_models as steps
from leadflow.steps.scoring import scoring_policy
from tasks.common import DB_TASK, PRIVATE, store

REVIEW_ARTIFACT = "scoring-review"


@task(name="Review Lead Scoring", **DB_TASK)
def review_lead_scoring(policy: str | None, since: datetime | None, candidate: str | None, config: str | None,
                        as_of: datetime) -> dict[str, Any]:
    """Outcomes and ranking quality per policy version in use, and the champion against a candidate."""
    chosen = scoring_policy(policy)
    settings = steps.model_config(config)
    challenger = steps.contender(candidate) if candidate else None
    champion = steps.contender(policy or get_settings().scoring_policy) if challenger else None
    return steps.scoring_review(store(), chosen, settings, as_of=as_of, since=since, only_policy=policy is not None,
                                champion=champion, challenger=challenger)


@task(name="Publish Scoring Review", **PRIVATE)
def publish_scoring_review(review: dict[str, Any]) -> dict[str, str]:
    """Write the HTML page and JSON beside the reports and publish the summary as the review artifact."""
    paths = files.write_review(review, get_settings().report_dir)
    markdown = files.review_markdown(review)
    create_markdown_artifact(key=REVIEW_ARTIFACT, markdown=f"{markdown}\n\nPage: `{paths['html']}`",
                             description="Scoring policy against outcomes, and champion against challenger.")
    get_run_logger().info("Scoring review of %d mature leads written to %s", review["leads_mature"], paths["html"])
    return {fmt: str(path) for fmt, path in paths.items()}
