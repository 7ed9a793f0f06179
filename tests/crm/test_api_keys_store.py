"""API keys and the inbox's idempotent, batched inserts on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from leadflow.crm.api_keys import ApiKeyError, create_key, find_active_key, find_active_keys, list_keys, revoke_key
from leadflow.crm.inbox import INBOX, KeyRevoked, submit_lead_once, submit_leads_once
from leadflow.crm.schema import ApiKey
from leadflow.domain.api_intake import hash_key


def test_keys_are_stored_hashed_listed_and_revoked(crm):
    key, key_id = create_key(crm, "website", default_channel="web_form", allowed_origins=["https://w.example"],
                             rate_per_minute=30)
    with crm.engine.connect() as conn:
        stored = conn.execute(select(ApiKey.__table__)).mappings().one()
    assert stored["key_hash"] == hash_key(key.token) and key.token not in str(dict(stored))
    found = find_active_key(crm, hash_key(key.token))
    assert found["id"] == key_id and found["allowed_origins"] == ["https://w.example"]
    assert found["rate_per_minute"] == 30 and found["default_channel"] == "web_form"
    with pytest.raises(ApiKeyError, match="exists already"):
        create_key(crm, "website")
    other, _ = create_key(crm, "chat")
    assert set(find_active_keys(crm, [hash_key(key.token), hash_key(other.token), "nope"])) == {
        hash_key(key.token), hash_key(other.token)}
    # By its listed prefix; a second revoke changes nothing.
    revoke_key(crm, key.prefix)
    revoked_at = list_keys(crm)[0]["revoked_at"]
    assert revoked_at is not None and revoke_key(crm, "website")["revoked_at"] == revoked_at
    assert find_active_key(crm, hash_key(key.token)) is None
    assert [(k["name"], k["revoked_at"] is not None) for k in list_keys(crm)] == [("website", True), ("chat", False)]
    with pytest.raises(ApiKeyError, match="no API key"):
        revoke_key(crm, "nothing")


def _count(crm) -> int:
    with crm.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(INBOX)).scalar_one()


def test_one_idempotency_key_stores_one_row_per_api_key_even_within_one_batch(crm):
    _, key_a = create_key(crm, "a")
    _, key_b = create_key(crm, "b")
    lead = {"email": "jane@acme.com"}
    results = submit_leads_once(crm, [(lead, key_a, "k1"), (lead, key_a, "k1"), (lead, key_b, "k1"),
                                      (lead, key_a, None), (lead, key_a, None)])
    assert results[0][1] and results[1] == (results[0][0], False)
    assert results[2][1] and results[2][0] != results[0][0]
    assert results[3][1] and results[4][1]
    assert submit_lead_once(crm, lead, api_key_id=key_a, idempotency_key="k1") == (results[0][0], False)
    assert _count(crm) == 4


def test_a_row_the_database_cannot_take_fails_alone(crm):
    _, key_id = create_key(crm, "a")
    results = submit_leads_once(crm, [({"email": "a@b.com"}, key_id, None), ({"email": "a\ud800@b.com"}, key_id, None),
                                      ({"email": "c@d.com"}, key_id, "x")])
    assert isinstance(results[1], Exception)
    assert results[0][1] and results[2][1]
    assert _count(crm) == 2


def test_a_lead_of_a_revoked_key_is_not_stored_when_an_active_key_is_required(crm):
    _, live = create_key(crm, "live")
    _, gone = create_key(crm, "gone")
    revoke_key(crm, "gone")
    lead = {"email": "jane@acme.com"}
    results = submit_leads_once(crm, [(lead, live, None), (lead, gone, None), (lead, gone, "k1"), (lead, live, "k1")],
                                require_active_key=True)
    assert results[0][1] and results[3][1]
    assert isinstance(results[1], KeyRevoked) and isinstance(results[2], KeyRevoked)
    assert _count(crm) == 2
    with pytest.raises(KeyRevoked):
        submit_lead_once(crm, lead, api_key_id=gone, require_active_key=True)
    # Without the requirement (webhooks, `leadflow submit`), nothing changes.
    assert submit_lead_once(crm, lead, api_key_id=gone)[1]
    assert _count(crm) == 3


def test_a_batch_answers_each_lead_in_its_place_with_its_own_row(crm):
    _, key_id = create_key(crm, "a")
    leads = [({"email": f"lead{i}@acme.com"}, key_id, "k" if i == 2 else None) for i in range(5)]
    results = submit_leads_once(crm, leads, require_active_key=True)
    with crm.engine.connect() as conn:
        stored = dict(conn.execute(select(INBOX.c.id, INBOX.c.payload)).all())
    assert [stored[inbox_id]["email"] for inbox_id, _ in results] == [f"lead{i}@acme.com" for i in range(5)]
    assert all(inserted for _, inserted in results)


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_a_revoke_waits_for_inserts_that_already_passed_the_key_check(crm):
    """READ COMMITTED: an insert that checked its key before the revoke must commit before the revoke returns, so
    no lead of a revoked key is stored after `keys revoke` has answered."""
    import threading

    from leadflow.crm.inbox import _active_keys

    _, key_id = create_key(crm, "race")
    returned = threading.Event()
    with crm.begin() as conn:
        assert _active_keys(conn, [key_id]) == {key_id}
        revoker = threading.Thread(target=lambda: (revoke_key(crm, "race"), returned.set()))
        revoker.start()
        # Still inside the insert's transaction: the revoke is held back by the key row's share lock.
        assert not returned.wait(1.0)
    assert returned.wait(10.0)
    revoker.join()
    with crm.begin() as conn:
        assert _active_keys(conn, [key_id]) == set()
