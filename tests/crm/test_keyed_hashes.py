"""Spam tombstones and exemptions hold keyed email hashes (HMAC-SHA256) on SQLite and PostgreSQL, and migration 0012
re-keys the bare SHA-256 rows of earlier versions."""

from __future__ import annotations

import hmac
import os
import stat
from datetime import timedelta
from hashlib import sha256
from pathlib import Path

import pandas as pd
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import insert, select

from leadflow.config.settings import HASH_KEY_SUFFIX, email_hash_key, get_settings
from leadflow.crm.schema import SpamExemption, SpamTombstone
from leadflow.crm.store import MIGRATIONS
from leadflow.domain.spam import email_hash
from leadflow.steps import spam as cleanup
from tests.crm.test_spam_store import NOW, POLICY, ingest, row, sweep


def use_key(monkeypatch, value: str) -> None:
    monkeypatch.setenv("LEADFLOW_HASH_KEY", value)
    get_settings.cache_clear()


def purge_spammer(crm, email: str) -> str:
    """Flag and purge one spam lead; returns the hash its tombstone holds."""
    ingest(crm, [row(email, message="casino")])
    assert sweep(crm).flagged == 1
    assert cleanup.purge_expired_spam(crm, POLICY, now=NOW + timedelta(days=31)).purged == 1
    with crm.engine.connect() as conn:
        return conn.execute(select(SpamTombstone.email_hash)).scalar_one()


def reimport_is_known_bad(crm, email: str) -> int:
    batch, ids = ingest(crm, [row(email, minutes=60, message="hello again")])
    return cleanup.check_spam_at_intake(crm, POLICY, ids, batch, NOW).by_reason.get("known_bad_address", 0)


def test_a_purged_spammers_reimport_is_caught_by_the_keyed_hash(crm, monkeypatch):
    use_key(monkeypatch, "first-key-0123456789abcdef0123456789")
    stone = purge_spammer(crm, "gone@mailinator.com")
    assert stone == hmac.new(b"first-key-0123456789abcdef0123456789", b"gone@mailinator.com", sha256).hexdigest()
    assert stone != sha256(b"gone@mailinator.com").hexdigest()
    assert reimport_is_known_bad(crm, " Gone@Mailinator.com ") == 1


def test_a_different_key_does_not_match(crm, monkeypatch):
    use_key(monkeypatch, "first-key-0123456789abcdef0123456789")
    purge_spammer(crm, "gone@mailinator.com")
    use_key(monkeypatch, "other-key-0123456789abcdef0123456789")
    assert reimport_is_known_bad(crm, "gone@mailinator.com") == 0
    one, two = (email_hash(pd.Series(["a@b.com"]), key=k).iloc[0] for k in (b"k1", b"k2"))
    assert one != two


def test_without_a_setting_sqlite_keeps_a_generated_key_beside_the_database(sqlite_crm, monkeypatch):
    monkeypatch.delenv("LEADFLOW_HASH_KEY", raising=False)
    get_settings.cache_clear()
    key = email_hash_key()
    path = Path(sqlite_crm.engine.url.database + HASH_KEY_SUFFIX)
    assert path.read_text().strip().encode() == key and len(key) == 64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert email_hash_key() == key, "the key is made once and then read"
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", "postgresql://db.example/crm")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="LEADFLOW_HASH_KEY must be set"):
        email_hash_key()


def migrate(crm, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with crm.engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)


def test_migration_rekeys_the_rows_of_existing_leads_and_drops_the_rest(crm, monkeypatch):
    use_key(monkeypatch, "migration-key-0123456789abcdef012345")
    key = email_hash_key()
    bare = {e: sha256(e.encode()).hexdigest() for e in ("kept@x.com", "restored@x.com", "purged@x.com")}
    ingest(crm, [row("kept@x.com"), row("restored@x.com")])
    migrate(crm, "0011_rep_capacity_holds", down=True)
    try:
        with crm.begin() as conn:
            conn.execute(insert(SpamTombstone), [{"email_hash": bare[e], "reasons": "ip_burst", "purged_at": NOW}
                                                 for e in ("kept@x.com", "purged@x.com")])
            conn.execute(insert(SpamExemption), [
                {"email_hash": bare["restored@x.com"], "restored_at": NOW, "restored_by": "ops"},
                {"email_hash": bare["purged@x.com"], "restored_at": NOW, "restored_by": "ops"}])
    finally:
        migrate(crm, "heads")
    keyed = {e: hmac.new(key, e.encode(), sha256).hexdigest() for e in bare}
    with crm.engine.connect() as conn:
        assert conn.execute(select(SpamTombstone.email_hash)).scalars().all() == [keyed["kept@x.com"]]
        assert conn.execute(select(SpamExemption.email_hash)).scalars().all() == [keyed["restored@x.com"]]
    assert reimport_is_known_bad(crm, "kept@x.com") == 1
    # And back: downgrade restores the bare hashes of rows whose lead exists.
    migrate(crm, "0011_rep_capacity_holds", down=True)
    try:
        with crm.engine.connect() as conn:
            assert conn.execute(select(SpamTombstone.email_hash)).scalars().all() == [bare["kept@x.com"]]
    finally:
        migrate(crm, "heads")
