"""The nightly sweep on a mixed table (both databases): its decisions against the spam rules applied to each stored
row as it is, payload parsed in Python, and its dry run against the real run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import insert, select

from leadflow.crm.schema import Lead, LeadEvent, LeadSubmission, SpamTombstone
from leadflow.domain import spam as rules
from leadflow.steps import spam as cleanup

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=7)
POLICY = cleanup.load_spam_policy()
# Two reasons to flag (honeypot and known-bad addresses still alone): the rules' combinations decide, not one rule.
STRICT = POLICY.model_copy(update={"min_reasons_to_flag": 2})
CALM = {"ip_address": "10.9.9.9", "form_fill_seconds": 30}

# (email, first name, status, [(minutes after SINCE + 1 day, source, message, payload)])
LEADS: list[tuple[str, str, str, list[tuple[float, str, str | None, dict]]]] = [
    ("ann@acme.example", "Ann", "new", [(0, "web_form", "Please call", {"ip_address": "10.0.0.1",
                                                                       "form_fill_seconds": 40})]),
    ("bot@mailinator.com", "Bob", "new", [(1, "web_form", None, {"ip_address": "10.0.0.2", "honeypot": "x"})]),
    # Export spellings of the signals, blanks that fall through to the next spelling, typed JSON values.
    ("exp@acme.example", "Eve", "working", [(2, "web_form", None, {"IP Address": "10.0.0.3", "ip_address": " ",
                                                                   "Form Fill Seconds": 0.5})]),
    ("hp@acme.example", "Hal", "new", [(3, "web_form", None, {"honeypot": False, "client_ip": "10.0.0.4",
                                                              "form_fill_seconds": True})]),
    ("hp2@acme.example", "Hana", "new", [(4, "web_form", None, {"honeypot": True, "ip": "10.0.0.5"})]),
    ("hp3@acme.example", "Hugo", "new", [(5, "web_form", None, {"honeypot": 0, "ip_address": 1234})]),
    ("odd@acme.example", "Olga", "new", [(6, "web_form", None, {"ip_address": ["10.0.0.6"], "honeypot": {"a": 1},
                                                                "form_fill_seconds": "soon"})]),
    ("fast@acme.example", "Xkqzvbw", "new", [(7, "web_form", "best casino bonus",
                                             {"ip_address": "10.0.0.7", "form_fill_seconds": "1"})]),
    ("link@acme.example", "<a href=x>Buy</a>", "new", [(8, "web_form", "see http://a.io http://b.io http://c.io",
                                                       CALM)]),
    ("won@mailinator.com", "Wanda", "converted", [(9, "web_form", "casino", {"honeypot": "yes"})]),
    ("again@mailinator.com", "Al", "spam", [(10, "web_form", None, CALM)]),
    ("gone@acme.example", "Gus", "new", [(11, "web_form", None, CALM)]),
    # One person four times in ten minutes (limit 3): an email burst, read across chunks.
    ("many@acme.example", "Mia", "new", [(20 + i, "web_form", f"try {i}", CALM) for i in range(4)]),
    # Six people from one IP in ten minutes (limit 5), and two at a booth kiosk that bursts legitimately.
    *[(f"ip{i}@acme{i}.example", "Ina", "new", [(40 + i, "web_form", None, {"ip_address": "::ffff:66.6.6.6"})])
      for i in range(6)],
    *[(f"booth{i}@acme.example", "Bo", "new", [(60 + i, "event", None, {"ip_address": "77.7.7.7"})])
      for i in range(7)],
    # Before the window (even its burst margin): read by nobody.
    ("old@mailinator.com", "Otto", "new", [(-60 * 24 * 30, "web_form", None, {"honeypot": "x"})]),
]


def fill(store) -> None:
    """Write the leads and their submissions as stored rows (typed JSON payloads, which no CSV intake makes)."""
    at = SINCE + timedelta(days=1)
    with store.begin() as conn:
        for email, first, status, subs in LEADS:
            first_at = at + timedelta(minutes=subs[0][0])
            lead_id = conn.execute(insert(Lead).values(
                email=email, email_domain=email.split("@")[1], first_name=first, last_name="Lee",
                first_touch_at=first_at, first_touch_source="web_form", last_touch_at=first_at,
                last_touch_source="web_form", status=status, is_spam=status == "spam", created_at=at, updated_at=at,
            ).returning(Lead.id)).scalar_one()
            for minutes, source, message, payload in subs:
                when = at + timedelta(minutes=minutes)
                conn.execute(insert(LeadSubmission).values(
                    idempotency_key=f"{email}-{minutes}", lead_id=lead_id, batch_id="mixed", source=source,
                    submitted_at=when, received_at=when, message=message,
                    raw_payload={"email": email, **payload},
                ))
        conn.execute(insert(SpamTombstone).values(
            email_hash=rules.email_hash(pd.Series(["gone@acme.example"])).iloc[0], reasons="honeypot_filled",
            policy_version="old", flagged_at=NOW - timedelta(days=60), purged_at=NOW - timedelta(days=20)))


def expected_flags(store, policy) -> dict[int, str]:
    """Leads the spam rules flag when every stored row in the window is judged as it is (payload parsed here)."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(LeadSubmission.id.label("submission_id"), LeadSubmission.lead_id, LeadSubmission.submitted_at,
                   LeadSubmission.source, LeadSubmission.message, LeadSubmission.raw_payload, Lead.email,
                   Lead.email_domain, Lead.first_name, Lead.last_name, Lead.status, Lead.is_spam)
            .join(Lead, Lead.id == LeadSubmission.lead_id)
            .where(LeadSubmission.submitted_at >= SINCE - timedelta(minutes=policy.burst_window_minutes))
            .order_by(LeadSubmission.submitted_at, LeadSubmission.id)
        ).mappings().all()
        tombstones = set(conn.execute(select(SpamTombstone.email_hash)).scalars())
    signals = [rules.payload_signals([row["raw_payload"]]).iloc[0] for row in rows]
    frame = pd.DataFrame([{**{k: v for k, v in row.items() if k != "raw_payload"}, **signal.to_dict()}
                          for row, signal in zip(rows, signals, strict=True)])
    frame = rules.typed_leads(rules.typed_submissions(frame))
    verdict = rules.detect_spam(frame, policy, tombstones)
    # The rules that need no other row give the same answer for a row on its own.
    local = [c for c in rules.RULE_COLUMNS if c not in ("rule_ip_burst", "rule_email_burst")]
    for i in range(len(frame)):
        alone = rules.detect_spam(frame.iloc[[i]], policy, tombstones)
        assert alone[local].iloc[0].tolist() == verdict[local].iloc[i].tolist()
    spam = verdict.loc[verdict["is_spam"]]
    flagged: dict[int, set[str]] = {}
    for i, row in spam.iterrows():
        lead = frame.loc[i]
        if lead["is_spam"] or lead["status"] in (*rules.NEVER_FLAGGED, rules.SPAM_STATUS):
            continue
        fired = {c.removeprefix("rule_") for c in rules.RULE_COLUMNS if row[c]}
        flagged.setdefault(int(lead["lead_id"]), set()).update(fired)
    return {lead_id: ",".join(sorted(reasons)) for lead_id, reasons in flagged.items()}


def flags_now(store) -> dict[int, str]:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(Lead.id, Lead.spam_reasons).where(Lead.is_spam, Lead.status == "spam",
                                                                          Lead.email != "again@mailinator.com")).all())


@pytest.mark.parametrize("policy", [POLICY, STRICT], ids=["default", "two-reasons"])
def test_sweep_decides_like_the_rules_on_every_stored_row(crm, policy):
    fill(crm)
    expected = expected_flags(crm, policy)
    # Three rows a chunk: bursts straddle chunks, and the email burst's rows are read in two of them.
    result = cleanup.sweep_spam(crm, policy, since=SINCE, now=NOW, batch_size=3)
    assert flags_now(crm) == expected
    assert result.flagged == len(expected) and result.chunks > 5
    assert result.by_reason == rules.reason_counts(pd.Series(list(expected.values())))
    # Not read at all: the lead before the window; never flagged: the converted one and the one already spam.
    assert result.leads_checked == len(LEADS) - 1 and result.submissions_checked == sum(
        len(subs) for *_, subs in LEADS) - 1
    if policy is POLICY:
        assert {email for email, *_ in LEADS if email.startswith(("ip", "many", "gone", "hp2", "hp3", "odd"))} <= {
            e for (e,) in _emails(crm, expected)}
        assert not any(e.startswith(("booth", "won", "old", "ann")) for (e,) in _emails(crm, expected))


def _emails(store, flags: dict[int, str]) -> list[tuple[str]]:
    with store.engine.connect() as conn:
        return conn.execute(select(Lead.email).where(Lead.id.in_(list(flags)))).all()


def test_dry_run_sweep_reports_what_the_real_run_does_and_writes_nothing(crm):
    fill(crm)
    with crm.engine.connect() as conn:
        before = conn.execute(select(Lead.id, Lead.status, Lead.is_spam).order_by(Lead.id)).all()
        events = conn.execute(select(LeadEvent.id)).scalars().all()
    dry = cleanup.sweep_spam(crm, POLICY, since=SINCE, now=NOW, batch_size=3, dry_run=True)
    with crm.engine.connect() as conn:
        assert conn.execute(select(Lead.id, Lead.status, Lead.is_spam).order_by(Lead.id)).all() == before
        assert conn.execute(select(LeadEvent.id)).scalars().all() == events
    real = cleanup.sweep_spam(crm, POLICY, since=SINCE, now=NOW, batch_size=3)
    assert dry.dry_run and not real.dry_run and real.flagged > 10
    keys = ("flagged", "by_reason", "exempt", "submissions_checked", "leads_checked", "chunks")
    assert {k: getattr(dry, k) for k in keys} == {k: getattr(real, k) for k in keys}
    assert sorted(json.dumps(s, sort_keys=True) for s in dry.sample) == sorted(
        json.dumps(s, sort_keys=True) for s in real.sample)
