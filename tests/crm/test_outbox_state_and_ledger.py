"""The outbox's delivery state, the backfill ledger and intake batch summaries, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from leadflow.crm import backfill as ledger
from leadflow.crm import outbox
from leadflow.crm.submissions import batch_summary, finish_batch, start_batch
from leadflow.domain.backfill import UNDATED_WINDOW, make_windows
from tests.helpers import outbox_by_key, queue_outbox_rows

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _queue(crm, channels: list[str]) -> None:
    queue_outbox_rows(crm, channels, NOW)


def test_claims_never_overlap_and_only_due_rows_are_claimed(crm):
    _queue(crm, ["email"] * 5)
    first, rows = outbox.claim_batch(crm, NOW, 3)
    second, more = outbox.claim_batch(crm, NOW, 3)
    assert [r["idempotency_key"] for r in rows] == ["k:0", "k:1", "k:2"]
    assert [r["idempotency_key"] for r in more] == ["k:3", "k:4"] and first != second
    assert outbox.claim_batch(crm, NOW, 3)[1] == []
    assert outbox.outbox_counts(crm) == {"sending": 5}


def test_sent_and_failed_rows_are_recorded_only_under_their_claim(crm):
    _queue(crm, ["email", "apprise", "email"])
    token, rows = outbox.claim_batch(crm, NOW, 3)
    ids = [r["id"] for r in rows]
    assert outbox.confirm_claim(crm, ids[1], token, NOW)
    outbox.mark_sent(crm, [ids[0]], {ids[0]: 2}, token, NOW)
    outbox.mark_sent(crm, [ids[1]], {}, "another run's token", NOW)  # not this run's claim: nothing changes
    outbox.mark_failed(crm, ids[1], token, 1, "TimeoutError: slow", NOW + timedelta(minutes=5))
    outbox.mark_failed(crm, ids[2], token, 1, "PermanentDeliveryError: refused", None)
    frame = outbox_by_key(crm)
    assert frame.loc["k:0", ["status", "attempts"]].tolist() == ["sent", 2]
    assert frame.loc["k:1", "status"] == "pending" and pd.isna(frame.loc["k:1", "send_started_at"])
    assert frame.loc["k:1", "next_attempt_at"] == pd.Timestamp(NOW + timedelta(minutes=5))
    assert frame.loc["k:2", ["status", "last_error"]].tolist() == ["failed", "PermanentDeliveryError: refused"]
    # Not due before its retry time; due after it.
    assert outbox.claim_batch(crm, NOW, 10)[1] == []
    assert [r["idempotency_key"] for r in outbox.claim_batch(crm, NOW + timedelta(minutes=6), 10)[1]] == ["k:1"]


def test_stale_claims_are_requeued_when_safe_and_failed_when_the_send_began(crm):
    _queue(crm, ["email", "email", "apprise"])
    token, rows = outbox.claim_batch(crm, NOW, 3)
    for row in rows[1:]:
        assert outbox.confirm_claim(crm, row["id"], token, NOW)
    # Within the lease nothing is touched.
    assert outbox.recover_stale(crm, NOW + timedelta(minutes=5), timedelta(minutes=10), ["email"]) == (0, 0)
    # Email is idempotent here (.eml files): both email rows go back; the Apprise row's outcome is unknown.
    assert outbox.recover_stale(crm, NOW + timedelta(minutes=11), timedelta(minutes=10), ["email"]) == (2, 1)
    frame = outbox_by_key(crm)
    assert frame["status"].tolist() == ["pending", "pending", "failed"]
    assert frame.loc["k:2", "last_error"] == outbox.UNKNOWN_OUTCOME


def test_with_no_idempotent_channel_a_begun_send_is_never_requeued(crm):
    _queue(crm, ["email", "email"])
    token, rows = outbox.claim_batch(crm, NOW, 2)
    assert outbox.confirm_claim(crm, rows[1]["id"], token, NOW)
    assert outbox.recover_stale(crm, NOW + timedelta(hours=1), timedelta(minutes=10)) == (1, 1)
    assert outbox_by_key(crm)["status"].tolist() == ["pending", "failed"]


def test_a_window_is_taken_once_until_it_fails_or_its_run_is_abandoned(crm):
    window = make_windows(datetime(2024, 1, 1).date(), datetime(2024, 1, 31).date(), "month")[0]
    take = {"source": "src", "origin": "/exports/a.csv", "window": window, "policy": "p1", "flow_run_id": None,
            "timeout": timedelta(hours=1)}
    assert ledger.start_window(crm, now=NOW, **take) == 1
    assert ledger.start_window(crm, now=NOW + timedelta(minutes=5), **take) is None  # another run has it
    assert ledger.start_window(crm, now=NOW + timedelta(hours=2), **take) == 2  # that run died: taken over
    ledger.finish_window(crm, source="src", window_id=window.id, policy="p1", status="failed", rows=0,
                         summary={"error": "boom"}, now=NOW)
    assert ledger.start_window(crm, now=NOW + timedelta(hours=2), **take) == 3
    ledger.finish_window(crm, source="src", window_id=window.id, policy="p1", status="completed", rows=7,
                         summary={"rows_read": 7}, now=NOW)
    assert ledger.start_window(crm, now=NOW + timedelta(hours=3), **take) is None
    assert ledger.completed_windows(crm, "src", "p1") == {window.id}
    # Another policy version is new work for the same window.
    assert ledger.completed_windows(crm, "src", "p2") == set()
    assert ledger.start_window(crm, now=NOW, **{**take, "policy": "p2"}) == 1
    ledger.start_window(crm, now=NOW, **{**take, "window": UNDATED_WINDOW})
    rows = ledger.ledger_rows(crm, "src", "p1")
    assert [r["window_id"] for r in rows] == [window.id, "undated"] and rows[0]["rows"] == 7
    assert len(ledger.ledger_rows(crm)) == 3


def test_batch_summary_of_a_flow_run(crm):
    start_batch(crm, "b1", "/exports/a.csv", None, "run-1", NOW)
    finish_batch(crm, "b1", "completed", {"rows_read": 3, "submissions_new": 2}, NOW)
    assert batch_summary(crm, "run-1") == {"rows_read": 3, "submissions_new": 2}
    assert batch_summary(crm, "run-2") == {}
