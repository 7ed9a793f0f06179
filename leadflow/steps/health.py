"""Publish Daily Health's step: read yesterday's aggregates (crm/health.py) and shape them (domain/health.py)."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime

from leadflow.crm import health as health_store
from leadflow.crm.store import Store
from leadflow.domain.health import DailyHealth, daily_health, day_window


def daily_pipeline_health(store: Store, now: datetime, timezone: str) -> DailyHealth:
    """The pipeline's health for the day before `now` in `timezone` (queues as they are at `now`)."""
    day, start, end = day_window(now, timezone)
    inputs = health_store.load_health_inputs(store, start, end)
    return daily_health(day, timezone, start, end, now, **{f.name: getattr(inputs, f.name) for f in fields(inputs)})
