"""Artifacts that let ops read a run at a glance in the Prefect UI, under stable keys."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from leadflow.domain.summary import IntakeSummary


@task(name="Publish Intake Summary")
def publish_intake_summary(summary: IntakeSummary) -> None:
    """Publish the run summary and the data-check results as artifacts with stable keys."""
    create_markdown_artifact(
        key="lead-intake-summary", markdown=summary.to_markdown(), description=f"Lead intake of {summary.origin}"
    )
    create_table_artifact(
        key="lead-intake-validation",
        table=list(summary.checks.values()) or [{"expectation": "none", "unexpected": 0, "success": True}],
        description="Great Expectations results of the intake suites, summed over the run's chunks",
    )
