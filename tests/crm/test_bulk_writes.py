"""The store's bulk path on both databases: executemany on SQLite, COPY into a staging table and one set-based
statement on PostgreSQL (forced here for every frame size), with the same rows, counts and refusals either way."""

from __future__ import annotations

import json
import pickle
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import bindparam, event, func, select, update

from leadflow.crm import store as store_module
from leadflow.crm.progress import mark_step
from leadflow.crm.schema import Lead, LeadEvent, QuarantineRecord
from leadflow.crm.store import DatabaseError, _staged_statement, execute_in, read_in, refused_value_code, utc
from leadflow.domain.progress import LeadStep

LEADS = Lead.__table__
EVENTS = LeadEvent.__table__
QUARANTINE = QuarantineRecord.__table__
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["copy", "copy-rows", "executemany"])
def crm_path(request, crm, monkeypatch):
    """The CRM with PostgreSQL's bulk path forced to COPY for every frame (its input built column-wise, or row by
    row by psycopg), or to executemany (SQLite: always)."""
    if request.param == "copy-rows" and crm.dialect == "sqlite":
        pytest.skip("SQLite has no COPY: the executemany case covers it")
    crm.copy_min_rows = 0 if request.param.startswith("copy") else 10**9
    if request.param == "copy-rows":
        monkeypatch.setattr(store_module, "_copy_text", lambda *_: None)
    return crm


def _leads(emails: list[str], at: datetime, **columns) -> pd.DataFrame:
    frame = pd.DataFrame({"email": emails, "first_touch_at": at, "last_touch_at": at, "first_touch_source": "web_form",
                          "last_touch_source": "web_form", "step_mark": int(LeadStep.CREATED), "step_marked_at": at})
    return frame.assign(**columns)


def _rows(crm, table, *columns) -> list[tuple]:
    with crm.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*(table.c[c] for c in columns)).order_by(table.c.id))]


def test_upsert_creates_in_order_and_merges_conflicts(crm_path):
    crm = crm_path
    first = _leads(["ann@example.com", "bo@example.com", "zoë@例え.jp"], NOW,
                   company=["Ünïcode GmbH", None, "株式会社"], page_views=pd.array([3, None, 7], dtype="Int64"))
    with crm.begin() as conn:
        crm.upsert_leads(conn, first, NOW)
    later = NOW + timedelta(days=1)
    again = _leads(["bo@example.com", "ann@example.com", "cy@example.com"], later,
                   company=["Bo Ltd", None, None], page_views=pd.array([None, 1, 2], dtype="Int64"))
    with crm.begin() as conn:
        crm.upsert_leads(conn, again, later)

    rows = _rows(crm, LEADS, "id", "email", "company", "page_views", "created_at", "updated_at", "last_touch_at")
    # Ids follow the frames' order; a newer touch fills a missing detail, keeps a known one; counters keep the max.
    assert [r[1] for r in rows] == ["ann@example.com", "bo@example.com", "zoë@例え.jp", "cy@example.com"]
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert [(r[2], r[3]) for r in rows] == [("Ünïcode GmbH", 3), ("Bo Ltd", None), ("株式会社", 7), (None, 2)]
    created = utc(pd.Series([r[4] for r in rows], dtype=object)).tolist()
    updated = utc(pd.Series([r[5] for r in rows], dtype=object)).tolist()
    assert created == [NOW, NOW, NOW, later] and updated == [later, later, NOW, later]


def test_a_key_twice_in_one_upsert_is_applied_in_order(crm_path):
    """Row by row the second row of a key updates the first; set-based PostgreSQL would refuse the frame, so it is
    written row by row there too."""
    crm = crm_path
    frame = _leads(["ann@example.com", "ann@example.com"], NOW, company=["First", "Second"])
    with crm.begin() as conn:
        crm.upsert_leads(conn, frame, NOW)
    assert [r[1] for r in _rows(crm, LEADS, "email", "company")] == ["Second"]


def test_insert_new_counts_only_new_keys_and_keeps_the_first_of_a_repeated_key(crm_path):
    crm = crm_path
    rows = pd.DataFrame({"idempotency_key": ["k1", "k2", "k2", "k3"], "batch_id": "b", "origin": "f.csv",
                         "row_number": [1, 2, 3, 4], "source": ["web_form", "first", "second", None],
                         "reason_codes": "missing_email", "raw_payload": ['{"a": "ü\\ttab"}', "{}", "{}", "null"],
                         "created_at": NOW, "flow_run_id": None})
    with crm.begin() as conn:
        assert crm.insert_new(conn, QUARANTINE, rows.iloc[:1]) == 1
    with crm.begin() as conn:
        assert crm.insert_new(conn, QUARANTINE, rows) == 2
    with crm.begin() as conn:
        assert crm.insert_new(conn, QUARANTINE, rows) == 0
        assert crm.insert_new(conn, QUARANTINE, rows.iloc[:0]) == 0
    stored = _rows(crm, QUARANTINE, "idempotency_key", "source", "row_number", "flow_run_id")
    assert stored == [("k1", "web_form", 1, None), ("k2", "first", 2, None), ("k3", None, 4, None)]


def test_update_from_staging_sets_values_nulls_and_times_and_counts_matches(crm_path):
    crm = crm_path
    with crm.begin() as conn:
        crm.upsert_leads(conn, _leads([f"p{i}@example.com" for i in range(4)], NOW, company="Old", page_views=1), NOW)
    ids = [r[0] for r in _rows(crm, LEADS, "id")]
    # A time in another zone, with microseconds: stored and read back as the same instant.
    zone = datetime(2025, 6, 1, 16, 30, 15, 123456, tzinfo=ZoneInfo("Europe/Berlin"))
    changes = pd.DataFrame({"id": [ids[0], ids[2], 10**12], "company": ["Ñew “quoted”\ttab\\slash", None, "nobody"],
                            "page_views": [5.0, float("nan"), 1.0], "scored_at": pd.Series([zone, None, None])})
    with crm.begin() as conn:
        crm.update_leads(conn, changes)
        stmt = update(LEADS).where(LEADS.c.id == bindparam("b_id")).values(tier=bindparam("b_tier"))
        assert crm.bulk(conn, stmt, pd.DataFrame({"b_id": [ids[1], ids[3], 10**12], "b_tier": ["A", "B", "C"]})) == 2
    rows = _rows(crm, LEADS, "company", "page_views", "scored_at", "tier")
    assert [r[:2] for r in rows] == [("Ñew “quoted”\ttab\\slash", 5), ("Old", 1), (None, None), ("Old", 1)]
    assert utc(pd.Series([rows[0][2]], dtype=object)).iloc[0] == pd.Timestamp(zone).tz_convert("UTC")
    assert rows[2][2] is None and [r[3] for r in rows] == [None, "A", None, "B"]


def test_events_with_json_details_and_an_empty_frame(crm_path):
    crm = crm_path
    with crm.begin() as conn:
        crm.upsert_leads(conn, _leads(["ann@example.com"], NOW), NOW)
    lead_id = _rows(crm, LEADS, "id")[0][0]
    events = pd.DataFrame({"lead_id": [lead_id, lead_id], "event_type": ["lead_created", "note"],
                           "occurred_at": [NOW, NOW + timedelta(seconds=1)], "batch_id": "b", "flow_run_id": None,
                           "details": [{"source": "web_form", "text": "é\n"}, '{"n": 1}']})
    with crm.begin() as conn:
        crm.insert_events(conn, events)
        crm.insert_events(conn, events.iloc[:0])
        assert crm.bulk(conn, update(LEADS).where(LEADS.c.id == bindparam("b_id")).values(tier="A"),
                        pd.DataFrame({"b_id": []})) == 0
    details = [d if isinstance(d, dict) else json.loads(d) for (d,) in _rows(crm, EVENTS, "details")]
    assert details == [{"source": "web_form", "text": "é\n"}, {"n": 1}]


def test_a_plain_insert_goes_straight_into_its_table_in_frame_order_and_keeps_its_refusals(crm_path):
    # PostgreSQL COPies such a frame into the table itself: no staging table, ids in frame order as before.
    crm = crm_path
    sent: list[str] = []

    def listen(conn, cursor, statement, *args):
        sent.append(statement)

    event.listen(crm.engine, "before_cursor_execute", listen)
    direct: list[str] = []
    copy_into = crm._copy_into
    crm._copy_into = lambda conn, table, *rest, **kw: (direct.append(table.name), copy_into(conn, table, *rest,
                                                                                           **kw))[1]
    with crm.begin() as conn:
        crm.upsert_leads(conn, _leads(["ann@example.com", "bo@example.com"], NOW), NOW)
    ids = [i for (i,) in _rows(crm, LEADS, "id")]
    kinds = ["c", "a", "b", "d"]
    events = pd.DataFrame({"lead_id": [ids[1], ids[0], ids[1], ids[0]], "event_type": kinds, "occurred_at": NOW,
                           "batch_id": "b", "flow_run_id": None, "details": [{"n": i} for i in range(4)]})
    before = len(sent)
    direct.clear()
    with crm.begin() as conn:
        crm.insert_events(conn, events)
    assert not any("TEMPORARY" in statement for statement in sent[before:])
    copied = crm.dialect == "postgresql" and crm.copy_min_rows == 0
    assert direct == (["lead_events"] if copied else [])
    assert _rows(crm, EVENTS, "event_type", "lead_id") == list(zip(kinds, events["lead_id"], strict=True))
    # A lead that does not exist: the foreign key refuses the whole frame, as row by row.
    with pytest.raises(DatabaseError) as refused, crm.begin() as conn:
        crm.insert_events(conn, events.assign(lead_id=[ids[0], 10**9, ids[0], ids[1]]))
    if crm.dialect == "postgresql":
        assert refused.value.orig.sqlstate == "23503"
    assert crm.table_counts()["lead_events"] == 4
    if copied:
        # Without its `details` the INSERT would fill the column's default: that frame is staged, not COPied as is
        # (executemany needs every bound column, defaults included, in the frame).
        direct.clear()
        with crm.begin() as conn:
            crm.bulk(conn, crm._values(EVENTS, [c for c in events.columns if c != "details"]),
                     events.drop(columns="details"))
        stored = [d if isinstance(d, dict) else json.loads(d) for (d,) in _rows(crm, EVENTS, "details")]
        assert stored[4:] == [{}] * 4 and "lead_events" not in direct
    event.remove(crm.engine, "before_cursor_execute", listen)


@pytest.mark.parametrize("value, codes", [
    ("x" * 70, {"postgresql": "22001"}),  # lead_events.event_type is varchar(64); SQLite keeps any length
    (None, {"postgresql": "23502", "sqlite": "SQLITE_CONSTRAINT_NOTNULL"}),
    ("bad\udcffsurrogate", {"postgresql": "unencodable", "sqlite": "unencodable"}),
])
def test_a_refused_value_is_still_refused_with_its_code_and_without_the_value(crm_path, value, codes):
    crm = crm_path
    with crm.begin() as conn:
        crm.upsert_leads(conn, _leads(["ann@example.com"], NOW), NOW)
    lead_id = _rows(crm, LEADS, "id")[0][0]
    # An object column: pandas' default string dtype cannot even hold a lone surrogate.
    events = pd.DataFrame({"lead_id": [lead_id] * 3, "event_type": pd.Series(["ok", value, "ok"], dtype=object),
                           "occurred_at": NOW,
                           "batch_id": "b", "flow_run_id": None, "details": '{"secret": "jane@example.com"}'})
    expected = codes.get(crm.dialect)
    if expected is None:
        with crm.begin() as conn:
            crm.insert_events(conn, events)
        return
    with pytest.raises((DatabaseError, UnicodeEncodeError)) as caught, crm.begin() as conn:
        crm.insert_events(conn, events)
    assert refused_value_code(caught.value) == expected
    shown = repr(caught.value) + str(caught.value) + repr(pickle.loads(pickle.dumps(caught.value)))
    assert "jane@example.com" not in shown and "x" * 70 not in shown
    assert crm.table_counts()["lead_events"] == 0  # the whole statement is undone, as the chunk split expects


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_statements_that_cannot_run_set_based_stay_row_by_row(crm):
    by_id = update(LEADS).where(LEADS.c.id == bindparam("b_id")).values(tier=bindparam("b_tier"))
    assert _staged_statement(crm, by_id, pd.DataFrame({"b_id": [1, 2], "b_tier": ["A", "B"]})) is not None
    # A key twice: set-based would apply only one of them.
    assert _staged_statement(crm, by_id, pd.DataFrame({"b_id": [1, 1], "b_tier": ["A", "B"]})) is None
    # No key to join the staging table on.
    by_tier = update(LEADS).where(LEADS.c.tier == "A").values(tier=bindparam("b_tier"))
    assert _staged_statement(crm, by_tier, pd.DataFrame({"b_tier": ["B"]})) is None
    # An untyped parameter whose values are all missing: nothing says what its staging column is.
    untyped = update(LEADS).where(LEADS.c.id == bindparam("b_id")).values(
        owner_id=func.coalesce(LEADS.c.owner_id, bindparam("b_add")))
    assert _staged_statement(crm, untyped, pd.DataFrame({"b_id": [1], "b_add": pd.Series([None], dtype=object)})) \
        is None


def test_many_keys_read_and_marked_in_parts(crm_path, monkeypatch):
    crm = crm_path
    monkeypatch.setattr(store_module, "ANY_ARRAY_SIZE", 3)
    monkeypatch.setattr(store_module, "IN_LIST_SIZE", 3)
    emails = [f"p{i}@example.com" for i in range(8)]
    with crm.begin() as conn:
        crm.upsert_leads(conn, _leads(emails, NOW), NOW)
        stmt = select(LEADS.c.email, LEADS.c.id).where(LEADS.c.email.in_(bindparam("values", expanding=True)),
                                                      LEADS.c.step_mark.in_([0, 1]))
        found = dict(read_in(conn, stmt, [*emails[1:], "nobody@example.com"], raw=True))
        assert sorted(found) == emails[1:]
        assert mark_step(conn, [*found.values(), 10**12], LeadStep.SPAM_CHECKED, NOW) == 7
        assert mark_step(conn, found.values(), LeadStep.SPAM_CHECKED, NOW) == 0
    assert sorted(r[1] for r in _rows(crm, LEADS, "email", "step_mark")) == [0] + [int(LeadStep.SPAM_CHECKED)] * 7


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_copy_text_built_column_wise_stores_what_row_by_row_copy_stores(crm, monkeypatch):
    """Escapes, NULL against empty text and a literal backslash-N, unicode, whole floats into integer columns
    (half to even), floats, nullable booleans and integers, times in another zone, JSON as dicts and as text, and
    a JSON column of text alone: every stored value is the same as psycopg's own row-by-row COPY stores."""
    crm.copy_min_rows = 0
    berlin = datetime(2025, 6, 1, 16, 30, 15, 123456, tzinfo=ZoneInfo("Europe/Berlin"))
    emails = ["a\\b@example.com", "tab\there@example.com", "line\nbreak\r@example.com", "\\N", "", "zoë@例え.jp"]
    frame = _leads(emails, NOW).assign(
        company=pd.Series(["x", None, "", "\\N", "q\\\\", "株式会社"], dtype="string"),
        job_title=pd.Series(["é", None, "b\tc", "", "d", "e"], dtype=object),
        page_views=[0.5, 1.5, 2.5, float("nan"), 3.0, -2.5],
        content_downloads=pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
        demo_requested=pd.array([True, None, False, True, False, None], dtype="boolean"),
        fit_score=[0.1, 1e20, 1 / 3, float("nan"), -0.0, 2.5e-8],
        # One zone for the column (a mix of zones is an object column, which goes row by row).
        scored_at=pd.to_datetime(pd.Series([berlin, None, NOW, NOW, None, berlin]), utc=True).dt.tz_convert(
            "Europe/Berlin"),
        enrichment_sources=[{"a": "b\tc\\"}, None, '{"n": 1}', {}, [1, "x"], None],
        # JSON text only (as raw payloads are): sent as it is, escaped, without a look at each value.
        checklist=pd.Series(['{"a": "b\\tc"}', None, '{"x": "\\\\N"}', "[]", '{"é": "例"}', "{}"], dtype="string"),
    )
    stored = {}
    for path in ("rows", "column-wise"):
        if path == "rows":
            monkeypatch.setattr(store_module, "_copy_text", lambda *_: None)
        else:
            monkeypatch.undo()
            assert store_module._copy_text(frame, *_staging_of(crm, frame)) is not None
        with crm.begin() as conn:
            crm.upsert_leads(conn, frame, NOW)
        columns = [c for c in frame.columns if c != "step_marked_at"]
        stored[path] = _rows(crm, LEADS, *columns)
        with crm.begin() as conn:
            conn.execute(LEADS.delete())
    assert stored["column-wise"] == stored["rows"]
    assert [r[0] for r in stored["rows"]] == emails
    # A NUL in text is refused by psycopg before it is sent: such a frame keeps the row-by-row path and its error.
    with_nul = frame.assign(company=pd.Series(["x", None, "a\x00b", "", "d", "e"], dtype="string"))
    assert store_module._copy_text(with_nul, *_staging_of(crm, with_nul)) is None


def _staging_of(crm, frame: pd.DataFrame):
    """The staging table and column names upsert_leads' COPY would use for this frame."""
    columns = [c.name for c in LEADS.columns if c.name in frame.columns]
    stmt = crm._values(LEADS, columns)
    staging, _ = _staged_statement(crm, stmt, frame)
    return staging, [c.name for c in staging.columns if c.name != store_module.STAGING_ROW]



@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_payload_columns_carry_no_planner_statistics(crm):
    """ANALYZE after a bulk load skips the payloads and explanations (migration 0028) and still analyzes the rest."""
    import importlib.util

    path = store_module.MIGRATIONS / "versions" / "0028_pg_intake.py"
    spec = importlib.util.spec_from_file_location("migration_0028", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    with crm.begin() as conn:
        crm.upsert_leads(conn, _leads(["ann@example.com", "bo@example.com"], NOW,
                                      score_explanation=["because", None]), NOW)
    crm.refresh_statistics(["leads", "lead_submissions", "lead_events"])
    with crm.engine.connect() as conn:
        targets = dict(conn.exec_driver_sql(
            "SELECT attrelid::regclass::text || '.' || attname, attstattarget FROM pg_attribute "
            "WHERE attrelid IN ('leads'::regclass, 'lead_submissions'::regclass, 'lead_events'::regclass) "
            "AND attnum > 0 AND NOT attisdropped").all())
        analyzed = {f"{t}.{c}" for t, c in conn.exec_driver_sql(
            "SELECT tablename, attname FROM pg_stats WHERE tablename = 'leads'").all()}
    skipped = {f"{table}.{column}" for table, column in migration.UNANALYZED}
    assert {name: targets[name] for name in skipped} == dict.fromkeys(skipped, 0)
    assert all(target == -1 for name, target in targets.items() if name not in skipped)
    assert "leads.email" in analyzed and "leads.score_explanation" not in analyzed


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_a_connection_in_another_encoding_gets_its_text_converted_not_raw_utf8(crm):
    """The column-wise COPY text is UTF-8 bytes: a connection set to LATIN1 (PGCLIENTENCODING, a server default)
    must take the row-by-row path, which encodes for it, so "José" is stored as José, not JosÃ©."""
    from sqlalchemy import event

    crm.copy_min_rows = 0

    @event.listens_for(crm.engine, "connect")
    def latin1(dbapi_connection, _record) -> None:
        dbapi_connection.execute("SET client_encoding TO 'LATIN1'")

    crm.engine.dispose()
    try:
        with crm.begin() as conn:
            assert conn.connection.driver_connection.info.encoding == "iso8859-1"
            crm.upsert_leads(conn, _leads(["jose@example.com"], NOW, first_name="José", company="Müller"), NOW)
    finally:
        event.remove(crm.engine, "connect", latin1)
        crm.engine.dispose()
    assert _rows(crm, LEADS, "first_name", "company") == [("José", "Müller")]


def _spy_direct_copies(crm, monkeypatch) -> list[str]:
    """The tables COPied into straight (not staging tables) from now on, one entry per attempt."""
    direct: list[str] = []
    copy_into = crm._copy_into

    def spy(conn, table, names, frame, numbered=False):
        if not numbered:
            direct.append(table.name)
        return copy_into(conn, table, names, frame, numbered=numbered)

    monkeypatch.setattr(crm, "_copy_into", spy)
    return direct


def _quarantined(keys: list[str], source: str) -> pd.DataFrame:
    return pd.DataFrame({"idempotency_key": keys, "batch_id": "b", "origin": "f.csv", "row_number": range(len(keys)),
                         "source": source, "reason_codes": "missing_email", "raw_payload": '{"a": 1}',
                         "created_at": NOW, "flow_run_id": None})


def _commit_once_waited_on(crm, transaction) -> tuple[threading.Thread, list[bool]]:
    """A thread that commits another connection's transaction once a backend of this database waits on a lock
    (ours, on the key that transaction inserted), or after 10 s; whether it saw the wait."""
    seen: list[bool] = []

    def run() -> None:
        with crm.engine.connect() as watcher:
            for _ in range(200):
                waiting = watcher.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'").scalar()
                watcher.rollback()  # a new snapshot of pg_stat_activity each time
                if waiting:
                    seen.append(True)
                    break
                time.sleep(0.05)
        transaction.commit()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, seen


def test_fresh_rows_go_straight_in_and_a_key_stored_since_falls_back_to_on_conflict(crm, monkeypatch):
    """Rows whose keys were absent when looked up are COPied straight into their table on PostgreSQL. A key stored
    since that look (here one the caller never looked up) fails the COPY in its savepoint; the rows then go through
    ON CONFLICT DO NOTHING in the same transaction, and only the rows added are counted, as on SQLite."""
    monkeypatch.setattr(crm, "copy_min_rows", 0)
    direct = _spy_direct_copies(crm, monkeypatch)
    copied = crm.dialect == "postgresql"
    with crm.begin() as conn:
        assert crm.insert_new(conn, QUARANTINE, _quarantined(["k1", "k2"], "first"), fresh=True) == 2
    assert direct == (["quarantine"] if copied else [])
    direct.clear()
    with crm.begin() as conn:
        assert crm.insert_new(conn, QUARANTINE, _quarantined(["k3", "k2", "k4"], "second"), fresh=True) == 2
        # The transaction goes on after the savepoint was rolled back: a key twice in one frame falls back too.
        assert crm.insert_new(conn, QUARANTINE, _quarantined(["k5", "k5"], "third"), fresh=True) == 1
    assert direct == (["quarantine"] * 2 if copied else [])
    assert _rows(crm, QUARANTINE, "idempotency_key", "source", "row_number") == [
        ("k1", "first", 0), ("k2", "first", 1), ("k3", "second", 0), ("k4", "second", 2), ("k5", "third", 0)]
    # Any other refusal is not a fallback: it fails the transaction as before (the rows written before it in the
    # transaction are gone too), with its code. A NULL where none may be is refused by both databases; a value
    # longer than its column by PostgreSQL only (SQLite keeps any length, so that case has nothing to refuse there).
    refusals = [(_quarantined(["k7"], "ok").assign(batch_id=None),
                 "23502" if copied else "SQLITE_CONSTRAINT_NOTNULL")]
    if copied:
        refusals.append((_quarantined(["k7"], "x" * 70), "22001"))
    for refused_rows, code in refusals:
        with pytest.raises(DatabaseError) as refused, crm.begin() as conn:
            assert crm.insert_new(conn, QUARANTINE, _quarantined(["k6"], "ok"), fresh=True) == 1
            crm.insert_new(conn, QUARANTINE, refused_rows, fresh=True)
        assert refused_value_code(refused.value) == code
        assert crm.table_counts()["quarantine"] == 5


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_a_key_another_transaction_stores_during_the_direct_copy_stays_theirs(crm, monkeypatch):
    """The real race: another transaction inserted a key and has not committed. Our direct COPY waits for it on the
    unique index and fails once it commits; the fallback then skips that key and counts only our rows."""
    monkeypatch.setattr(crm, "copy_min_rows", 0)
    direct = _spy_direct_copies(crm, monkeypatch)
    with crm.engine.connect() as other:
        transaction = other.begin()
        crm.insert_new(other, QUARANTINE, _quarantined(["k2"], "theirs"))
        thread, waited = _commit_once_waited_on(crm, transaction)
        with crm.begin() as conn:
            added = crm.insert_new(conn, QUARANTINE, _quarantined(["k1", "k2", "k3"], "ours"), fresh=True)
        thread.join()
    assert waited == [True] and direct == ["quarantine"]
    assert added == 2
    assert _rows(crm, QUARANTINE, "idempotency_key", "source") == [("k2", "theirs"), ("k1", "ours"), ("k3", "ours")]


def test_keys_of_any_text_are_found_whole(crm):
    """On PostgreSQL the keys go as an array's text built by the store: quotes, backslashes, commas, braces, spaces,
    an empty key, the word NULL and unicode are each found as themselves, as in SQLite's IN-lists, and a key
    longer than the column is compared whole (not cut to the column's length, which found a stored prefix)."""
    odd = ['a"b@x.com', "c\\d@x.com", "e,f@x.com", "{g}@x.com", " h @x.com", "", "NULL", "zoë@例え.jp", "x" * 320]
    by_email = select(LEADS.c.email, LEADS.c.id).where(LEADS.c.email.in_(bindparam("values", expanding=True)))
    with crm.begin() as conn:
        crm.upsert_leads(conn, _leads(odd, NOW), NOW)
        found = dict(read_in(conn, by_email, [*odd, "nobody@x.com", "x" * 321], raw=True))
        assert sorted(found) == sorted(odd)
        assert read_in(conn, by_email, ["x" * 321, "null", '"'], raw=True) == []
        # Keys without a quote or backslash among them go unescaped (the array text's other branch): commas, braces,
        # spaces, an empty key, NULL and unicode are still each found as themselves.
        plain = [k for k in odd if '"' not in k and "\\" not in k]
        assert dict(read_in(conn, by_email, [*plain, "nobody@x.com", "x" * 321], raw=True)) == {
            k: found[k] for k in plain}
        assert read_in(conn, by_email, ["x" * 321, "null", "e", "f@x.com", "{g}", " h"], raw=True) == []
        by_id = select(LEADS.c.id).where(LEADS.c.id.in_(bindparam("values", expanding=True)))
        assert sorted(r[0] for r in read_in(conn, by_id, [*found.values(), 10**12], raw=True)) == sorted(found.values())
        tier = update(LEADS).where(LEADS.c.email.in_(bindparam("values", expanding=True))).values(tier="A")
        assert execute_in(conn, tier, [*odd[:3], "nobody@x.com"]) == 3
        if crm.dialect == "postgresql":
            # The array is a constant when planned (an index scan for a few keys, a hash for many): the text cast to
            # the array at run time instead was searched key by key for every row, minutes for 50,000 keys.
            stmt, parts = store_module._bound_parts(conn, by_email, odd, "values")
            sql = str(stmt.compile(dialect=crm.engine.dialect))
            plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + sql, {"values": parts[0]}).scalars())
            assert "= ANY ('{" in plan, plan
