"""Store.require_current: a missing or unmigrated CRM is refused with the fix, and nothing is created for it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from leadflow.crm import store as store_module
from leadflow.crm.store import DatabaseNotReady, Store, head_revision
from tests.conftest import PG_URL


def test_a_migrated_crm_passes_on_both_databases(crm):
    assert crm.revision() == head_revision() == "0030_pg_partial_indexes"
    crm.require_current()


def test_a_missing_sqlite_file_is_refused_and_not_created(tmp_path: Path):
    path = tmp_path / "typo" / "crm.db"
    store = Store(f"sqlite:///{path}")
    try:
        with pytest.raises(DatabaseNotReady) as refused:
            store.require_current()
    finally:
        store.dispose()
    message = str(refused.value)
    assert f"sqlite:///{path}" in message and "`leadflow db upgrade`" in message
    assert "\n" not in message
    assert not path.parent.exists()


def test_an_empty_or_foreign_sqlite_file_is_refused(tmp_path: Path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER)")
    store = Store(f"sqlite:///{path}")
    try:
        with pytest.raises(DatabaseNotReady, match="holds no CRM schema; create it with `leadflow db upgrade`"):
            store.require_current()
    finally:
        store.dispose()


def test_an_older_revision_is_refused_until_upgraded(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path / 'new' / 'crm.db'}")
    try:
        store.upgrade("0012_keyed_email_hashes")
        with pytest.raises(DatabaseNotReady, match=f"at revision 0012_keyed_email_hashes, not {head_revision()}; "
                                                   "migrate it with `leadflow db upgrade`"):
            store.require_current()
        store.upgrade()
        store.require_current()
    finally:
        store.dispose()


@pytest.mark.skipif(not PG_URL, reason="needs LEADFLOW_TEST_PG_URL")
def test_a_missing_postgresql_database_is_refused_with_the_password_masked():
    url = make_url(PG_URL).set(password="s3cret-pw", database="leadflow_no_such_crm").render_as_string(
        hide_password=False)
    store = Store(url)
    try:
        with pytest.raises(DatabaseNotReady) as refused:
            store.require_current()
    finally:
        store.dispose()
    message = str(refused.value)
    assert "s3cret-pw" not in message and ":***@" in message and "/leadflow_no_such_crm" in message
    assert "`leadflow db upgrade`" in message


def test_flow_tasks_refuse_a_missing_crm_too(tmp_path: Path, monkeypatch):
    from leadflow.config.settings import get_settings
    from tasks.common import store

    path = tmp_path / "crm.db"
    url = f"sqlite:///{path}"
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        with pytest.raises(DatabaseNotReady, match="no CRM database at"):
            store()
        assert not path.exists()
    finally:
        get_settings.cache_clear()
        store_module._stores.pop(url).dispose()


def test_leads_leave_room_for_updated_rows_on_postgresql_and_the_migration_goes_back(crm):
    """0023_pg_bulk: fillfactor 70 on PostgreSQL's leads (updates of unindexed columns stay on their page), 0029:
    30 (intake's one rewrite of each lead stays on its page); a no-op on SQLite; downgrades go back step by step."""

    def fillfactor() -> str | None:
        if crm.dialect != "postgresql":
            return None
        with crm.engine.connect() as conn:
            options = conn.exec_driver_sql("SELECT reloptions FROM pg_class WHERE relname = 'leads'").scalar_one()
        return next((o for o in options or [] if o.startswith("fillfactor=")), None)

    assert fillfactor() == ("fillfactor=30" if crm.dialect == "postgresql" else None)
    try:
        _downgrade(crm, "0028_pg_intake")
        assert fillfactor() == ("fillfactor=70" if crm.dialect == "postgresql" else None)
        assert crm.revision() == "0028_pg_intake"
        _downgrade(crm, "0018_quarantine_retry")
        assert fillfactor() is None and crm.revision() == "0018_quarantine_retry"
    finally:
        crm.upgrade()
    assert fillfactor() == ("fillfactor=30" if crm.dialect == "postgresql" else None)


def test_leads_keep_only_the_indexes_statements_use_and_the_migration_goes_back(crm):
    """0030: five unused indexes of leads dropped, owner, account and spam flag time indexed where set (partial,
    on both databases); the downgrade brings back the eleven full indexes."""

    def indexes() -> dict[str, bool]:
        # index name -> partial
        with crm.engine.connect() as conn:
            if crm.dialect == "postgresql":
                rows = conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'leads'")
            else:
                rows = conn.exec_driver_sql("SELECT name, coalesce(sql, '') FROM sqlite_master "
                                            "WHERE type = 'index' AND tbl_name = 'leads'")
            return {name: " WHERE " in definition.upper() for name, definition in rows}

    where_set = {"ix_leads_owner_id", "ix_leads_account_id", "ix_leads_spam_flagged_at"}
    dropped = {"ix_leads_company_key", "ix_leads_company_domain", "ix_leads_created_at", "ix_leads_last_touch_at",
               "ix_leads_priority"}
    now = indexes()
    assert {name for name, partial in now.items() if partial} == where_set
    assert not dropped & now.keys() and "ix_leads_status" in now
    try:
        _downgrade(crm, "0029_pg_write_once")
        before = indexes()
        assert (where_set | dropped) <= before.keys() and not any(before[name] for name in where_set | dropped)
    finally:
        crm.upgrade()
    assert indexes() == now


def _downgrade(store: Store, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from leadflow.crm.store import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
