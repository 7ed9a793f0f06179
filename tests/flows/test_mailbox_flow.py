"""lead-mailbox against a real IMAP server (Dovecot): inquiries become leads, a known lead's reply a touch, machine
mail is skipped by reason, what was taken is moved or flagged, and re-running changes nothing."""

from __future__ import annotations

import imaplib
from datetime import UTC, datetime

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from sqlalchemy import select

from flows.intake import lead_intake
from flows.mailbox import SUMMARY_KEY, lead_mailbox
from leadflow.config.settings import get_settings
from leadflow.crm import outbox
from leadflow.crm.inbox import INBOX
from leadflow.crm.mailbox import EMAIL_RECEIVED_EVENT, mailbox_counts
from leadflow.crm.schema import Lead, LeadEvent, LeadSubmission
from leadflow.io.senders import message_id
from leadflow.steps import mailbox as steps
from tests.helpers import lead, run_flow, run_intake, snapshot, write_csv
from tests.mail_server import PASSWORD

KNOWN = "kim@known.example"
OUR_KEY = "auto_response:known"


def _raw(headers: dict[str, str], body: bytes = b"We would like a quote for 40 seats.\r\n",
         content_type: str = 'text/plain; charset="utf-8"') -> bytes:
    base = {"To": "sales@example.test", "Date": "Mon, 02 Mar 2026 10:15:00 +0000", "MIME-Version": "1.0",
            "Content-Type": content_type, **headers}
    return "".join(f"{k}: {v}\r\n" for k, v in base.items()).encode("ascii") + b"\r\n" + body


INQUIRY = _raw({"From": "Jane Doe <jane@acme.com>", "Subject": "Pricing", "Message-ID": "<inquiry-1@acme.com>"})
REPLY = _raw({"From": f"Kim Lee <{KNOWN}>", "Subject": "Re: Thanks for your interest",
              "Message-ID": "<reply-1@known.example>", "In-Reply-To": message_id(OUR_KEY)},
             b"Tuesday works.\r\n\r\nOn Mon, 2 Mar 2026, Sales wrote:\r\n> Thanks for your interest\r\n")
AUTO_REPLY = _raw({"From": "Bob <bob@beta.io>", "Subject": "Out of office", "Message-ID": "<ooo-1@beta.io>",
                   "Auto-Submitted": "auto-replied"})
BOUNCE = _raw({"From": "Mail Delivery System <MAILER-DAEMON@mx.beta.io>", "Subject": "Undelivered Mail",
               "Message-ID": "<dsn-1@mx.beta.io>", "Return-Path": "<>"},
              b"--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
              b"Reporting-MTA: dns; mx.beta.io\r\n\r\nFinal-Recipient: rfc822; x@beta.io\r\nAction: failed\r\n"
              b"Status: 5.1.1\r\n--b--\r\n",
              'multipart/report; report-type=delivery-status; boundary="b"')
LIST_MAIL = _raw({"From": "News <news@vendor.example>", "Subject": "Weekly digest", "Message-ID": "<list-1@vendor>",
                  "List-Id": "Vendor news <news.vendor.example>", "List-Unsubscribe": "<mailto:leave@vendor.example>"})
LATIN1 = _raw({"From": "=?iso-8859-1?q?J=FCrgen_M=FCller?= <jm@firma.de>", "Subject": "Anfrage",
               "Message-ID": "<anfrage-1@firma.de>"},
              "Grüße aus Köln: wir möchten ein Angebot.\r\n".encode("iso-8859-1"),
              'text/plain; charset="iso-8859-1"')


@pytest.fixture
def mailbox_user(imap_server, monkeypatch) -> str:
    """A fresh mailbox on the real server, configured as the sales mailbox (plain IMAP on loopback)."""
    user = imap_server.new_user()
    for name, value in {"HOST": "127.0.0.1", "PORT": str(imap_server.port), "SECURITY": "none", "USER": user,
                        "PASSWORD": PASSWORD, "PROCESSED_FOLDER": "Leadflow/Taken"}.items():
        monkeypatch.setenv(f"LEADFLOW_MAILBOX_{name}", value)
    get_settings.cache_clear()
    yield user
    get_settings.cache_clear()


def _deliver(client: imaplib.IMAP4, *messages: bytes, folder: str = "INBOX") -> None:
    for raw in messages:
        status, _ = client.append(folder, None, None, raw)
        assert status == "OK"


def _uids(client: imaplib.IMAP4, folder: str, criteria: str = "ALL") -> list[bytes]:
    status, _ = client.select(f'"{folder}"', readonly=True)
    if status != "OK":
        return []
    return client.uid("SEARCH", criteria)[1][0].split()


def _known_lead(crm, tmp_path) -> int:
    """A lead that exists before its mail arrives, with an auto-response leadflow sent it."""
    run_intake(crm, write_csv(tmp_path / "known.csv", [lead(KNOWN, first_name="Kim")]))
    with crm.engine.connect() as conn:
        lead_id = conn.execute(select(Lead.id).where(Lead.email == KNOWN)).scalar_one()
    outbox.queue_messages(crm, pd.DataFrame({
        "idempotency_key": [OUR_KEY], "lead_id": [lead_id], "kind": "auto_response", "channel": "email",
        "recipient": KNOWN, "subject": "Thanks for your interest", "body": "b", "status": "sent", "attempts": 1,
        "created_at": datetime(2026, 3, 1, tzinfo=UTC)}))
    return lead_id


def _summary_artifact(flow_run_id) -> str:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    (artifact,) = [a for a in found if a.key == SUMMARY_KEY]
    return str(artifact.data)


def test_the_mailbox_becomes_leads_touches_and_counted_skips_once(crm, imap_server, mailbox_user, tmp_path):
    lead_id = _known_lead(crm, tmp_path)
    client = imap_server.client(mailbox_user)
    # The inquiry twice (a copy filed twice): one lead all the same.
    _deliver(client, INQUIRY, REPLY, AUTO_REPLY, BOUNCE, LIST_MAIL, LATIN1, INQUIRY)

    result, run_id = run_flow(lead_mailbox)
    # The known lead has no owner and no sequence yet: nothing to stop, nobody to alert.
    assert result == {"configured": True, "fetched": 7, "inquiries": 2, "touches": 1, "replies": 1,
                      "sequences_stopped": 0, "rep_alerts": 0,
                      "skipped": {"auto_reply": 1, "bounce": 1, "mailing_list": 1}, "already_taken": 1,
                      "marked": 7}
    summary = _summary_artifact(run_id)
    for line in ("| skipped: auto_reply | 1 |", "| skipped: bounce | 1 |", "| skipped: mailing_list | 1 |",
                 "| new inquiries (to lead_inbox) | 2 |", "| touches of known leads | 1 |"):
        assert line in summary
    assert "jane@acme.com" not in summary and "Jane" not in summary

    # Everything taken left the folder for the processed one, read flags untouched (BODY.PEEK).
    assert _uids(client, "INBOX") == []
    assert len(_uids(client, "Leadflow/Taken")) == 7
    assert len(_uids(client, "Leadflow/Taken", "UNSEEN")) == 7
    assert mailbox_counts(crm) == {"inquiry": 2, "touch": 1, "skipped": 3, "unhandled": 0}

    with crm.engine.connect() as conn:
        payloads = [r[0] for r in conn.execute(select(INBOX.c.payload).order_by(INBOX.c.id))]
        (event,) = conn.execute(select(LeadEvent.lead_id, LeadEvent.details)
                                .where(LeadEvent.event_type == EMAIL_RECEIVED_EVENT)).all()
    assert [p["email"] for p in payloads] == ["jane@acme.com", "jm@firma.de"]
    assert payloads[0]["external_id"] == "<inquiry-1@acme.com>"
    assert payloads[0]["submitted_at"] == "2026-03-02T10:15:00+00:00"
    assert event.lead_id == lead_id
    assert (event.details["kind"], event.details["reply_to"]) == ("reply", OUR_KEY)

    # New mail arrives meanwhile; the re-run takes only that, and nothing already taken is stored again.
    before = snapshot(crm)
    assert lead_mailbox() == {"configured": True, "fetched": 0}
    assert snapshot(crm) == before

    client.logout()


def test_mailed_inquiries_reach_the_crm_through_continuous_intake(sqlite_crm, imap_server, mailbox_user):
    client = imap_server.client(mailbox_user)
    _deliver(client, INQUIRY, LATIN1)
    client.logout()
    assert lead_mailbox()["inquiries"] == 2
    # The inbox rows go the way of every live lead (spam checks, quarantine, dedupe, names split by nameparser).
    intake = lead_intake()
    assert (intake["rows_read"], intake["submissions_new"], intake["quarantined"]) == (2, 2, 0)
    with sqlite_crm.engine.connect() as conn:
        rows = conn.execute(select(Lead.email, Lead.first_name, Lead.last_name, LeadSubmission.source,
                                   LeadSubmission.external_id, LeadSubmission.message)
                            .join(LeadSubmission, LeadSubmission.lead_id == Lead.id).order_by(Lead.email)).all()
    assert [tuple(r) for r in rows] == [
        ("jane@acme.com", "Jane", "Doe", "email_inquiry", "<inquiry-1@acme.com>",
         "Pricing\n\nWe would like a quote for 40 seats."),
        ("jm@firma.de", "Jürgen", "Müller", "email_inquiry", "<anfrage-1@firma.de>",
         "Anfrage\n\nGrüße aus Köln: wir möchten ein Angebot."),
    ]


def test_a_run_that_died_before_flagging_is_finished_without_storing_again(crm, imap_server, mailbox_user,
                                                                          monkeypatch):
    monkeypatch.setenv("LEADFLOW_MAILBOX_AFTER", "flag")
    get_settings.cache_clear()
    client = imap_server.client(mailbox_user)
    _deliver(client, INQUIRY, AUTO_REPLY)
    config = steps.mailbox_config()
    now = datetime.now(UTC)

    # Stored, then the process died before the flags were set: the messages are still there, unflagged.
    fetched = steps.fetch_messages(config)
    first = steps.take_messages(crm, fetched.messages, now)
    assert (first.inquiries, first.skipped) == (1, {"auto_reply": 1})
    assert mailbox_counts(crm)["unhandled"] == 2

    again = steps.fetch_messages(config)
    assert [m.uid for m in again.messages] == [m.uid for m in fetched.messages]
    second = steps.take_messages(crm, again.messages, now)
    assert (second.inquiries, second.touches, second.skipped, second.already_taken) == (0, 0, {}, 2)
    assert steps.mark_messages(crm, config, again.uidvalidity, second, now) == 2
    assert crm.table_counts()["lead_inbox"] == 1
    assert mailbox_counts(crm)["unhandled"] == 0

    # Flagged where they are: seen and keyworded, and the next fetch leaves them out.
    assert len(_uids(client, "INBOX", "KEYWORD $LeadflowTaken SEEN")) == 2
    assert steps.fetch_messages(config).messages == []
    # Marking under a rebuilt folder's UIDVALIDITY marks nothing (the next run would find them taken and mark).
    assert steps.mark_messages(crm, config, again.uidvalidity + 1, second, now) == 0
    client.logout()


def test_a_refused_login_names_the_server_not_the_password(imap_server, mailbox_user, monkeypatch):
    from leadflow.io.mailbox import MailboxError

    monkeypatch.setenv("LEADFLOW_MAILBOX_PASSWORD", "wrong-secret-value")
    get_settings.cache_clear()
    with pytest.raises(MailboxError, match="refused the login") as failure:
        steps.fetch_messages(steps.mailbox_config())
    assert "wrong-secret-value" not in str(failure.value) and mailbox_user not in str(failure.value)
    # Not retried: trying a refused password again only risks locking the account.
    assert failure.value.transient is False


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_and_starttls_trust_the_configured_ca_and_refuse_an_unknown_certificate(imap_server, mailbox_user,
                                                                                   monkeypatch, security):
    from leadflow.io.mailbox import MailboxError

    client = imap_server.client(mailbox_user)
    _deliver(client, INQUIRY)
    client.logout()
    port = imap_server.tls_port if security == "tls" else imap_server.port
    monkeypatch.setenv("LEADFLOW_MAILBOX_SECURITY", security)
    monkeypatch.setenv("LEADFLOW_MAILBOX_PORT", str(port))
    get_settings.cache_clear()
    with pytest.raises(MailboxError, match="cannot connect"):
        steps.fetch_messages(steps.mailbox_config())
    monkeypatch.setenv("LEADFLOW_MAILBOX_CA_FILE", str(imap_server.ca_file))
    get_settings.cache_clear()
    (message,) = steps.fetch_messages(steps.mailbox_config()).messages
    assert message.raw == INQUIRY


def test_the_password_may_live_in_a_prefect_secret_block(imap_server, mailbox_user, monkeypatch):
    from prefect.blocks.system import Secret

    import tasks.common  # noqa: F401  (installs the Secret block loader, as every task process does)

    Secret(value=PASSWORD).save("lf-mailbox-password", overwrite=True, _sync=True)
    monkeypatch.setenv("LEADFLOW_MAILBOX_PASSWORD", "prefect-secret://lf-mailbox-password")
    get_settings.cache_clear()
    config = steps.mailbox_config()
    assert config.password == PASSWORD
    assert steps.fetch_messages(config).messages == []


def test_without_a_mailbox_a_run_ends_idle_at_once(monkeypatch):
    monkeypatch.delenv("LEADFLOW_MAILBOX_HOST", raising=False)
    get_settings.cache_clear()
    result, run_id = run_flow(lead_mailbox)
    assert result == {"configured": False, "fetched": 0}
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).name == "mailbox-idle"
    # Half a configuration is an error, not an idle run.
    monkeypatch.setenv("LEADFLOW_MAILBOX_HOST", "127.0.0.1")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="LEADFLOW_MAILBOX_USER and LEADFLOW_MAILBOX_PASSWORD are needed"):
        steps.mailbox_config()
    get_settings.cache_clear()


def test_a_failed_move_still_reports_then_fails_and_the_next_run_only_moves(sqlite_crm, imap_server, mailbox_user,
                                                                            monkeypatch):
    client = imap_server.client(mailbox_user)
    _deliver(client, INQUIRY, LIST_MAIL)
    monkeypatch.setenv("LEADFLOW_MAILBOX_PROCESSED_FOLDER", "Bearbeitet-\u00e4")  # refused: not an ASCII name
    get_settings.cache_clear()
    state = lead_mailbox(return_state=True)
    assert state.is_failed()
    summary = _summary_artifact(state.state_details.flow_run_id)
    assert "| new inquiries (to lead_inbox) | 1 |" in summary and "| moved or flagged | 0 |" in summary
    assert len(_uids(client, "INBOX")) == 2
    assert mailbox_counts(sqlite_crm) == {"inquiry": 1, "skipped": 1, "unhandled": 2}

    monkeypatch.setenv("LEADFLOW_MAILBOX_PROCESSED_FOLDER", "Processed")
    get_settings.cache_clear()
    result = lead_mailbox()
    assert (result["fetched"], result["already_taken"], result["inquiries"], result["marked"]) == (2, 2, 0, 2)
    assert sqlite_crm.table_counts()["lead_inbox"] == 1
    assert mailbox_counts(sqlite_crm)["unhandled"] == 0
    assert _uids(client, "INBOX") == [] and len(_uids(client, "Processed")) == 2
    client.logout()


def test_a_reply_stops_the_sequence_and_tells_the_owner_once(crm, imap_server, mailbox_user):
    from leadflow.crm import reference
    from leadflow.crm.followup import followup_tasks, followups_frame
    from leadflow.crm.schema import CrmTask, OutboxMessage, SalesRep
    from leadflow.domain.followup import load_cadence_policy
    from leadflow.steps.followup import follow_up

    t0 = datetime(2026, 12, 1, 6, tzinfo=UTC)
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    with crm.engine.connect() as conn:
        ava = conn.execute(select(SalesRep.id).where(SalesRep.email == "ava.moreno@leadflow.example")).scalar_one()
    with crm.begin() as conn:
        conn.execute(Lead.__table__.insert(), [
            {"email": email, "tier": "tier_1", "owner_id": ava, "status": status, "first_name": "Kim",
             "last_name": "Lee", "company": "Known Inc", "first_touch_at": t0, "last_touch_at": t0,
             "first_touch_source": "web_form", "last_touch_source": "web_form", "created_at": t0, "updated_at": t0}
            for email, status in ((KNOWN, "working"), ("owned@known.example", "new"))])
    with crm.engine.connect() as conn:
        ids = dict(conn.execute(select(Lead.email, Lead.id)).all())
    outbox.queue_messages(crm, pd.DataFrame({  # the mail the reply answers
        "idempotency_key": [OUR_KEY], "lead_id": [ids[KNOWN]], "kind": "auto_response", "channel": "email",
        "recipient": KNOWN, "subject": "Thanks for your interest", "body": "b", "status": "sent", "attempts": 1,
        "created_at": t0}))
    follow_up(crm, load_cadence_policy(), t0, "UTC")  # enrolls the working lead
    follow_up(crm, load_cadence_policy(), datetime(2026, 12, 2, 15, tzinfo=UTC), "UTC")  # its first step is due
    assert followup_tasks(crm)["status"].tolist() == ["open"]  # the working lead's first step, a call

    reply = REPLY.replace(b"Mon, 02 Mar 2026 10:15:00", b"Wed, 02 Dec 2026 09:30:00")
    # Not a reply to our mail, from an owned lead without a sequence: its owner is told all the same.
    note = _raw({"From": "Owned <owned@known.example>", "Subject": "One more question",
                 "Message-ID": "<note-1@known.example>", "Date": "Wed, 02 Dec 2026 09:40:00 +0000"},
                b"Does it <b>integrate</b> with our ERP?\r\n")
    client = imap_server.client(mailbox_user)
    _deliver(client, reply, note)
    result = lead_mailbox()
    assert (result["touches"], result["replies"], result["sequences_stopped"], result["rep_alerts"]) == (2, 1, 1, 2)

    state = followups_frame(crm).set_index("lead_id")
    assert state.loc[ids[KNOWN], ["state", "stop_reason", "last_outcome"]].tolist() == ["stopped", "replied",
                                                                                      "replied"]
    assert ids["owned@known.example"] not in state.index  # no sequence was started for it
    assert followup_tasks(crm)["status"].tolist() == ["cancelled"]  # cancelled, not done: nobody made the call
    with crm.engine.connect() as conn:
        outcomes = conn.execute(select(LeadEvent.lead_id, LeadEvent.details)
                                .where(LeadEvent.event_type == "followup_outcome")).all()
        alerts = {r.lead_id: r for r in conn.execute(select(OutboxMessage.__table__)
                                                     .where(OutboxMessage.kind == "reply_alert"))}
        open_tasks = conn.execute(select(CrmTask.id).where(CrmTask.status == "open")).all()
    assert [(o.lead_id, o.details["outcome"], o.details["by"]) for o in outcomes] == [(ids[KNOWN], "replied",
                                                                                      "mailbox")]
    assert open_tasks == []
    assert set(alerts) == set(ids.values())
    reply_alert, note_alert = alerts[ids[KNOWN]], alerts[ids["owned@known.example"]]
    assert (reply_alert.channel, reply_alert.recipient) == ("email", "ava.moreno@leadflow.example")
    assert reply_alert.subject == "Your lead replied"
    assert "Tuesday works." in reply_alert.body and "sequence has stopped" in reply_alert.body
    assert "Sales wrote" not in reply_alert.body  # the quoted part is trimmed
    assert note_alert.subject == "Your lead wrote to sales" and "sequence has stopped" not in note_alert.body
    assert "&lt;b&gt;integrate&lt;/b&gt;" in note_alert.body  # the lead's text is escaped

    # The same two messages filed again (a copy in the folder): taken before, so nothing repeats.
    before = snapshot(crm)
    _deliver(client, reply, note)
    again = lead_mailbox()
    assert (again["already_taken"], again["touches"], again["rep_alerts"]) == (2, 0, 0)
    assert snapshot(crm) == before
    client.logout()
