"""Ops controls as pure tables: rep fields, quarantine retry and export shaping, daily health, per-CRM folders."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from leadflow.config.settings import Settings, crm_name_of
from leadflow.crm import reference
from leadflow.domain import health, messages
from leadflow.domain import quarantine as q
from leadflow.domain.reps import RepError, check_capacity, rep_input, rep_label, reps_from_frame

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


# --- per-CRM output folders ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "name"), [
    ("sqlite:///leadflow.db", "leadflow"),
    ("sqlite:////srv/crm/acme-prod.db", "acme-prod"),
    ("sqlite:///my crm.db", "my_crm"),
    ("postgresql://u:secret@db:5432/sales_eu?sslmode=require", "sales_eu"),
    ("postgresql+psycopg://u@db/crm", "crm"),
    ("sqlite://", "memory"),
])
def test_the_crm_folder_is_named_after_the_database(url, name):
    assert crm_name_of(url) == name
    settings = Settings(database_url=url)
    assert settings.report_dir == Path("leadflow-output") / name / "reports"
    assert settings.outbox_dir == Path("leadflow-output") / name / "outbox"
    assert settings.backfill_dir == Path("leadflow-output") / name / "backfill"


def test_two_databases_never_share_a_folder_and_explicit_settings_win():
    a, b = Settings(database_url="sqlite:///a/real.db"), Settings(database_url="sqlite:///a/reel.db")
    assert {a.report_dir, a.outbox_dir}.isdisjoint({b.report_dir, b.outbox_dir})
    named = Settings(database_url="sqlite:///x.db", crm_name="../../etc", output_dir=Path("/out"))
    assert named.crm_dir() == Path("/out/etc")  # a name is one folder, never a path out of output_dir
    fixed = Settings(database_url="sqlite:///x.db", report_dir=Path("/r"), outbox_dir=Path("/o"))
    assert (fixed.report_dir, fixed.outbox_dir, fixed.backfill_dir) == (Path("/r"), Path("/o"),
                                                                         Path("leadflow-output/x/backfill"))


# --- reps ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"email": "not-an-address", "name": "A"}, "not a valid email address"),
    ({"email": "a@x.com", "name": "  "}, "a rep needs a name"),
    ({"email": "a@x.com", "name": "A", "capacity": "-1"}, "capacity must be a whole number"),
    ({"email": "a@x.com", "name": "A", "capacity": "ten"}, "capacity must be a whole number"),
    ({"email": "a@x.com", "name": "A", "capacity": "100001"}, "capacity must be a whole number"),
    ({"email": "a@x.com", "name": "A", "territories": "US,Atlantis"}, "unknown country 'ATLANTIS'"),
    ({"email": "a@x.com", "name": "A", "segments": "Big Ones"}, "segments are slugs"),
    ({"email": "a@x.com", "name": "A", "alert_url": "hooks.slack.com/x"}, "alert_url must be an Apprise URL"),
    ({"email": "a@x.com", "name": "A", "out_of_office": "maybe"}, "out_of_office must be true or false"),
])
def test_bad_rep_fields_are_refused_with_one_clear_line(kwargs, message):
    args = {k: v for k, v in kwargs.items() if k not in ("email", "name")}
    with pytest.raises(RepError, match=message) as caught:
        rep_input(kwargs["email"], kwargs["name"], **args)
    assert "\n" not in str(caught.value) and "not-an-address" not in str(caught.value)


def test_rep_fields_are_normalized():
    rep = rep_input(" Ava.Moreno@Leadflow.Example ", " Ava Moreno ", territories="us|Germany,US",
                    segments="SMB,mid_market", capacity="70", out_of_office="yes")
    assert rep.row() == {"email": "ava.moreno@leadflow.example", "name": "Ava Moreno", "territories": ["US", "DE"],
                         "segments": ["smb", "mid_market"], "max_open_leads": 70, "active": True,
                         "out_of_office": True, "alert_url": None}
    assert check_capacity(0) == 0


def test_a_reps_file_is_all_or_nothing_and_names_the_line():
    frame = pd.DataFrame({"email": ["a@x.com", "b@x.com", "a@x.com"], "name": ["A", "B", "A2"],
                          "max_open_leads": ["5", "", "7"]}, dtype="string")
    with pytest.raises(RepError, match="line 4: the same rep appears twice"):
        reps_from_frame(frame)
    assert [r.max_open_leads for r in reps_from_frame(frame.iloc[:2])] == [5, 50]
    with pytest.raises(RepError, match="line 3: capacity"):
        reps_from_frame(pd.DataFrame({"email": ["a@x.com", "b@x.com"], "name": ["A", "B"],
                                      "capacity": ["1", "x"]}, dtype="string"))
    with pytest.raises(RepError, match="lacks the column"):
        reps_from_frame(pd.DataFrame({"mail": ["a@x.com"]}))


def test_demo_reps_are_valid_in_office_and_can_take_every_demo_lead():
    reps = reps_from_frame(pd.read_csv(reference.DATA_DIR / "sales_reps.csv", dtype="string", keep_default_na=False))
    assert all(r.active and not r.out_of_office for r in reps)
    demo_rows = sum(len(pd.read_csv(p, dtype="string", sep=None, engine="python"))
                    for p in (reference.SAMPLE_LEADS, reference.SAMPLE_CRM_EXPORT))
    # Spare room after the demo: even if every demo row became a lead of one region's reps, none would be full.
    assert sum(r.max_open_leads for r in reps) > demo_rows
    assert min(r.max_open_leads for r in reps) >= 100


def test_rep_labels_name_reps():
    assert rep_label({3: "Mia Patel"}, 3) == "Mia Patel"
    assert rep_label({3: "Mia Patel"}, 4) == "rep 4"
    assert rep_label({}, "none") == "none"


# --- notices name reps and mask leads -----------------------------------------------------------------------------


def test_sla_notice_names_the_owner_and_masks_the_lead():
    overdue = pd.DataFrame({"id": [5, 6], "lead_id": [9, 10], "kind": ["qualification", "discovery_call"],
                            "owner_id": [3, None], "due_at": [pd.Timestamp("2026-11-24 08:00", tz="UTC")] * 2,
                            "lead_email": ["jane.doe@acme.com", None], "owner_name": ["Mia Patel", None]})
    body = messages.sla_risk_notice(overdue, False, "sales@x.io", NOW)["body"].iloc[0]
    assert "lead #9 j***@a***.com (Mia Patel)" in body and "lead #10 (unassigned)" in body
    assert "jane.doe" not in body and "rep #" not in body


def test_unassigned_notice_lists_leads_masked():
    queued = pd.DataFrame({"lead_id": [2, 1], "priority": ["P1", None], "fallback_reason": ["no_eligible_rep"] * 2,
                           "email": ["kim@globex.io", "ann.lee@initech.com"]})
    body = messages.unassigned_notice(queued, "q", ["P1"], True, "s@x.io", NOW)["body"].iloc[0]
    assert "lead #1 a***@i***.com</li><li>lead #2 k***@g***.io (P1)" in body
    assert "kim@" not in body and "ann.lee" not in body


# --- quarantine ----------------------------------------------------------------------------------------------------


def test_retry_lines_keep_each_exports_field_order():
    payloads = [{"Email": "a", "Company": "c"}, {"Email": "b", "Date": "d", "Company": "c"},
                {"Date": "d", "Company": "c"}]
    lines = q.retry_lines(payloads)
    assert [list(line) for line in lines] == [["Email", "Date", "Company"]] * 3
    assert lines[0] == {"Email": "a", "Date": None, "Company": "c"}
    assert q.field_order([{"c": 1}, {"b": 1, "c": 1}, {"a": 1, "b": 1}]) == ["a", "b", "c"]
    # A later payload can order fields placed before it: b before a, though a was seen first.
    assert q.field_order([{"a": 1, "c": 1}, {"b": 1, "c": 1}, {"b": 1, "a": 1}]) == ["b", "a", "c"]
    assert q.field_order([{"a": 1, "b": 1}, {"b": 1, "a": 1}]) == ["a", "b"]  # conflicting exports: no loop


@pytest.mark.parametrize(("codes", "ok"), [
    ("invalid_email", True), ("missing_source,missing_submitted_at", True), ("erased_person", False),
    ("malformed_row", False), ("invalid_email,malformed_row", False), ("field_too_long:message", True),
])
def test_retryable_records(codes, ok):
    assert q.retryable(pd.Series([codes])).iloc[0] == ok


def test_retry_outcomes_table():
    # Rows 1..4 are records 10..13: stored submission, quarantined anew, quarantined anew though its key is stored
    # (a new record wins), nothing (quarantined again for the same reasons: its own record).
    outcomes = q.retry_outcomes([10, 11, 12, 13], ["k1", "k2", "k3", "k4"], {"k1", "k3"}, {2, 3})
    assert outcomes == {10: "recovered", 11: "superseded", 12: "superseded"}


def test_export_table_is_spreadsheet_safe_and_drops_erased_hashes():
    records = pd.DataFrame({
        "id": [1, 2], "created_at": pd.to_datetime(["2026-11-24 09:00", "2026-11-24 09:05"], utc=True),
        "batch_id": ["b", "b"], "origin": ["f.csv", "f.csv"], "row_number": [3, 4], "source": ["web_form", None],
        "reason_codes": ["invalid_email", "erased_person"], "retry_outcome": [None, None],
        "raw_payload": [{"email": "=HYPERLINK(\"x\")", "source": "web form", "page_views": "-3"},
                        {"erased_email_hash": "abc123"}],
    })
    table = q.export_table(records)
    assert list(table.columns[:8]) == [f"quarantine_{c}" for c in q.EXPORT_META]
    assert "erased_email_hash" not in table.columns
    assert table.loc[0, "email"].startswith("'=") and table.loc[0, "source"] == "web form"
    assert table.loc[0, "quarantine_created_at"] == "2026-11-24T09:00:00Z"


# --- daily health --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("now", "zone", "day", "hours"), [
    (datetime(2026, 11, 24, 1, 30, tzinfo=UTC), "UTC", "2026-11-23", 24),
    (datetime(2026, 11, 24, 1, 30, tzinfo=UTC), "America/New_York", "2026-11-22", 24),  # still the 23rd there
    (datetime(2026, 3, 30, 3, 0, tzinfo=UTC), "Europe/Berlin", "2026-03-29", 23),  # the spring-forward day
    (datetime(2026, 10, 26, 3, 0, tzinfo=UTC), "Europe/Berlin", "2026-10-25", 25),
])
def test_yesterday_is_a_local_day(now, zone, day, hours):
    label, start, end = health.day_window(now, zone)
    assert label == day and (end - start).total_seconds() == hours * 3600 and start.tzinfo is not None


@pytest.mark.parametrize(("values", "expected"), [
    ([], (None, None)), ([30], (30.0, 30.0)), ([10, 20, 30, 40, 1000], (30.0, 616.0)),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], (5.5, 9.1)),
])
def test_median_and_p90(values, expected):
    assert health.median_p90(pd.Series(values, dtype="float64")) == expected


@pytest.mark.parametrize(("seconds", "text"), [(None, "–"), (42.4, "42s"), (252, "4m 12s"), (11_100, "3h 05m"),
                                                (187_200, "2d 4h")])
def test_duration_text(seconds, text):
    assert health.duration_text(seconds) == text


def _t(text: str | None) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC") if text else pd.NaT


def test_daily_health_shapes_every_section_without_personal_data():
    day, start, end = health.day_window(NOW, "UTC")
    report = health.daily_health(
        day, "UTC", start, end, NOW,
        submissions=pd.DataFrame({"source": ["web_form", "event", "web_form"], "spam": [False, False, True],
                                  "submissions": [5, 2, 4]}),
        new_leads=6,
        alerts=pd.DataFrame({"first_touch_at": [_t("2026-11-23 09:00")] * 3,
                             "queued_at": [_t("2026-11-23 09:00:30"), _t("2026-11-23 09:01"),
                                           _t("2026-11-23 09:11")],
                             "sent_at": [_t("2026-11-23 09:01"), _t(None), _t("2026-11-23 09:12")],
                             "status": ["sent", "pending", "sent"]}),
        sla=pd.DataFrame({"kind": ["qualification", "qualification", "discovery_call", "qualification"],
                          "due_at": [_t("2026-11-23 10:00")] * 4,
                          "completed_at": [_t("2026-11-23 09:30"), _t("2026-11-23 11:00"), _t(None), _t(None)],
                          "status": ["done", "done", "open", "cancelled"]}),
        unassigned=pd.DataFrame({"priority": ["P1", None], "leads": [2, 3]}),
        outbox=pd.DataFrame({"status": ["pending", "pending", "failed"], "kind": ["rep_alert", "auto_response",
                                                                                  "rep_alert"],
                             "messages": [3, 1, 2], "oldest": [_t("2026-11-24 09:00"), _t("2026-11-24 09:50"),
                                                               _t("2026-11-01")]}),
        failed_in_day=pd.DataFrame({"kind": ["rep_alert"], "messages": [1]}),
        quarantine=pd.DataFrame({"reason_codes": ["invalid_email", "missing_source,invalid_email"], "rows": [3, 1]}),
    )
    assert (report.submissions, report.spam_submissions, report.new_leads) == (11, 4, 6)
    assert report.by_channel == {"web_form": 5, "event": 2}
    assert (report.speed.alerts, report.speed.queued_median_s, report.speed.sent, report.speed.sent_median_s) == (
        3, 60.0, 2, 390.0)
    # Done late and still open past due breach; a cancelled task is no SLA.
    assert (report.sla.due, report.sla.met, report.sla.breached) == (4, 1, 2)
    assert report.sla.breached_by_kind == {"discovery_call": 1, "qualification": 1}
    assert (report.unassigned, report.unassigned_by_priority) == (5, {"P1": 2, "none": 3})
    assert (report.outbox.pending, report.outbox.failed, report.outbox.oldest_pending_s,
            report.outbox.failed_in_day) == (4, 2, 3600.0, 1)
    assert report.quarantine_by_reason == {"invalid_email": 4, "missing_source": 1} and report.quarantined == 4
    text = report.markdown()
    assert "**2 breached**" in text and "queued median 1m 00s" in text and "@" not in text
    table = report.table()
    assert {"section": "volume by channel", "metric": "web_form", "value": "5"} in table
    assert all(set(row) == {"section", "metric", "value"} for row in table)


def test_an_empty_day_is_honest():
    day, start, end = health.day_window(NOW, "UTC")
    empty = {name: pd.DataFrame(columns=cols) for name, cols in {
        "submissions": ["source", "spam", "submissions"], "alerts": ["first_touch_at", "queued_at", "sent_at",
                                                                     "status"],
        "sla": ["kind", "due_at", "completed_at", "status"], "unassigned": ["priority", "leads"],
        "outbox": ["status", "kind", "messages", "oldest"], "failed_in_day": ["kind", "messages"],
        "quarantine": ["reason_codes", "rows"]}.items()}
    report = health.daily_health(day, "UTC", start, end, NOW, new_leads=0, **empty)
    assert report.submissions == report.sla.breached == report.outbox.pending == report.quarantined == 0
    assert report.speed.queued_median_s is None and "queued median –" in report.markdown()
