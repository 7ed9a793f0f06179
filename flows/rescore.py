"""lead-rescore: score every lead again under a (new) scoring policy, logging old and new values of each change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.hooks import notify_ops_on_failure
from leadflow.config.settings import get_settings
from leadflow.steps.scoring import ScoreResult
from tasks.common import utc_now
from tasks.scoring import calculate_lead_score, list_leads_to_score, load_leads_to_score, scoring_policy


def rescore_run_name() -> str:
    """Name runs after the policy they apply."""
    return f"rescore-{flow_run.parameters.get('policy') or get_settings().scoring_policy}"


@flow(name="lead-rescore", flow_run_name=rescore_run_name, on_failure=[notify_ops_on_failure],
      on_crashed=[notify_ops_on_failure], log_prints=False)
def lead_rescore(policy: str | None = None, as_of: datetime | None = None, page_size: int = 50_000) -> dict[str, Any]:
    """Re-score all leads page by page; only changed scores are written, each with a `lead_rescored` event.

    Args:
        policy: Scoring policy name in leadflow/config/policies/ or a JSON file path (default: LEADFLOW_SCORING_POLICY).
        as_of: Time that recency decay is measured from (default: now); fix it to reproduce a run exactly.
        page_size: Leads per page; memory follows this.
    """
    chosen = scoring_policy(policy)
    moment = as_of or utc_now()
    total = ScoreResult()
    page = list_leads_to_score(0, page_size)
    while page:
        frame = load_leads_to_score(page)
        total.add(calculate_lead_score(frame, moment, None, policy=policy))
        page = list_leads_to_score(page[-1], page_size)
    summary = {
        "policy_version": chosen.version,
        "as_of": moment.isoformat(),
        "leads_scored": total.scored,
        "scores_changed": total.changed,
        "tiers": dict(sorted(total.by_tier.items())),
        "score_bands": dict(sorted(total.by_band.items())),
    }
    tiers = "".join(f"| {tier} | {count} |\n" for tier, count in summary["tiers"].items()) or "| none | 0 |\n"
    create_markdown_artifact(
        key="lead-rescore-summary",
        markdown=(f"# Re-score with policy {chosen.version}\n\n{total.scored} leads scored, {total.changed} changed "
                  f"(each change is a `lead_rescored` event with old and new values).\n\n"
                  f"| tier | leads |\n|---|---|\n{tiers}"),
        description="Leads re-scored and the tier distribution after the re-score.",
    )
    get_run_logger().info("Re-scored %d leads with policy %s: %d changed", total.scored, chosen.version, total.changed)
    return summary
