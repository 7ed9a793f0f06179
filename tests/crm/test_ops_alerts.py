"""Ops alerts of failed runs: one per run, except that the same flow failing for the same reason within the repeat
interval is recorded (withdrawn, with why) but not sent again; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from leadflow.config.settings import get_settings
from leadflow.crm.outbox import OUTBOX, outbox_frame
from leadflow.steps.delivery import queue_ops_alert

RUN_1, RUN_2 = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"


@pytest.fixture
def ops(monkeypatch):
    def configure(repeat: str = "60", urls: str | None = "json://127.0.0.1:9/ops") -> None:
        monkeypatch.setenv("LEADFLOW_OPS_ALERT_REPEAT_MINUTES", repeat)
        if urls:
            monkeypatch.setenv("LEADFLOW_OPS_ALERT_URLS", urls)
        else:
            monkeypatch.delenv("LEADFLOW_OPS_ALERT_URLS", raising=False)
        get_settings.cache_clear()

    yield configure
    get_settings.cache_clear()


@pytest.mark.parametrize(("case", "repeat", "second", "age_minutes", "expected"), [
    ("the same flow, the same reason, within the hour", "60", ("lead-mailbox", "IMAP login refused"), 5,
     "withdrawn"),
    ("the same reason after the interval", "60", ("lead-mailbox", "IMAP login refused"), 61, "pending"),
    ("another reason", "60", ("lead-mailbox", "IMAP server unreachable"), 5, "pending"),
    ("another flow, the same reason", "60", ("outbox-delivery", "IMAP login refused"), 5, "pending"),
    ("repeats switched off", "0", ("lead-mailbox", "IMAP login refused"), 5, "pending"),
])
def test_a_repeated_failure_is_recorded_but_sent_once_per_interval(crm, ops, case, repeat, second, age_minutes,
                                                                    expected):
    ops(repeat)
    queue_ops_alert("lead-mailbox", "mailbox", RUN_1, "Failed", "IMAP login refused\nTraceback ...", store=crm)
    with crm.begin() as conn:
        conn.execute(update(OUTBOX).values(created_at=datetime.now(UTC) - timedelta(minutes=age_minutes)))
    flow, reason = second
    queue_ops_alert(flow, "mailbox", RUN_2, "Failed", reason, store=crm)
    frame = outbox_frame(crm).set_index("idempotency_key")
    assert frame.loc[f"ops_alert:{RUN_1}", "status"] == "pending"
    assert frame.loc[f"ops_alert:{RUN_2}", "status"] == expected
    if expected == "withdrawn":
        assert "ops_alert_repeat_minutes=60" in frame.loc[f"ops_alert:{RUN_2}", "last_error"]


def test_without_a_channel_every_alert_is_withdrawn_and_none_counts_as_told(crm, ops):
    ops(urls=None)
    queue_ops_alert("lead-mailbox", "mailbox", RUN_1, "Failed", "boom", store=crm)
    ops()
    # The first was never sent (no channel then), so the second, now that ops can be told, is sent.
    queue_ops_alert("lead-mailbox", "mailbox", RUN_2, "Failed", "boom", store=crm)
    frame = outbox_frame(crm).set_index("idempotency_key")
    assert frame.loc[f"ops_alert:{RUN_1}", "status"] == "withdrawn"
    assert frame.loc[f"ops_alert:{RUN_2}", "status"] == "pending"
