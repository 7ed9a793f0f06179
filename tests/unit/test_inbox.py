"""lead_inbox: atomic claims on SQLite and PostgreSQL, crash recovery, and the raw chunk shape intake reads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import select

from leadflow.crm import inbox
from leadflow.crm.inbox import INBOX, claim_rows, mark_processed, release_claim, submit_lead
from leadflow.domain.inbox import InboxError, inbox_frame

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _fill(crm, n: int) -> list[int]:
    return [submit_lead(crm, {"email": f"p{i}@acme.com", "source": "web_form"}) for i in range(n)]


def test_concurrent_claims_never_hand_a_row_to_two_claimers(crm):
    ids = _fill(crm, 300)
    claimed: list[list[int]] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def claimer() -> None:
        start.wait()
        while True:
            claim = claim_rows(crm, 7)
            if not claim:
                return
            with lock:
                claimed.append(claim.ids)
            mark_processed(crm, claim, "batch")

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [i for ids_ in claimed for i in ids_]
    assert len(flat) == len(set(flat)), "a row was claimed twice"
    assert sorted(flat) == ids
    assert len(claimed) >= 300 // 7
    assert inbox.pending_count(crm) == 0


def test_a_claimed_row_is_not_claimed_again_until_the_claim_times_out(crm):
    _fill(crm, 3)
    first = claim_rows(crm, 10, now=NOW)
    assert len(first) == 3
    assert not claim_rows(crm, 10, now=NOW + timedelta(minutes=5))
    # The first claimer crashed: after the timeout its rows are claimed again, and its late mark does nothing.
    again = claim_rows(crm, 10, now=NOW + timedelta(minutes=16))
    assert again.ids == first.ids
    assert mark_processed(crm, first, "stale") == 0
    assert mark_processed(crm, again, "b2") == 3
    assert not claim_rows(crm, 10, now=NOW + timedelta(hours=2))
    with crm.engine.connect() as conn:
        rows = conn.execute(select(INBOX.c.attempts, INBOX.c.batch_id)).all()
    assert rows == [(2, "b2")] * 3


def test_has_claimable_rows_sees_exactly_what_a_claim_would_take(crm):
    assert not inbox.has_claimable_rows(crm, now=NOW)
    _fill(crm, 1)
    assert inbox.has_claimable_rows(crm, now=NOW)
    claim = claim_rows(crm, 10, now=NOW)
    assert not inbox.has_claimable_rows(crm, now=NOW + timedelta(minutes=5))
    assert inbox.has_claimable_rows(crm, now=NOW + timedelta(minutes=16))
    mark_processed(crm, claim, "b1")
    assert not inbox.has_claimable_rows(crm, now=NOW + timedelta(minutes=16))


def test_a_released_claim_is_claimed_again_at_once(crm):
    _fill(crm, 2)
    claim = claim_rows(crm, 10, now=NOW)
    assert release_claim(crm, claim) == 2
    assert claim_rows(crm, 10, now=NOW).ids == claim.ids


def test_claims_take_the_oldest_rows_first_and_respect_the_limit(crm):
    ids = _fill(crm, 5)
    assert claim_rows(crm, 2).ids == ids[:2]
    assert claim_rows(crm, 2).ids == ids[2:4]
    assert claim_rows(crm, 2).ids == ids[4:]


@pytest.mark.parametrize("payload", [{}, [], "text", None])
def test_submit_rejects_what_is_not_a_lead(crm, payload):
    with pytest.raises(InboxError):
        submit_lead(crm, payload)


RECEIVED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "replay", "column", "expected"),
    [
        ({"email": "a@x.com"}, False, "submitted_at", "2026-03-01T09:30:00+00:00"),
        ({"email": "a@x.com", "submitted_at": "2025-01-02"}, False, "submitted_at", "2025-01-02"),
        ({"email": "a@x.com", "submitted_at": " "}, False, "submitted_at", "2026-03-01T09:30:00+00:00"),
        ({"email": "a@x.com", "Created Date": "2025-01-02"}, False, "Created Date", "2025-01-02"),
        ({"email": "a@x.com"}, True, "submitted_at", None),
    ],
)
def test_inbox_frame_dates_live_posts_by_their_arrival_but_never_replays(payload, replay, column, expected):
    frame = inbox_frame([(41, payload, RECEIVED)], replay=replay)
    assert frame["_row"].tolist() == [41]
    assert frame["_malformed"].isna().all()
    value = frame[column].iloc[0] if column in frame.columns else None
    assert (None if pd.isna(value) else value) == expected


def test_inbox_frame_keeps_a_payload_that_is_not_an_object_as_malformed():
    frame = inbox_frame([(1, {"email": "a@x.com"}, RECEIVED), (2, [1, 2], RECEIVED)])
    assert frame["_malformed"].tolist()[1] == "[1, 2]"
    assert frame["_row"].tolist() == [1, 2]


def test_a_dead_runs_claims_are_given_back_by_its_hook_and_no_one_elses(crm):
    from types import SimpleNamespace

    from flows.hooks import release_inbox_claims
    from flows.intake import lead_intake

    ids = _fill(crm, 6)
    dead, alive = "9b2f7a52-0000-4000-8000-000000000001", "9b2f7a52-0000-4000-8000-000000000002"
    first = claim_rows(crm, 2, now=NOW, token=dead)
    second = claim_rows(crm, 2, now=NOW, token=dead)
    others = claim_rows(crm, 2, now=NOW, token=alive)
    assert [first.ids, second.ids, others.ids] == [ids[:2], ids[2:4], ids[4:]]
    # The dead run had written its first chunk.
    assert mark_processed(crm, first, "b1") == 2
    assert not claim_rows(crm, 10, now=NOW + timedelta(minutes=1))

    release_inbox_claims(lead_intake, SimpleNamespace(id=dead), None)

    # At once, not after the claim timeout: only the dead run's unprocessed rows.
    assert claim_rows(crm, 10, now=NOW + timedelta(minutes=1)).ids == ids[2:4]
    assert mark_processed(crm, others, "b2") == 2
    release_inbox_claims(lead_intake, SimpleNamespace(id=dead), None)
    assert inbox.pending_count(crm) == 2


def test_lead_intake_gives_claims_back_when_it_crashes_or_is_cancelled():
    from flows.hooks import release_inbox_claims
    from flows.intake import lead_intake

    assert release_inbox_claims in lead_intake.on_crashed_hooks
    assert release_inbox_claims in lead_intake.on_cancellation_hooks
