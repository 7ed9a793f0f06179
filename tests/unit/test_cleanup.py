"""The pure parts of spam cleanup on tiny tables: payload signals, the sweep window, judging per lead, and the plans,
events and results of flagging, restoring and purging (the SQL side is in tests/crm/test_spam_store.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from leadflow.config.policy import load_policy
from leadflow.domain import spam as cleanup
from leadflow.domain.spam import SpamPolicy, email_hash
from leadflow.domain.submissions import PAYLOAD_COLUMN

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
POLICY = load_policy(SpamPolicy, "spam")


# --- pure helpers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"ip_address": "1.2.3.4", "honeypot": "x", "form_fill_seconds": "0.5"}, ("1.2.3.4", "x", 0.5)),
        # Export spellings are recognised the way intake recognises them.
        ({"IP Address": "9.9.9.9", "Form Fill Seconds": 3}, ("9.9.9.9", None, 3.0)),
        ({"client_ip": "8.8.8.8"}, ("8.8.8.8", None, None)),
        # A JSON false honeypot is an untouched field; blanks are missing.
        ({"honeypot": False, "ip": "  "}, (None, None, None)),
        ({"honeypot": True}, (None, "true", None)),
        ({"form_fill_seconds": "soon"}, (None, None, None)),
        ({}, (None, None, None)),
    ],
)
def test_payload_signals(payload, expected):
    frame = cleanup.payload_signals([payload])
    got = tuple(None if pd.isna(v) else v for v in frame.iloc[0][list(cleanup.SIGNAL_COLUMNS)])
    assert got == expected
    assert len(frame) == 1


def test_payload_signals_read_json_text_too():
    frame = cleanup.payload_signals(['{"ip": "1.1.1.1"}', None])
    assert frame["ip_address"].tolist()[0] == "1.1.1.1" and pd.isna(frame["ip_address"].iloc[1])


@pytest.mark.parametrize("key", [b"k", b"test-only-email-hash-key-0123456789", b"x" * 64, b"long key " * 20])
def test_email_hash_is_hmac_sha256_of_the_trimmed_lower_case_email(key):
    emails = pd.Series([" Jo@Acme.Example ", "ann@acme.example", None, "   ", "zoë@exämple.de"], dtype="string")
    expected = [hmac.new(key, e.strip().lower().encode(), hashlib.sha256).hexdigest() if e and e.strip() else None
                for e in emails.to_numpy(dtype=object, na_value=None)]
    assert email_hash(emails, key).to_numpy(dtype=object, na_value=None).tolist() == expected


def _sql_extracted(payload: dict, key: str) -> tuple[object, str | None]:
    """One payload key as the store hands it over from SQLite's json_extract and json_type."""
    if key not in payload:
        return None, None
    value = payload[key]
    kind = {str: cleanup.JSON_TEXT, bool: cleanup.JSON_TRUE if value else cleanup.JSON_FALSE,
            int: cleanup.JSON_NUMBER, float: cleanup.JSON_NUMBER, type(None): cleanup.JSON_NULL}.get(type(value),
                                                                                             cleanup.JSON_OTHER)
    # SQLite gives booleans as 1/0 and lists or objects as their JSON text.
    shown = int(value) if isinstance(value, bool) else json.dumps(value) if kind == cleanup.JSON_OTHER else value
    return shown, kind


SIGNAL_PAYLOADS = [
    {"ip_address": "1.2.3.4", "honeypot": "x", "form_fill_seconds": "0.5"},
    {"IP Address": "9.9.9.9", "Form Fill Seconds": 3},
    {"client_ip": "8.8.8.8", "ip_address": "  "},
    {"ip_address": " 1.1.1.1 ", "client_ip": "2.2.2.2"},
    {"honeypot": False, "ip": "  "},
    {"honeypot": True, "form_fill_seconds": False},
    {"honeypot": 0, "form_fill_seconds": True},
    {"honeypot": "", "form_fill_seconds": "soon", "Form Fill Seconds": 2},
    {"form_fill_seconds": None, "Form Fill Seconds": 4.25},
    {"ip_address": 1234, "honeypot": 2.5},
    {"ip_address": ["1.2.3.4"], "honeypot": {"a": 1}},
    {"ip": True, "honeypot": None},
    {"email": "x@acme.example"},
    {},
]


def test_signals_extracted_in_sql_read_like_parsed_payloads():
    headers = cleanup.signal_headers({key for payload in SIGNAL_PAYLOADS for key in payload})
    assert headers["ip_address"] == ["IP Address", "ip_address", "client_ip", "ip"]
    keys = {}
    for key in {name for names in headers.values() for name in names}:
        pairs = [_sql_extracted(payload, key) for payload in SIGNAL_PAYLOADS]
        keys[key] = ([v for v, _ in pairs], [t for _, t in pairs])
    signals, needs = cleanup.extracted_signals(keys, headers, len(SIGNAL_PAYLOADS))
    # Numbers as IP or honeypot, lists and objects: only Python renders them as the rules have always read them.
    assert np.flatnonzero(needs).tolist() == [6, 9, 10]
    parsed = cleanup.payload_signals(SIGNAL_PAYLOADS, headers)
    for column in parsed.columns:
        signals.loc[needs, column] = parsed.loc[needs, column].to_numpy()
    pd.testing.assert_frame_equal(signals, parsed)
    assert signals["honeypot"].to_numpy(dtype=object, na_value=None).tolist()[4:8] == [None, "true", "0", None]
    assert signals["form_fill_seconds"].tolist()[5:7] == [0.0, 1.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, NOW - timedelta(days=POLICY.recheck_days)),
        ("2025-05-01", datetime(2025, 5, 1, tzinfo=UTC)),
        ("2025-05-01T10:00:00+02:00", datetime(2025, 5, 1, 8, tzinfo=UTC)),
    ],
)
def test_parse_since(text, expected):
    assert cleanup.parse_since(text, NOW, POLICY) == expected


@pytest.mark.parametrize(("text", "message"), [("yesterday-ish", "ISO date"), ("last tuesday", "ISO date"),
                                             ("2030-01-01", "future")])
def test_parse_since_rejects_bad_dates(text, message):
    with pytest.raises(cleanup.SpamCleanupError, match=message):
        cleanup.parse_since(text, NOW, POLICY)



# --- judging ----------------------------------------------------------------------------------------------------


def raw_rows(*rows: dict) -> pd.DataFrame:
    """Submissions joined with their leads as the CRM reads them back (naive text times, 0/1 flags, JSON payloads)."""
    base = {"source": "web_form", "message": None, "raw_payload": "{}", "email_domain": None, "first_name": "Ann",
            "last_name": "Lee", "status": "new", "is_spam": 0}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_submission_frame_types_the_rows_and_reads_their_signals():
    frame = cleanup.submission_frame(raw_rows(
        {"submission_id": 1, "lead_id": 7, "submitted_at": "2025-05-31 10:00:00.123456", "email": "a@acme.example",
         "raw_payload": json.dumps({"client_ip": "1.2.3.4", "honeypot": False, "form_fill_seconds": "0.5"})},
    ))
    assert "raw_payload" not in frame.columns
    assert frame["submitted_at"].iloc[0] == pd.Timestamp("2025-05-31 10:00:00.123456", tz="UTC")
    assert str(frame["submitted_at"].dtype) == "datetime64[us, UTC]"
    assert (frame["ip_address"].iloc[0], frame["form_fill_seconds"].iloc[0]) == ("1.2.3.4", 0.5)
    assert pd.isna(frame["honeypot"].iloc[0]) and frame["is_spam"].dtype == bool
    assert frame["email_hash"].iloc[0] == email_hash(pd.Series(["a@acme.example"])).iloc[0]


def test_judge_submissions_gives_one_verdict_per_lead_with_every_rule_of_its_submissions():
    at = "2025-05-31 10:00:00"
    frame = cleanup.submission_frame(raw_rows(
        {"submission_id": 1, "lead_id": 1, "submitted_at": at, "email": "jo@acme.example",
         "raw_payload": json.dumps({"honeypot": "x"})},
        {"submission_id": 2, "lead_id": 1, "submitted_at": at, "email": "jo@acme.example", "message": "cheap casino"},
        {"submission_id": 3, "lead_id": 2, "submitted_at": at, "email": "ann@acme.example", "message": "hello"},
        {"submission_id": 4, "lead_id": 3, "submitted_at": at, "email": "x@mailinator.com", "status": "working"},
    ))
    verdicts = cleanup.judge_submissions(frame, POLICY, set()).sort_values("lead_id", ignore_index=True)
    assert verdicts["lead_id"].tolist() == [1, 3]
    assert verdicts["reasons"].tolist() == ["honeypot_filled,spam_message", "disposable_domain"]
    assert verdicts["status"].tolist() == ["new", "working"]
    assert verdicts["email_hash"].tolist() == frame.set_index("lead_id").loc[[1, 3], "email_hash"].drop_duplicates(
    ).tolist()
    known = set(frame.loc[frame["lead_id"] == 2, "email_hash"])
    again = cleanup.judge_submissions(frame, POLICY, known)
    assert again.set_index("lead_id").loc[2, "reasons"] == "known_bad_address"
    clean = cleanup.judge_submissions(frame.loc[frame["lead_id"] == 2], POLICY, set())
    assert clean.empty and list(clean.columns) == ["lead_id", "email", "email_hash", "status", "is_spam", "reasons"]


def test_from_chunk_takes_the_stored_rows_from_the_chunk_and_says_which_are_earlier():
    subs = pd.DataFrame({
        "idempotency_key": ["k1", "k2", "k1"],  # k1 re-delivered inside the chunk: its first row was stored
        "submitted_at": pd.to_datetime(["2025-05-31T10:00:00.1234567Z", "2025-05-31T11:00:00Z",
                                        "2025-05-31T12:00:00Z"], utc=True, format="ISO8601"),
        "source": ["web_form", "event", "web_form"],
        "message": ["first", None, "repeat"],
        "ip_address": ["1.1.1.1", None, None],
        "honeypot": ["False", "x", None],
        "form_fill_seconds": ["3", None, None],
        PAYLOAD_COLUMN: [json.dumps({"honeypot": False}), json.dumps({"honeypot": "x"}), "{}"],
    })
    # k0 was stored by an earlier chunk of the batch; it is read back, not taken from here.
    stored = pd.DataFrame({"submission_id": [10, 11, 12], "idempotency_key": ["k0", "k1", "k2"],
                           "lead_id": [5, 6, 7]})
    here, mine = cleanup.from_chunk(stored, subs)
    assert mine.tolist() == [False, True, True]
    assert here["submission_id"].tolist() == [11, 12] and here["lead_id"].tolist() == [6, 7]
    assert here["message"].tolist()[0] == "first" and here["source"].tolist() == ["web_form", "event"]
    # A typed false honeypot reads "False" in the chunk but the payload says the field was left alone.
    assert pd.isna(here["honeypot"].iloc[0]) and here["honeypot"].iloc[1] == "x"
    assert here["form_fill_seconds"].tolist()[0] == 3.0
    assert here["submitted_at"].iloc[0] == pd.Timestamp("2025-05-31T10:00:00.123456Z")


def test_with_leads_joins_the_leads_as_they_are_now_in_submission_order():
    frame = pd.DataFrame({"submission_id": [3, 1, 2], "lead_id": [2, 1, 9]})
    leads = pd.DataFrame({"lead_id": [1, 2], "email": ["a@x.example", "b@x.example"], "email_domain": [None, None],
                          "first_name": [None, None], "last_name": [None, None], "status": ["new", "spam"],
                          "is_spam": [0, 1]})
    joined = cleanup.with_leads(frame, leads)
    # A lead gone in between (id 9) takes its submissions with it.
    assert joined["submission_id"].tolist() == [1, 3] and joined["is_spam"].tolist() == [False, True]
    assert joined["email_hash"].notna().all()


# --- flagging ---------------------------------------------------------------------------------------------------


def verdicts(**columns) -> pd.DataFrame:
    base = {"lead_id": [1, 2, 3, 4, 5], "email": [f"p{i}@x.example" for i in range(5)],
            "email_hash": [f"h{i}" for i in range(5)], "status": ["new", "converted", "spam", "working", "won"],
            "is_spam": [False, False, False, True, False], "reasons": ["ip_burst"] * 5}
    return pd.DataFrame({**base, **columns})


def test_flag_candidates_skip_spam_and_won_leads():
    assert cleanup.flag_candidates(verdicts())["lead_id"].tolist() == [1]


def test_flag_plan_judges_the_leads_as_they_are_now():
    candidates = verdicts(status=["new"] * 5, is_spam=[False] * 5)
    current = pd.DataFrame({"lead_id": [1, 2, 3, 4], "current_status": ["working", "won", "new", "spam"],
                            "current_reason": ["contacted", None, None, "spam"],
                            "current_is_spam": [0, 0, 1, 1]})
    plan = cleanup.flag_plan(candidates, current)
    # 2 was won meanwhile, 3 and 4 flagged by another run, 5 is gone.
    assert plan["lead_id"].tolist() == [1]
    assert (plan["previous_status"].iloc[0], plan["previous_reason"].iloc[0]) == ("working", "contacted")


def test_flag_events_remember_what_a_restore_puts_back():
    plan = pd.DataFrame({"lead_id": [1, 2], "reasons": ["honeypot_filled,ip_burst", "ip_burst"],
                         "previous_status": ["working", "new"], "previous_reason": ["contacted", np.nan]})
    events = cleanup.flag_events(plan, {1: [10, 11]}, {2: [20]}, policy=POLICY, now=NOW, by="intake",
                                 batch_id="b1", flow_run_id="r1")
    assert events["event_type"].tolist() == ["status_changed", "status_changed", "spam_flagged", "spam_flagged"]
    assert events["lead_id"].tolist() == [1, 2, 1, 2]
    assert set(events["batch_id"]) == {"b1"} and set(events["flow_run_id"]) == {"r1"}
    assert json.loads(events["details"].iloc[0]) == {"from": "working", "to": "spam", "reason": "spam", "by": "intake"}
    assert json.loads(events["details"].iloc[2]) == {
        "reasons": ["honeypot_filled", "ip_burst"], "policy_version": POLICY.version, "by": "intake",
        "from_status": "working", "from_reason": "contacted", "cancelled_tasks": [10, 11], "withdrawn_outbox": []}
    second = json.loads(events["details"].iloc[3])
    assert second["from_reason"] is None and second["withdrawn_outbox"] == [20] and second["cancelled_tasks"] == []


def test_flag_results_fold_chunks_cap_the_sample_and_publish_no_lead_ids():
    total = cleanup.FlagResult()
    for n in range(3):
        part = cleanup.FlagResult(flagged=2, exempt=1, tasks_cancelled=n, outbox_withdrawn=1,
                                  by_reason=Counter({"ip_burst": 2}), lead_ids=[n],
                                  sample=[{"lead_id": i} for i in range(15)])
        total.add(part)
    assert (total.flagged, total.exempt, total.tasks_cancelled, total.outbox_withdrawn) == (6, 3, 3, 3)
    assert total.by_reason == {"ip_burst": 6} and len(total.sample) == cleanup.SAMPLE_SIZE
    assert total.lead_ids == [] and "lead_ids" not in total.as_dict()
    assert cleanup.reason_counts(pd.Series(["a,b", None, "b"])) == {"a": 1, "b": 2}


def test_sample_rows_mask_emails_and_keep_only_the_asked_columns():
    frame = pd.DataFrame({"lead_id": [1, 2], "email": ["jane@example.com", "x@y.example"], "phone": ["1", "2"],
                          "reasons": ["ip_burst", None]})
    assert cleanup.sample_rows(frame, ["reasons"], limit=5) == [
        {"lead_id": 1, "email": "j***@e***.com", "reasons": "ip_burst"},
        {"lead_id": 2, "email": "***@***.example", "reasons": None},
    ]


# --- restoring --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"email": "a@b.com", "reason": "ip_burst"}, "exactly one"),
        ({"reason": "rude"}, "unknown spam reason"),
        ({"email": "not an email"}, "not an email"),
    ],
)
def test_restore_target_rejects_bad_requests(kwargs, message):
    with pytest.raises(cleanup.SpamCleanupError, match=message):
        cleanup.restore_target(kwargs.get("email"), kwargs.get("reason"))


def test_restore_target_normalizes_the_email():
    assert cleanup.restore_target(None, "ip_burst") == (None, None)
    email, digest = cleanup.restore_target(" JO@Mailinator.com", None)
    assert email == "jo@mailinator.com" and digest == email_hash(pd.Series(["jo@mailinator.com"])).iloc[0]


def test_restore_plan_puts_back_the_status_before_the_flag():
    leads = pd.DataFrame({"lead_id": [1, 2, 3], "email": ["a@x.example", "b@x.example", "c@x.example"],
                          "status": ["spam", "spam", "working"], "reasons": ["ip_burst", "", "honeypot_filled"]})
    flags = {1: {"from_status": "qualified", "from_reason": "fit", "cancelled_tasks": [7],
                 "withdrawn_outbox": [8, 9]},
             3: {"from_status": "new", "cancelled_tasks": [10]}}
    plan, tasks, outbox = cleanup.restore_plan(leads, flags)
    # No flag event: back to new; a status a person set since the flag is kept.
    assert plan["to_status"].tolist() == ["qualified", "new", "working"]
    assert [None if pd.isna(r) else r for r in plan["to_reason"]] == ["fit", None, None]
    assert tasks == [7, 10] and outbox == [8, 9]
    assert plan["hash"].tolist() == email_hash(leads["email"]).tolist()
    events = cleanup.restore_events(plan, NOW, "ops")
    assert events["event_type"].tolist() == ["status_changed"] * 3 + ["spam_restored"] * 3
    assert [json.loads(d) for d in events["details"]] == [
        {"from": "spam", "to": "qualified", "reason": "spam_restored", "by": "ops"},
        {"from": "spam", "to": "new", "reason": "spam_restored", "by": "ops"},
        {"from": "working", "to": "working", "reason": "spam_restored", "by": "ops"},
        {"reasons": ["ip_burst"], "by": "ops"}, {"reasons": [], "by": "ops"},
        {"reasons": ["honeypot_filled"], "by": "ops"},
    ]


# --- purging ----------------------------------------------------------------------------------------------------


def test_review_reasons_hold_leads_a_rep_worked():
    leads = pd.DataFrame({"lead_id": [1, 2, 3, 4], "status": ["spam", "spam", "spam", "qualified"]})
    before = {1: "new", 2: "discovery_call_booked", 3: None}
    assert cleanup.review_reasons(leads, {1}, before) == ["task_done", "status:discovery_call_booked", None,
                                                          "status:qualified"]


def test_tombstones_keep_only_a_hash_the_reasons_and_the_times():
    doomed = pd.DataFrame({"lead_id": [1, 2], "email": ["Gone@Mailinator.com", "x@y.example"],
                           "reasons": ["disposable_domain", None],
                           "flagged_at": ["2025-04-01 10:00:00.000000", "2025-04-02 11:30:00"]})
    stones = cleanup.tombstone_rows(doomed, POLICY, NOW)
    assert list(stones.columns) == ["email_hash", "reasons", "policy_version", "flagged_at", "purged_at"]
    assert stones["email_hash"].iloc[0] == email_hash(pd.Series(["gone@mailinator.com"])).iloc[0]
    assert stones["reasons"].tolist() == ["disposable_domain", ""]
    assert stones["flagged_at"].tolist() == [pd.Timestamp("2025-04-01 10:00", tz="UTC"),
                                             pd.Timestamp("2025-04-02 11:30", tz="UTC")]
    assert set(stones["policy_version"]) == {POLICY.version} and set(stones["purged_at"]) == {pd.Timestamp(NOW)}
