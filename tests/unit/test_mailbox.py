"""Mail to the sales mailbox, judged and mapped: each skip rule with the near miss that is still an inquiry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leadflow.domain.mailbox import (
    MAILBOX_SOURCE,
    SKIP_REASONS,
    MailboxMessage,
    excerpt,
    html_to_text,
    inquiry_payload,
    message_key,
    parse_message,
    trim_quoted,
)

RECEIVED = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
OWN = frozenset({"sales@leadflow.example"})


def mail(headers: dict[str, str] | None = None, body: str = "Hello, we need 40 seats.\n", *,
         content_type: str = 'text/plain; charset="utf-8"', sender: str = "Jane Doe <jane@acme.com>",
         charset: str = "utf-8") -> bytes:
    """A raw RFC 5322 message: From, Subject, Message-ID and Date unless given otherwise (None drops one)."""
    base = {"From": sender, "To": "sales@leadflow.example", "Subject": "Pricing question",
            "Message-ID": "<m1@acme.com>", "Date": "Mon, 02 Mar 2026 10:15:00 +0100", "MIME-Version": "1.0",
            "Content-Type": content_type}
    base.update(headers or {})
    head = "".join(f"{k}: {v}\r\n" for k, v in base.items() if v is not None)
    return head.encode("ascii") + b"\r\n" + body.replace("\n", "\r\n").encode(charset)


DSN = ('multipart/report; report-type=delivery-status; boundary="b"', (
    "--b\nContent-Type: text/plain\n\nDelivery failed.\n--b\nContent-Type: message/delivery-status\n\n"
    "Reporting-MTA: dns; mx.acme.com\n\nFinal-Recipient: rfc822; x@acme.com\nAction: failed\nStatus: 5.1.1\n--b--\n"))
MIXED = ('multipart/mixed; boundary="b"', "--b\nContent-Type: text/plain\n\nA real question.\n--b--\n")


@pytest.mark.parametrize(
    ("case", "raw", "reason"),
    [
        ("delivery-status report", mail(content_type=DSN[0], body=DSN[1]), "bounce"),
        ("multipart that is no report", mail(content_type=MIXED[0], body=MIXED[1]), None),
        ("from MAILER-DAEMON", mail(sender="Mail Delivery System <MAILER-DAEMON@mx.acme.com>"), "bounce"),
        ("from postmaster", mail(sender="postmaster@acme.com"), "bounce"),
        ("from a person named like the daemon", mail(sender="Daemon Mailer <daemon.mailer@acme.com>"), None),
        ("Auto-Submitted: auto-replied", mail({"Auto-Submitted": "auto-replied"}), "auto_reply"),
        ("Auto-Submitted: auto-generated", mail({"Auto-Submitted": "auto-generated"}), "auto_reply"),
        ("Auto-Submitted: no", mail({"Auto-Submitted": "no"}), None),
        ("X-Autoreply", mail({"X-Autoreply": "yes"}), "auto_reply"),
        ("X-Autorespond", mail({"X-Autorespond": "Out of office"}), "auto_reply"),
        ("Precedence: bulk", mail({"Precedence": "bulk"}), "auto_reply"),
        ("Precedence: junk", mail({"Precedence": "junk"}), "auto_reply"),
        ("Precedence: auto_reply", mail({"Precedence": "auto_reply"}), "auto_reply"),
        ("Precedence: first-class", mail({"Precedence": "first-class"}), None),
        ("Return-Path: <>", mail({"Return-Path": "<>"}), "null_return_path"),
        ("Return-Path of the sender", mail({"Return-Path": "<jane@acme.com>"}), None),
        ("List-Id", mail({"List-Id": "Sales news <news.acme.com>"}), "mailing_list"),
        ("List-Unsubscribe", mail({"List-Unsubscribe": "<mailto:leave@acme.com>"}), "mailing_list"),
        ("Precedence: list", mail({"Precedence": "list"}), "mailing_list"),
        ("List-Help only is no list", mail({"List-Help": "<mailto:help@acme.com>"}), None),
        ("our own address", mail(sender="Leadflow <Sales@Leadflow.example>"), "own_address"),
        ("no From at all", mail({"From": None}), "no_sender"),
        ("a From without an address", mail(sender="undisclosed-recipients:;"), "no_sender"),
        ("no From but a Sender", mail({"From": None, "Sender": "jane@acme.com"}), None),
    ],
)
def test_skip_rules(case, raw, reason):
    message = parse_message(raw, RECEIVED, OWN)
    assert message.skip_reason == reason, case
    assert reason is None or reason in SKIP_REASONS
    # A skipped message's text is not even decoded: nothing of it is kept.
    assert (message.text == "") == (reason is not None)


def test_a_bounce_with_auto_submitted_is_counted_as_the_bounce_it_is():
    raw = mail({"Auto-Submitted": "auto-replied", "Return-Path": "<>"}, content_type=DSN[0], body=DSN[1])
    assert parse_message(raw, RECEIVED).skip_reason == "bounce"


@pytest.mark.parametrize(
    ("case", "raw", "expected"),
    [
        ("display name to full_name", mail(), {"email": "jane@acme.com", "full_name": "Jane Doe",
                                                "message": "Pricing question\n\nHello, we need 40 seats."}),
        ("a bare address has no name", mail(sender="jane@acme.com"), {"full_name": None}),
        ("a name that is the address is no name", mail(sender='"jane@acme.com" <jane@acme.com>'),
         {"full_name": None}),
        ("encoded-word name and subject", mail({"Subject": "=?utf-8?q?Angebot_f=C3=BCr_M=C3=BCller?="},
                                               sender="=?utf-8?b?SsO8cmdlbiBNw7xsbGVy?= <jm@acme.de>"),
         {"full_name": "Jürgen Müller", "message": "Angebot für Müller\n\nHello, we need 40 seats."}),
        ("Latin-1 body by its declared charset",
         mail(body="Grüße aus Köln, wir möchten ein Angebot.\n", content_type='text/plain; charset="iso-8859-1"',
              charset="iso-8859-1"),
         {"message": "Pricing question\n\nGrüße aus Köln, wir möchten ein Angebot."}),
        ("Windows-1252 quotes", mail(body="We\u2019d like a demo \u2013 soon.\n",
                                     content_type="text/plain; charset=windows-1252", charset="cp1252"),
         {"message": "Pricing question\n\nWe\u2019d like a demo \u2013 soon."}),
        ("an unknown charset decodes leniently", mail(body="plain words\n",
                                                      content_type="text/plain; charset=x-no-such"),
         {"message": "Pricing question\n\nplain words"}),
        ("external_id is the Message-ID", mail(), {"external_id": "<m1@acme.com>", "source": MAILBOX_SOURCE}),
        ("no Message-ID: no external_id", mail({"Message-ID": None}), {"external_id": None}),
        ("submitted_at from Date, in UTC", mail(), {"submitted_at": "2026-03-02T09:15:00+00:00"}),
        ("no Date: received time", mail({"Date": None}), {"submitted_at": RECEIVED.isoformat()}),
        ("a broken Date: received time", mail({"Date": "the day before yesterday"}),
         {"submitted_at": RECEIVED.isoformat()}),
        ("no subject: body only", mail({"Subject": None}), {"message": "Hello, we need 40 seats."}),
    ],
)
def test_inquiry_mapping(case, raw, expected):
    message = parse_message(raw, RECEIVED, OWN)
    assert message.skip_reason is None, case
    payload = inquiry_payload(message)
    for name, value in expected.items():
        assert payload.get(name) == value, (case, name)


def test_plain_text_is_preferred_over_html_and_html_alone_is_stripped():
    both = ('multipart/alternative; boundary="b"',
            "--b\nContent-Type: text/plain\n\nPlain words.\n--b\nContent-Type: text/html\n\n<p>HTML words</p>\n--b--\n")
    assert parse_message(mail(content_type=both[0], body=both[1]), RECEIVED).text == "Plain words."
    page = ("<html><head><style>p{color:red}</style><title>x</title></head><body><p>Hi&nbsp;team,</p>"
            "<div>we need <b>40</b> seats &amp; SSO.</div><script>alert(1)</script>"
            "<blockquote>On Monday you wrote: our offer</blockquote></body></html>")
    text = parse_message(mail(content_type="text/html; charset=utf-8", body=page), RECEIVED).text
    assert text == "Hi team,\n\nwe need 40 seats & SSO."


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Yes, let's talk.\n\nOn Mon, 2 Mar 2026 at 10:00, Sales <s@x.com> wrote:\n> Offer\n", "Yes, let's talk."),
        ("Yes.\n> quoted line\nStill mine.\n", "Yes.\nStill mine."),
        ("Ja.\n\nAm 02.03.2026 um 10:00 schrieb Sales <s@x.de>:\n> Angebot\n", "Ja."),
        ("Sure.\n-----Original Message-----\nFrom: Sales\n", "Sure."),
        ("Thanks,\nJane\n-- \nJane Doe | Acme\n+1 555 0100\n", "Thanks,\nJane"),
        ("Nothing quoted here.\nOn second thought, call me.\n", "Nothing quoted here.\nOn second thought, call me."),
        ("> all of it quoted\n", "> all of it quoted"),
    ],
)
def test_quoted_replies_and_signatures_are_trimmed(text, kept):
    assert trim_quoted(text) == kept


def test_html_to_text_drops_scripts_and_keeps_blocks_apart():
    assert html_to_text("<p>a</p><p>b</p><script>x</script>").split() == ["a", "b"]


def test_message_key_follows_the_message_id_else_the_bytes():
    assert message_key("<a@x>", b"one") == message_key("<a@x>", b"two")
    assert message_key(None, b"one") != message_key(None, b"two")
    assert message_key("<a@x>", b"") != message_key("<b@x>", b"")


def test_replies_name_what_they_answer():
    ours = "<0f8fad5b-d9cb-469f-a165-70867728950e@leadflow>"
    raw = mail({"In-Reply-To": ours, "References": f"<older@acme.com> {ours}"})
    message = parse_message(raw, RECEIVED)
    assert message.references == (ours, "<older@acme.com>")
    assert message.is_reply_to_us()
    assert not parse_message(mail({"In-Reply-To": "<m0@acme.com>"}), RECEIVED).is_reply_to_us()


@pytest.mark.parametrize(
    ("case", "items", "uids"),
    [
        ("UID and date in the head (Dovecot)",
         [(b'1 (UID 7 INTERNALDATE "02-Mar-2026 10:15:00 +0000" BODY[] {3}', b"abc"), b")",
          (b'2 (UID 9 INTERNALDATE "02-Mar-2026 10:16:00 +0000" BODY[] {3}', b"def"), b")"], [7, 9]),
        ("UID after the literal (Gmail)",
         [(b'1 (INTERNALDATE "02-Mar-2026 10:15:00 +0000" BODY[] {3}', b"abc"), b" UID 7)"], [7]),
        ("no UID at all: not taken", [(b"1 (BODY[] {3}", b"abc"), b")"], []),
        ("nothing fetched", [None], []),
    ],
)
def test_fetch_answers_are_read_whatever_the_item_order(case, items, uids):
    from leadflow.io.mailbox import fetched_messages

    found = fetched_messages(items)
    assert [m.uid for m in found] == uids, case
    if found:
        assert found[0].raw == b"abc"
        assert found[0].received_at == datetime(2026, 3, 2, 10, 15, tzinfo=UTC)


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("Tuesday works.", 500, "Tuesday works."),
    ("Line one\r\n\r\n  line   two\n", 500, "Line one line two"),
    ("", 500, ""),
    ("abcdefghij klm", 10, "abcdefghi\u2026"),  # cut to the limit, the cut shown
    ("abcdefghij", 10, "abcdefghij"),  # exactly the limit: not cut
])
def test_an_alert_quotes_the_start_of_the_mail_on_one_line(text, limit, expected):
    message = MailboxMessage(key="k", message_id=None, sender_email="a@b.io", sender_name=None, subject="s",
                                  text=text, submitted_at=datetime(2026, 12, 2, tzinfo=UTC))
    assert excerpt(message, limit) == expected
