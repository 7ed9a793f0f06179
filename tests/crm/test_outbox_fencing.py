"""The outbox claim's fencing check, lease renewal, takeover after expiry and release, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from leadflow.crm import outbox
from tests.helpers import outbox_by_key, queue_outbox_rows

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)


def _queue(crm, channels: list[str]) -> None:
    queue_outbox_rows(crm, channels, NOW)


def test_the_fence_confirms_the_owner_and_gives_a_stranger_nothing(crm):
    _queue(crm, ["email", "email"])
    token, rows = outbox.claim_batch(crm, NOW, 2)
    first, second = (r["id"] for r in rows)
    later = NOW + timedelta(minutes=3)
    assert outbox.confirm_claim(crm, first, "another run's token", later) is False
    assert outbox.confirm_claim(crm, first, token, later) is True
    frame = outbox_by_key(crm)
    # The owner's confirmation commits the start of its send and renews that row's lease; the stranger's did nothing.
    assert frame.loc["k:0", "send_started_at"] == pd.Timestamp(later)
    assert frame.loc["k:0", "claimed_at"] == pd.Timestamp(later)
    assert pd.isna(frame.loc["k:1", "send_started_at"]) and frame.loc["k:1", "claimed_at"] == pd.Timestamp(NOW)
    # Without `started` (an idempotent channel) only the lease is renewed.
    assert outbox.confirm_claim(crm, second, token, later, started=False) is True
    assert pd.isna(outbox_by_key(crm).loc["k:1", "send_started_at"])
    # A row no longer `sending` (already sent) fails the fence even for its old token.
    outbox.mark_sent(crm, [first], {}, token, later)
    assert outbox.confirm_claim(crm, first, token, later) is False


def test_a_row_taken_over_after_the_lease_fails_the_old_owners_fence(crm):
    _queue(crm, ["email"] * 3)
    old, rows = outbox.claim_batch(crm, NOW, 3)
    ids = [r["id"] for r in rows]
    assert outbox.confirm_claim(crm, ids[0], old, NOW)
    # The old run stalls past its lease: a new run settles the claim and takes the unstarted rows over.
    late = NOW + LEASE + timedelta(seconds=1)
    assert outbox.recover_stale(crm, late, LEASE) == (2, 1)
    new, taken = outbox.claim_batch(crm, late, 10)
    assert [r["id"] for r in taken] == ids[1:]
    assert outbox.extend_lease(crm, old, late) == set()
    assert outbox.confirm_claim(crm, ids[1], old, late) is False
    assert outbox.confirm_claim(crm, ids[1], new, late) is True
    # The old owner's bookkeeping cannot touch the new claim's rows.
    outbox.mark_sent(crm, [ids[2]], {}, old, late)
    outbox.mark_failed(crm, ids[2], old, 1, "TimeoutError", None)
    assert outbox_by_key(crm).loc["k:2", ["status", "claim_token"]].tolist() == ["sending", new]


def test_a_slow_owner_still_records_the_outcome_of_a_send_marked_unknown(crm):
    _queue(crm, ["email"])
    token, rows = outbox.claim_batch(crm, NOW, 1)
    assert outbox.confirm_claim(crm, rows[0]["id"], token, NOW)
    assert outbox.recover_stale(crm, NOW + LEASE, LEASE) == (0, 1)
    assert outbox_by_key(crm).loc["k:0", ["status", "last_error"]].tolist() == ["failed", outbox.UNKNOWN_OUTCOME]
    # The unknown outcome is never claimed again, but the owner that was only slow says how its send ended.
    assert outbox.claim_batch(crm, NOW + 2 * LEASE, 10)[1] == []
    outbox.mark_sent(crm, [rows[0]["id"]], {rows[0]["id"]: 1}, token, NOW + LEASE)
    assert outbox_by_key(crm).loc["k:0", ["status", "attempts"]].tolist() == ["sent", 1]


def test_a_renewed_lease_is_taken_over_only_after_it_expires_again(crm):
    _queue(crm, ["email", "email", "apprise"])
    token, rows = outbox.claim_batch(crm, NOW, 3)
    ids = {r["id"] for r in rows}
    # Within the lease nothing is taken, to the microsecond before its end.
    assert outbox.recover_stale(crm, NOW + LEASE - timedelta(microseconds=1), LEASE) == (0, 0)
    renewed = NOW + timedelta(minutes=6)
    assert outbox.extend_lease(crm, token, renewed) == ids
    # The claim's first lease has run out, but it was renewed: still this run's.
    assert outbox.recover_stale(crm, NOW + LEASE + timedelta(minutes=1), LEASE) == (0, 0)
    assert outbox.recover_stale(crm, renewed + LEASE - timedelta(seconds=1), LEASE) == (0, 0)
    # Only after the renewed lease expires is the claim taken over.
    assert outbox.recover_stale(crm, renewed + LEASE, LEASE) == (3, 0)
    assert outbox.outbox_counts(crm) == {"pending": 3}
    assert outbox.extend_lease(crm, token, renewed + LEASE) == set()


def test_lease_renewal_returns_only_the_rows_still_held(crm):
    _queue(crm, ["email"] * 3)
    token, rows = outbox.claim_batch(crm, NOW, 3)
    ids = [r["id"] for r in rows]
    outbox.mark_sent(crm, [ids[0]], {}, token, NOW)
    assert outbox.extend_lease(crm, token, NOW + timedelta(minutes=1)) == set(ids[1:])
    assert outbox.extend_lease(crm, "another run's token", NOW + timedelta(minutes=1)) == set()


def test_released_rows_are_pending_again_without_an_attempt(crm):
    _queue(crm, ["email"] * 3)
    token, rows = outbox.claim_batch(crm, NOW, 3)
    ids = [r["id"] for r in rows]
    assert outbox.confirm_claim(crm, ids[2], token, NOW)
    assert outbox.release_claims(crm, ids, "another run's token") == 0
    # A row whose send began is never released as if untouched.
    assert outbox.release_claims(crm, ids, token) == 2
    frame = outbox_by_key(crm)
    assert frame["status"].tolist() == ["pending", "pending", "sending"]
    assert frame.loc[["k:0", "k:1"], "attempts"].tolist() == [0, 0]
    assert frame.loc[["k:0", "k:1"], ["claim_token", "claimed_at", "next_attempt_at"]].isna().all().all()
    # Due at once: the next claim takes them.
    assert [r["id"] for r in outbox.claim_batch(crm, NOW, 10)[1]] == ids[:2]


def test_a_channel_can_be_left_out_of_a_claim(crm):
    _queue(crm, ["email", "apprise", "email", "apprise"])
    _, rows = outbox.claim_batch(crm, NOW, 10, exclude_channels=["email"])
    assert [r["idempotency_key"] for r in rows] == ["k:1", "k:3"]
    assert outbox.outbox_counts(crm) == {"pending": 2, "sending": 2}
