"""Task shell of the daily health artifact: yesterday's pipeline at a glance in the Prefect UI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from leadflow.config.settings import get_settings
from leadflow.steps.health import daily_pipeline_health
from tasks.common import DB_TASK, store

HEALTH_KEY = "daily-health"


@task(name="Publish Daily Health", **DB_TASK)
def publish_daily_health(now: datetime) -> dict[str, Any]:
    """Publish yesterday's volume, speed to lead, SLA breaches, queues and quarantine as artifacts (counts only)."""
    health = daily_pipeline_health(store(), now, get_settings().timezone)
    create_markdown_artifact(key=HEALTH_KEY, markdown=health.markdown(),
                             description=f"Pipeline health of {health.day}")
    create_table_artifact(key=f"{HEALTH_KEY}-figures", table=health.table(),
                          description=f"Pipeline health of {health.day}, one row per figure")
    get_run_logger().info("Health of %s: %d submissions, %d SLA breaches, %d unassigned, %d pending messages, "
                          "%d quarantined", health.day, health.submissions, health.sla.breached, health.unassigned,
                          health.outbox.pending, health.quarantined)
    return health.as_dict()
