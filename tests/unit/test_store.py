"""The store on real SQLite and PostgreSQL: migrations, upsert merge rules, idempotent inserts."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime

import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from leadflow.crm import submissions
from leadflow.crm.schema import Base, Lead
from leadflow.crm.store import Store, _bind_values, is_transient_db_error, records

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def lead_row(email: str, at: str, **values) -> dict:
    ts = pd.Timestamp(at, tz="UTC")
    return {"email": email, "first_touch_at": ts, "last_touch_at": ts, "first_touch_source": "web_form",
            "last_touch_source": "web_form", **values}


def test_migrations_match_the_models(crm):
    with crm.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert crm.revision() is not None


@pytest.mark.parametrize(
    ("stored", "incoming", "expected"),
    [
        # A newer submission's non-empty value wins; an empty one never erases.
        ({"job_title": "Engineer"}, {"job_title": "CTO", "at": "2025-02-01"}, {"job_title": "CTO"}),
        ({"job_title": "Engineer"}, {"job_title": None, "at": "2025-02-01"}, {"job_title": "Engineer"}),
        # An older submission (a backfill) only fills gaps.
        ({"job_title": "Engineer"}, {"job_title": "Intern", "at": "2024-01-01"}, {"job_title": "Engineer"}),
        ({"phone": None}, {"phone": "+4930123456", "at": "2024-01-01"}, {"phone": "+4930123456"}),
        # Counters keep the highest value seen, whatever the order.
        ({"page_views": 40}, {"page_views": 12, "at": "2025-02-01"}, {"page_views": 40}),
        ({"page_views": None}, {"page_views": 12, "at": "2024-01-01"}, {"page_views": 12}),
        ({"demo_requested": False}, {"demo_requested": True, "at": "2024-01-01"}, {"demo_requested": True}),
        # Consent follows the newest statement, including a withdrawal.
        ({"email_opt_in": True}, {"email_opt_in": False, "at": "2025-02-01"}, {"email_opt_in": False}),
    ],
)
def test_upsert_merge_rules(crm, stored, incoming, expected):
    incoming = dict(incoming)
    at = incoming.pop("at")
    with crm.begin() as conn:
        crm.upsert_leads(conn, pd.DataFrame([lead_row("a@b.com", "2025-01-01", **stored)]), NOW)
    with crm.begin() as conn:
        crm.upsert_leads(conn, pd.DataFrame([lead_row("a@b.com", at, **incoming)]), NOW)
    with crm.engine.connect() as conn:
        row = conn.execute(select(Lead)).one()
    assert {k: getattr(row, k) for k in expected} == expected
    # Attribution is not the upsert's business: update_lead_sources moves touches.
    assert row.first_touch_at.replace(tzinfo=UTC) == pd.Timestamp("2025-01-01", tz="UTC")


def test_records_turn_missing_values_into_none_and_numpy_into_python():
    frame = pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "b": [1.5, float("nan")],
                          "c": pd.array(["x", None], dtype="string"), "d": pd.to_datetime(["2025-01-01", None])})
    rows = records(frame)
    assert rows[1] == {"a": None, "b": None, "c": None, "d": None}
    assert type(rows[0]["a"]) is int and type(rows[0]["b"]) is float


@pytest.mark.parametrize(
    ("error", "transient"),
    [(ValueError("no"), False), (None, False)],
)
def test_only_database_errors_are_transient(error, transient):
    assert is_transient_db_error(error) is transient


def test_sqlite_lock_is_transient():
    from sqlalchemy.exc import IntegrityError, OperationalError

    assert is_transient_db_error(OperationalError("x", {}, sqlite3.OperationalError("database is locked")))
    assert not is_transient_db_error(IntegrityError("x", {}, sqlite3.IntegrityError("UNIQUE constraint failed")))


def test_refresh_statistics_analyzes_on_postgresql_and_is_a_no_op_on_sqlite(crm):
    from sqlalchemy import text

    crm.refresh_statistics(["leads", "lead_submissions"])
    if crm.dialect != "postgresql":
        return
    # Never analyzed (the fixture's TRUNCATE forgets statistics): analyzed before the call returned.
    with crm.engine.connect() as conn:
        counted = dict(conn.execute(text(
            "SELECT relname, reltuples >= 0 FROM pg_class WHERE relname IN ('leads', 'lead_submissions')")).all())
        analyzed = dict(conn.execute(text(
            "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE relname IN ('leads', 'lead_submissions')")).all())
    assert counted == {"leads": True, "lead_submissions": True}
    assert analyzed == {"leads": True, "lead_submissions": True}


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_refresh_statistics_skips_a_table_that_has_not_grown_by_a_quarter(crm):
    from sqlalchemy import event

    # ANALYZE statements as sent (pg_stat_user_tables' analyze_count is flushed up to a second late).
    sent: list[str] = []
    event.listen(crm.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: sent.append(statement) if statement.startswith("ANALYZE")
                 else None)

    def add_leads(start: int, n: int) -> int:
        rows = pd.DataFrame([lead_row(f"p{i}@x.com", "2025-05-01") for i in range(start, start + n)])
        with crm.begin() as conn:
            crm.upsert_leads(conn, rows, NOW)
        before = len(sent)
        crm.refresh_statistics(["leads"])
        crm.wait_for_statistics()  # a table analyzed before is analyzed in the background
        return len(sent) - before

    add_leads(0, 2000)
    assert add_leads(2000, 100) == 0  # 5% more: the statistics stand
    assert add_leads(2100, 1000) == 1  # 52% more: refreshed


def _stored_leads(crm, start: int, n: int) -> None:
    rows = pd.DataFrame([lead_row(f"s{i}@x.com", "2025-05-01") for i in range(start, start + n)])
    with crm.begin() as conn:
        crm.upsert_leads(conn, rows, NOW)


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_statistics_of_an_analyzed_table_are_refreshed_in_the_background_while_rows_are_written(crm):
    import threading

    from sqlalchemy import text

    _stored_leads(crm, 0, 1000)
    crm.refresh_statistics(["leads"])  # never analyzed: at once
    _stored_leads(crm, 1000, 1000)
    # Another session holds a lock ANALYZE waits for (its own kind): a synchronous refresh would hang here.
    with crm.engine.connect() as holder:
        holder.exec_driver_sql("LOCK TABLE leads IN SHARE UPDATE EXCLUSIVE MODE")
        caller = threading.Thread(target=crm.refresh_statistics, args=(["leads"],))
        caller.start()
        caller.join(timeout=20)
        returned = not caller.is_alive()
        deadline = time.monotonic() + 20
        with crm.engine.connect() as watch:
            waiting = False
            while not waiting and time.monotonic() < deadline:
                waiting = watch.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE starts_with(query, 'ANALYZE leads') "
                    "AND wait_event_type = 'Lock' AND datname = current_database()").scalar_one() >= 1
                # pg_stat_activity is read once per transaction: a poll before the ANALYZE reached its lock would
                # otherwise be the answer for the whole 20 s.
                watch.rollback()
                time.sleep(0.05)
        _stored_leads(crm, 2000, 10)  # ANALYZE's lock (waited for or held) lets rows be written
        holder.rollback()
    crm.wait_for_statistics()
    assert returned and waiting
    with crm.engine.connect() as conn:
        assert conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'leads'")).scalar_one() >= 2000


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_a_failed_background_analyze_is_logged_without_personal_data_and_the_next_refresh_analyzes(crm, caplog):
    from sqlalchemy import text

    _stored_leads(crm, 0, 1000)
    crm.refresh_statistics(["leads"])
    _stored_leads(crm, 1000, 1000)
    # A Store whose sessions give up on a lock after 0.2 s: its ANALYZE fails while another session holds one.
    impatient = Store(crm.url + ("&" if "?" in crm.url else "?") + "options=-c%20lock_timeout%3D200")
    try:
        with crm.engine.connect() as holder:
            holder.exec_driver_sql("LOCK TABLE leads IN SHARE UPDATE EXCLUSIVE MODE")
            with caplog.at_level("WARNING", logger="leadflow.crm.store"):
                impatient.refresh_statistics(["leads"])
                impatient.wait_for_statistics()
            holder.rollback()
        failures = [r.getMessage() for r in caplog.records if "Background ANALYZE" in r.getMessage()]
        assert len(failures) == 1 and "55P03" in failures[0] and "@x.com" not in failures[0]
        with crm.engine.connect() as conn:
            assert conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'leads'")).scalar_one() < 2000
        impatient.refresh_statistics(["leads"])  # still stale: tried again, now without a lock in the way
    finally:
        impatient.dispose()  # waits for the ANALYZE
    with crm.engine.connect() as conn:
        assert conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'leads'")).scalar_one() >= 2000


def _impatient(crm: Store) -> Store:
    """A Store on the same database whose sessions give up on a lock after 0.2 s."""
    return Store(crm.url + ("&" if "?" in crm.url else "?") + "options=-c%20lock_timeout%3D200")


def _reltuples(crm: Store) -> float:
    from sqlalchemy import text

    with crm.engine.connect() as conn:
        return conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'leads'")).scalar_one()


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_a_failed_background_analyze_is_retried_by_the_next_refresh_of_a_few_rows(crm):
    _stored_leads(crm, 0, 1000)
    store = _impatient(crm)
    try:
        store.refresh_statistics(["leads"], added=1000)  # never analyzed: at once, 1000 rows noted
        _stored_leads(crm, 1000, 1000)
        with crm.engine.connect() as holder:
            holder.exec_driver_sql("LOCK TABLE leads IN SHARE UPDATE EXCLUSIVE MODE")
            store.refresh_statistics(["leads"], added=1001)  # more than the table had: analyzed, and that fails
            store.wait_for_statistics()
            holder.rollback()
        assert _reltuples(crm) < 2000
        # 10 rows alone would not call for an ANALYZE; after the failed one the tables are looked at again.
        store.refresh_statistics(["leads"], added=10)
        store.wait_for_statistics()
        assert _reltuples(crm) >= 2000
    finally:
        store.dispose()


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_a_refresh_of_a_few_rows_does_not_wait_for_a_running_analyze(crm):
    import threading

    _stored_leads(crm, 0, 1000)
    crm._analyzed_rows, crm._added_since_analyze = None, 0  # the fixture's Store may have loaded before
    crm.refresh_statistics(["leads"], added=1000)  # never analyzed: at once, 1000 rows noted
    _stored_leads(crm, 1000, 1000)
    with crm.engine.connect() as holder:
        # The background ANALYZE the next refresh starts waits for this lock until it is released.
        holder.exec_driver_sql("LOCK TABLE leads IN SHARE UPDATE EXCLUSIVE MODE")
        crm.refresh_statistics(["leads"], added=1001)  # more than the table had: analyzed in the background
        running = crm._statistics_thread
        few = threading.Thread(target=crm.refresh_statistics, args=(["leads"],), kwargs={"added": 10})
        few.start()
        few.join(timeout=10)
        returned = not few.is_alive()
        still_running = running is not None and running.is_alive()
        holder.rollback()
    few.join()
    crm.wait_for_statistics()
    assert returned and still_running
    assert _reltuples(crm) >= 2000
    # The rows it skipped for still count towards the next decision.
    assert crm._added_since_analyze == 10 and crm._analyzed_rows >= 2000


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_analyze_keeps_statistics_of_the_planner_columns_only_and_still_counts_rows(crm):
    from sqlalchemy import text

    from leadflow.crm.store import PLANNER_COLUMNS, analyze_statement

    statement = analyze_statement(["leads", "lead_submissions", "accounts"])
    assert "accounts," in statement and "leads (id, email," in statement and "first_name" not in statement
    assert all(column in Lead.__table__.columns for column in PLANNER_COLUMNS["leads"])
    rows = pd.DataFrame([lead_row(f"c{i}@x.com", "2025-05-01", first_name=f"N{i % 7}", company="Acme",
                                  company_key="acme", company_domain="acme.com") for i in range(500)])
    with crm.begin() as conn:
        crm.upsert_leads(conn, rows, NOW)
    crm.refresh_statistics(["leads"])
    with crm.engine.connect() as conn:
        kept = set(conn.execute(text("SELECT attname FROM pg_stats WHERE tablename = 'leads'")).scalars())
        counted = conn.execute(text("SELECT reltuples, relpages FROM pg_class WHERE relname = 'leads'")).one()
    indexed = {c.name for index in Lead.__table__.indexes for c in index.columns}
    assert {"id", "email", "is_spam", "step_mark", *indexed} <= kept
    assert not kept & {"first_name", "company", "last_touch_utm_source", "score"}
    assert counted.reltuples == 500 and counted.relpages > 0


def test_leads_by_id_gives_the_types_sqlalchemy_would(crm):
    # Raw driver rows: SQLite hands back booleans as 0/1, JSON and times as text; a missing flag must stay None.
    rows = pd.DataFrame([lead_row("a@x.com", "2025-05-01 10:00:00.5", demo_requested=True),
                         lead_row("b@x.com", "2025-05-02", demo_requested=None),
                         lead_row("c@x.com", "2025-05-03", demo_requested=False)])
    with crm.begin() as conn:
        crm.upsert_leads(conn, rows, NOW)
        ids = submissions.lead_ids(conn, ["a@x.com", "b@x.com", "c@x.com"])
        crm.update_leads(conn, pd.DataFrame({"id": [ids["a@x.com"]], "enrichment_sources": [{"domain": "x.com"}]}))
        frame = crm.leads_by_id(conn, list(ids.values()), ["email", "demo_requested", "enrichment_sources",
                                                          "last_touch_at", "score"])
        empty = crm.leads_by_id(conn, [], ["email", "demo_requested"])
    by_email = frame.set_index("email").loc[["a@x.com", "b@x.com", "c@x.com"]]
    assert by_email["demo_requested"].tolist() == [True, None, False]
    assert by_email.loc["a@x.com", "enrichment_sources"] == {"domain": "x.com"}
    assert by_email["enrichment_sources"].iloc[1:].isna().all()
    assert by_email.loc["a@x.com", "last_touch_at"] == pd.Timestamp("2025-05-01 10:00:00.5", tz="UTC")
    assert str(frame["last_touch_at"].dtype).endswith("UTC]")
    assert frame["score"].isna().all()
    assert empty.columns.tolist() == ["id", "email", "demo_requested"] and empty.empty


def test_new_sqlite_databases_use_16k_pages_and_existing_ones_keep_theirs(tmp_path):
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE t (x)")
    new_store, old_store = Store(f"sqlite:///{tmp_path / 'new.db'}"), Store(f"sqlite:///{old}")
    try:
        new_store.upgrade()
        with new_store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA page_size").scalar_one() == 16384
        with old_store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA page_size").scalar_one() == 4096
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        new_store.dispose()
        old_store.dispose()


def test_a_background_thread_checkpoints_the_wal_after_commits(tmp_path):
    path = tmp_path / "crm.db"
    crm = Store(f"sqlite:///{path}")
    try:
        with crm.begin() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
            assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar_one() == 64 << 20
            conn.exec_driver_sql("CREATE TABLE scratch (x TEXT)")
        before = path.stat().st_size
        with crm.begin() as conn:
            conn.exec_driver_sql("INSERT INTO scratch VALUES (?)", [("x" * 1000,)] * 5000)
        # The commit itself copies nothing into the database file (no automatic checkpoint): the thread does.
        deadline = time.monotonic() + 20
        while path.stat().st_size < before + 4_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > before + 4_000_000
        assert crm.checkpointer.checkpoints >= 1
    finally:
        crm.dispose()
    assert not crm.checkpointer._thread.is_alive()


def test_in_memory_and_postgresql_stores_have_no_checkpoint_thread():
    assert Store("sqlite://").checkpointer is None
    assert Store("postgresql://nobody@127.0.0.1:1/none").checkpointer is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (pd.Series([pd.Timestamp("2025-06-01 12:00:00.5", tz="UTC"), pd.NaT, pd.Timestamp("2025-06-01 12:00:00.5",
                                                                                     tz="UTC")]),
         ["2025-06-01 12:00:00.500000", None, "2025-06-01 12:00:00.500000"]),
        (pd.Series([pd.Timestamp("2025-06-01 14:00", tz="Europe/Berlin")]), ["2025-06-01 12:00:00.000000"]),
        (pd.Series([pd.Timestamp("2025-01-02 03:04:05.000006")] * 3), ["2025-01-02 03:04:05.000006"] * 3),
        (pd.Series([pd.NaT, pd.NaT], dtype="datetime64[us, UTC]"), [None, None]),
        (pd.Series(["a", None], dtype="string"), ["a", None]),
        (pd.Series([1, None], dtype="Int64"), [1, None]),
    ],
    ids=["utc-with-nat", "berlin-to-utc", "one-stamp-for-all", "all-nat", "string", "nullable-int"],
)
def test_bind_values_on_sqlite_write_times_as_sqlalchemy_text_and_missing_as_none(values, expected):
    assert _bind_values(values, "sqlite") == expected


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_a_bulk_load_analyzes_first_and_then_only_once_the_tables_have_grown_by_their_size(crm):
    from sqlalchemy import event, text

    # ANALYZE statements as sent (pg_stat_user_tables' analyze_count is flushed up to a second late).
    sent: list[str] = []
    event.listen(crm.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: sent.append(statement) if statement.startswith("ANALYZE")
                 else None)
    with crm.begin() as conn:
        conn.execute(text("ANALYZE leads"))  # the empty table's statistics: what this test's growth is measured from
    # The fixture's Store may have loaded before: this test starts its count afresh.
    crm._analyzed_rows, crm._added_since_analyze = None, 0
    sent.clear()

    def load(start: int, n: int) -> int:
        rows = pd.DataFrame([lead_row(f"b{i}@x.com", "2025-05-01") for i in range(start, start + n)])
        with crm.begin() as conn:
            crm.upsert_leads(conn, rows, NOW)
        before = len(sent)
        crm.refresh_statistics(["leads"], added=n)
        crm.wait_for_statistics()
        return len(sent) - before

    # The first load (the table grew from empty); 300 more of its 400 rows (not more than it had: not even asked,
    # though the table grew by three quarters); 200 more (500 since, over 400, and the table is stale: analyzed).
    assert [load(0, 400), load(400, 300), load(700, 200)] == [1, 0, 1]
