"""Intake's repository on SQLite and PostgreSQL: quarantine, batches, submissions, touches, messages, reference data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import select

from leadflow.crm import reference, submissions
from leadflow.crm.schema import IntakeBatch

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def lead_row(email: str, at: str, source: str = "web_form") -> dict:
    ts = pd.Timestamp(at, tz="UTC")
    return {"email": email, "first_touch_at": ts, "last_touch_at": ts, "first_touch_source": source,
            "last_touch_source": source}


def test_quarantine_insert_is_idempotent(crm):
    rows = pd.DataFrame([{"idempotency_key": "k1", "batch_id": "b", "origin": "f.csv", "row_number": 3,
                          "source": None, "reason_codes": "missing_email", "raw_payload": '{"email": null}',
                          "created_at": NOW, "flow_run_id": None}])
    with crm.begin() as conn:
        assert submissions.insert_quarantine(crm, conn, rows) == 1
    with crm.begin() as conn:
        assert submissions.insert_quarantine(crm, conn, rows) == 0
    assert crm.table_counts()["quarantine"] == 1


def test_a_batch_is_recorded_running_then_finished_with_its_summary(crm):
    submissions.start_batch(crm, "b1", "x" * 1200, "event", None, NOW)
    submissions.finish_batch(crm, "b1", "completed", {"rows_read": 3}, NOW + timedelta(seconds=5))
    with crm.engine.connect() as conn:
        row = conn.execute(select(IntakeBatch)).one()
    assert (row.status, row.summary, len(row.origin), row.source_name) == ("completed", {"rows_read": 3}, 1000,
                                                                           "event")


def test_leads_created_at_tells_this_upsert_s_leads_from_those_created_a_microsecond_apart(crm):
    # PostgreSQL compares the times on the server, SQLite here: the same answer for any zone the time comes in.
    later = NOW + timedelta(microseconds=1)
    with crm.begin() as conn:
        crm.upsert_leads(conn, pd.DataFrame([lead_row("a@x.com", "2025-05-01")]), NOW)
        crm.upsert_leads(conn, pd.DataFrame([lead_row("b@x.com", "2025-05-02")]), later)
        emails = ["a@x.com", "b@x.com", "c@x.com"]
        answers = [submissions.leads_created_at(conn, emails, at) for at in
                   (NOW, NOW.astimezone(ZoneInfo("Europe/Berlin")), NOW.replace(tzinfo=None), later)]
        nothing = submissions.leads_created_at(conn, ["c@x.com"], NOW)
    assert [set(ids) for ids, _ in answers] == [{"a@x.com", "b@x.com"}] * 4
    assert [created for _, created in answers] == [{"a@x.com"}] * 3 + [{"b@x.com"}]
    assert nothing == ({}, set())


def test_submissions_touches_and_messages_read_back_by_lead(crm):
    with crm.begin() as conn:
        crm.upsert_leads(conn, pd.DataFrame([lead_row("a@x.com", "2025-05-01"), lead_row("b@x.com", "2025-05-02")]),
                         NOW)
        ids, created = submissions.leads_created_at(conn, ["a@x.com", "b@x.com", "c@x.com"], NOW)
        assert set(ids) == created == {"a@x.com", "b@x.com"}
        assert submissions.lead_ids(conn, ["a@x.com", "c@x.com"]) == {"a@x.com": ids["a@x.com"]}
        subs = pd.DataFrame({
            "idempotency_key": ["k1", "k2", "k3"], "lead_id": [ids["a@x.com"], ids["a@x.com"], ids["b@x.com"]],
            "source": "web_form", "external_id": None, "utm_source": None, "utm_medium": None, "utm_campaign": None,
            "submitted_at": pd.to_datetime(["2025-05-03", "2025-05-01", "2025-05-02"], utc=True),
            "message": ["second", "first", None], "_payload": "{}",
        })
        submissions.insert_submissions(crm, conn, subs, "b1", NOW)
        submissions.insert_submissions(crm, conn, subs, "b2", NOW)
        assert submissions.known_submission_keys(crm, conn, ["k1", "k9"]) == {"k1"}
        messages = submissions.lead_messages(conn, list(ids.values()))
        touches = submissions.lead_touches(conn, ["a@x.com"])
    assert crm.table_counts()["lead_submissions"] == 3
    assert messages.to_dict() == {ids["a@x.com"]: "first\nsecond"}
    assert touches.loc[0, "first_touch_at"] == pd.Timestamp("2025-05-01", tz="UTC")


def test_moved_touches_keep_a_newer_stored_touch(crm):
    with crm.begin() as conn:
        crm.upsert_leads(conn, pd.DataFrame([lead_row("a@x.com", "2025-05-10")]), NOW)
        lead_id = submissions.lead_ids(conn, ["a@x.com"])["a@x.com"]
        changes = pd.DataFrame({
            "id": [lead_id, lead_id], "first_touch_changed": [True, False], "last_touch_changed": [False, True],
            **{f"{w}_touch_{f}": [None, None] for w in ("first", "last")
               for f in ("source", "utm_source", "utm_medium", "utm_campaign")},
            "first_touch_at": pd.to_datetime(["2025-05-01", None], utc=True),
            # Older than the stored last touch: the guard keeps the stored one.
            "last_touch_at": pd.to_datetime([None, "2025-05-05"], utc=True),
        })
        changes.loc[0, "first_touch_source"] = "event"
        changes.loc[1, "last_touch_source"] = "webinar"
        submissions.move_touches(crm, conn, changes, NOW)
        touches = submissions.lead_touches(conn, ["a@x.com"]).iloc[0]
    assert (touches["first_touch_source"], touches["first_touch_at"]) == ("event", pd.Timestamp("2025-05-01", tz="UTC"))
    assert (touches["last_touch_source"], touches["last_touch_at"]) == ("web_form",
                                                                        pd.Timestamp("2025-05-10", tz="UTC"))


def test_reference_firmographics_are_replaced_by_domain(crm):
    frame = pd.DataFrame({"domain": ["acme.com", "beta.io"], "legal_name": ["Acme", "Beta"],
                          "industry": ["Software", None], "employee_count": pd.array([120, None], dtype="Int64"),
                          "country": ["US", "DE"], "revenue_band": [None, None]})
    columns = [c.name for c in reference.FIRMOGRAPHICS.columns if c.name != "updated_at"]
    frame = frame.reindex(columns=columns)
    assert reference.upsert_firmographics(crm, frame, NOW) == 2
    assert reference.upsert_firmographics(crm, frame.assign(legal_name=["Acme Inc", "Beta"]), NOW) == 2
    found = reference.firmographics_for(crm, ["acme.com", "none.org"])
    assert found["domain"].tolist() == ["acme.com"] and found["legal_name"].tolist() == ["Acme Inc"]
    assert crm.table_counts()["firmographics"] == 2
