"""Messages: autoescaped templates, bulk rendering equal to row-by-row rendering, idempotency keys, suppression."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from leadflow.domain import messages

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def prospects(**overrides) -> pd.DataFrame:
    row = {"lead_id": 7, "email": "ada@acme.com", "first_name": "Ada", "company": "Acme", "do_not_contact": False,
           "email_opt_in": None, "is_spam": False}
    return pd.DataFrame([{**row, **overrides}])


@pytest.mark.parametrize(
    ("first_name", "company"),
    [("Ada", "Acme"), (None, "Acme"), ("Ada", None), (None, None), ("<script>x</script>", "A & B \"'<>"),
     ("", "Ünïcødé GmbH"), ("Ada {{ 7*7 }}", "{% if %}")],
)
def test_bulk_rendering_equals_jinja_row_by_row(first_name, company):
    rows = pd.DataFrame({"first_name": [first_name], "company": [company]})
    bulk = messages.render_many("auto_response_email.j2", rows).iloc[0]
    single = messages.render("auto_response_email.j2", first_name=first_name or None, company=company or None)
    assert bulk == single


def test_lead_supplied_markup_cannot_inject():
    body = messages.auto_responses(prospects(first_name="<script>alert(1)</script>"), NOW)["body"].iloc[0]
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body


@pytest.mark.parametrize(
    ("overrides", "sent"),
    [({}, True), ({"do_not_contact": True}, False), ({"email_opt_in": False}, False), ({"email_opt_in": True}, True),
     ({"is_spam": True}, False), ({"email": None}, False)],
)
def test_auto_response_suppression(overrides, sent):
    frame = messages.auto_responses(prospects(**overrides), NOW)
    assert len(frame) == int(sent)
    if sent:
        row = frame.iloc[0]
        assert row["idempotency_key"] == "auto_response:lead:7" and row["status"] == "pending"
        assert row["channel"] == "email" and row["kind"] == "auto_response"


def test_rep_alert_names_the_rep_channel_else_rep_email():
    team = pd.DataFrame({"id": [1, 2], "email": ["r1@x.io", "r2@x.io"], "alert_url": ["json://localhost:1/", None]})
    hot = pd.DataFrame({"lead_id": [10, 11], "owner_id": [1, 2], "first_name": ["<b>Bo</b>", None],
                        "last_name": ["Li", None], "job_title": ["CTO", None], "company": ["Acme", None],
                        "country": ["US", None], "priority": ["P1", "P2"], "priority_reason": ["r: why", "x: y"],
                        "checklist": ['{"budget": {"status": "met", "why": "1001-5000 employees"}}', None],
                        "due_at": [pd.Timestamp("2026-11-24 09:05", tz="UTC"), pd.NaT]})
    frame = messages.rep_alerts(hot, team, NOW).set_index("lead_id")
    # The rep's alert_url is resolved at send time: the row names the channel only.
    assert frame.loc[10, "channel"] == "apprise" and frame.loc[10, "recipient"] == "rep:1"
    assert frame.loc[11, "channel"] == "email" and frame.loc[11, "recipient"] == "r2@x.io"
    assert frame.loc[10, "idempotency_key"] == "rep_alert:lead:10:rep:1"
    assert "&lt;b&gt;Bo&lt;/b&gt; Li, CTO at Acme (US)" in frame.loc[10, "body"]
    assert "budget met (1001-5000 employees)" in frame.loc[10, "body"] and "2026-11-24 09:05 UTC" in \
        frame.loc[10, "body"]
    assert "Name unknown" in frame.loc[11, "body"] and "Qualify by" not in frame.loc[11, "body"]


def _mail(**over):
    row = {"lead_id": 10, "owner_id": 1, "message_key": "k1", "first_name": "Bo", "last_name": "Li",
           "company": "Acme", "subject": "Re: hello", "excerpt": "Tuesday <works>", "replied": True,
           "written_at": pd.Timestamp("2026-12-02 09:30", tz="UTC"), "sequence_stopped": True}
    return {**row, **over}


@pytest.mark.parametrize(("case", "row", "expected"), [
    ("a reply to our mail, sequence stopped, rep with a channel",
     _mail(), ("apprise", "rep:1", "Your lead replied", ["replied to our email", "Tuesday &lt;works&gt;",
                                                         "sequence has stopped", "2026-12-02 09:30 UTC"])),
    ("a new message, no sequence, rep by email",
     _mail(owner_id=2, replied=False, sequence_stopped=False, subject=None, excerpt=""),
     ("email", "r2@x.io", "Your lead wrote to sales", ["wrote to the sales mailbox", "Subject: (none)"])),
    ("no owner: nobody to tell", _mail(owner_id=None), None),
    ("an owner who is no rep (removed): nobody to tell", _mail(owner_id=9), None),
])
def test_reply_alerts_go_to_the_owner_only(case, row, expected):
    team = pd.DataFrame({"id": [1, 2], "email": ["r1@x.io", "r2@x.io"], "alert_url": ["json://localhost:1/", None]})
    frame = messages.reply_alerts(pd.DataFrame([row]), team, NOW)
    if expected is None:
        assert frame.empty
        return
    channel, recipient, subject, parts = expected
    (alert,) = frame.to_dict("records")
    assert (alert["channel"], alert["recipient"], alert["subject"]) == (channel, recipient, subject)
    assert alert["idempotency_key"] == "reply_alert:lead:10:mail:k1" and alert["kind"] == "reply_alert"
    for part in parts:
        assert part in alert["body"]
    assert ("sequence has stopped" in alert["body"]) == row["sequence_stopped"]


def test_unassigned_notice_is_keyed_by_its_leads():
    unassigned = pd.DataFrame({"lead_id": [3, 1, 2], "priority": ["P1", "P4", "P4"],
                               "fallback_reason": ["no_eligible_rep"] * 3})
    a = messages.unassigned_notice(unassigned, "q", ["P1", "P2"], False, "sales@x.io", NOW)
    b = messages.unassigned_notice(unassigned.iloc[::-1], "q", ["P1", "P2"], True, "sales@x.io", NOW)
    assert a["idempotency_key"].iloc[0] == b["idempotency_key"].iloc[0]
    assert (a["channel"].iloc[0], a["recipient"].iloc[0]) == ("email", "sales@x.io")
    assert (b["channel"].iloc[0], b["recipient"].iloc[0]) == ("apprise", "manager")
    assert "1 at SLA risk" in a["subject"].iloc[0]
    assert "lead #1 (P4)</li><li>lead #2 (P4)</li><li>lead #3 (P1)" in a["body"].iloc[0]
    assert messages.unassigned_notice(unassigned.iloc[:0], "q", [], False, "s@x.io", NOW).empty


def test_sla_notice_lists_overdue_tasks():
    overdue = pd.DataFrame({"id": [5], "lead_id": [9], "kind": ["qualification"], "owner_id": [None],
                            "due_at": [pd.Timestamp("2026-11-24 08:00", tz="UTC")]})
    frame = messages.sla_risk_notice(overdue, False, "sales@x.io", NOW)
    assert frame["subject"].iloc[0] == "1 task past SLA" and "lead #9 (unassigned)" in frame["body"].iloc[0]
