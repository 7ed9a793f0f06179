"""Spam steps and their SQL against the real CRM on SQLite and PostgreSQL: sweep, flag, restore, purge, tombstones,
intake check."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import insert, select, update

from leadflow.crm.schema import CrmTask, Lead, LeadEvent, LeadSubmission, OutboxMessage, SpamExemption, SpamTombstone
from leadflow.domain import submissions as intake
from leadflow.domain.contract import resolve_columns
from leadflow.domain.spam import email_hash
from leadflow.io.sources import MALFORMED_COLUMN, ROW_COLUMN
from leadflow.steps import intake as leads
from leadflow.steps import spam as cleanup

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
POLICY = cleanup.load_spam_policy()


def ingest_chunk(store, raw: pd.DataFrame, batch_id: str | None = None,
                 now: datetime = NOW) -> tuple[str, list[int], pd.DataFrame]:
    """Store a raw chunk the way lead-intake does (resolve headers, prepare, normalize, create lead entries).

    Returns the batch, the lead ids and the normalized chunk (what the flow hands the spam check).
    """
    batch_id = batch_id or str(uuid.uuid4())
    raw = raw.copy()
    raw[ROW_COLUMN] = range(1, len(raw) + 1)
    raw[MALFORMED_COLUMN] = pd.Series(pd.NA, index=raw.index, dtype="string")
    prepared = intake.prepare_batch(raw, resolve_columns([c for c in raw.columns if not c.startswith("_")]))
    subs = intake.normalize_batch(prepared)
    written = leads.create_lead_entries(store, subs, batch_id=batch_id, flow_run_id=None, now=now)
    return batch_id, written.lead_ids, subs


def ingest(store, rows: list[dict], batch_id: str | None = None, now: datetime = NOW) -> tuple[str, list[int]]:
    """Store rows the way lead-intake does (prepare, normalize, create lead entries); returns batch and lead ids."""
    batch_id, ids, _ = ingest_chunk(store, pd.DataFrame(rows).astype("string"), batch_id, now)
    return batch_id, ids


def row(email: str, minutes: int = 0, **extra) -> dict:
    at = (NOW - timedelta(days=1) + timedelta(minutes=minutes)).isoformat()
    return {"email": email, "submitted_at": at, "source": "web_form", "first_name": "Ann", "last_name": "Lee",
            "company": "Acme", **extra}


def lead_by_email(store, email: str):
    with store.engine.connect() as conn:
        return conn.execute(select(Lead).where(Lead.email == email)).one_or_none()


def add_task_and_message(store, lead_id: int, task_status: str = "open") -> None:
    with store.begin() as conn:
        conn.execute(insert(CrmTask).values(idempotency_key=f"t-{lead_id}-{task_status}", lead_id=lead_id,
                                            kind="qualification", status=task_status))
        conn.execute(insert(OutboxMessage).values(idempotency_key=f"o-{lead_id}", lead_id=lead_id,
                                                  kind="auto_response", channel="email", recipient="x@y.com",
                                                  subject="Hi", body="Hello", status="pending"))


def statuses(store, table, lead_id: int) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(select(table.status).where(table.lead_id == lead_id)).scalars())


def events(store, lead_id: int) -> list[tuple[str, dict]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(LeadEvent.event_type, LeadEvent.details).where(LeadEvent.lead_id == lead_id)
                            .order_by(LeadEvent.id)).all()
    return [(t, json.loads(d) if isinstance(d, str) else d) for t, d in rows]


def sweep(store, **kwargs):
    options = {"since": NOW - timedelta(days=7), "now": NOW, "batch_size": 50_000}
    return cleanup.sweep_spam(store, POLICY, **{**options, **kwargs})


# --- sweep and flag -------------------------------------------------------------------------------------------


def test_sweep_flags_spam_cancels_tasks_withdraws_outbox_and_explains(crm):
    ingest(crm, [row("bob@gmail.com"), row("bot@mailinator.com", honeypot="filled", message="cheap casino")])
    bot = lead_by_email(crm, "bot@mailinator.com")
    add_task_and_message(crm, bot.id)
    result = sweep(crm)
    assert result.flagged == 1 and result.leads_checked == 2 and result.submissions_checked == 2
    assert result.by_reason == {"disposable_domain": 1, "honeypot_filled": 1, "spam_message": 1}
    assert result.tasks_cancelled == 1 and result.outbox_withdrawn == 1
    assert result.sample[0]["email"] == "b***@m***.com"
    flagged = lead_by_email(crm, "bot@mailinator.com")
    assert (flagged.status, flagged.is_spam) == ("spam", True)
    assert flagged.spam_reasons == "disposable_domain,honeypot_filled,spam_message"
    assert flagged.spam_flagged_at is not None
    assert statuses(crm, CrmTask, bot.id) == ["cancelled"] and statuses(crm, OutboxMessage, bot.id) == ["withdrawn"]
    kinds = events(crm, bot.id)
    assert kinds[-2] == ("status_changed", {"from": "new", "to": "spam", "reason": "spam", "by": "spam-cleanup"})
    assert kinds[-1][0] == "spam_flagged"
    assert kinds[-1][1]["reasons"] == ["disposable_domain", "honeypot_filled", "spam_message"]
    assert lead_by_email(crm, "bob@gmail.com").status == "new"


def test_second_sweep_flags_nothing_new(crm):
    ingest(crm, [row("bot@mailinator.com"), row("ok@acme.example")])
    assert sweep(crm).flagged == 1
    with crm.engine.connect() as conn:
        before = conn.execute(select(LeadEvent.id)).scalars().all()
    again = sweep(crm)
    assert again.flagged == 0 and again.by_reason == {}
    with crm.engine.connect() as conn:
        assert conn.execute(select(LeadEvent.id)).scalars().all() == before


def test_dry_run_reports_and_changes_nothing(crm):
    ingest(crm, [row("bot@mailinator.com"), row("bot@mailinator.com", minutes=5, message="other")])
    result = sweep(crm, dry_run=True, batch_size=1)
    assert result.dry_run and result.flagged == 1 and result.chunks == 2
    assert lead_by_email(crm, "bot@mailinator.com").status == "new"
    assert [t for t, _ in events(crm, lead_by_email(crm, "bot@mailinator.com").id)] == ["lead_created"]


def test_bursts_are_seen_across_intake_batches_and_chunks(crm):
    # Six people from one IP within ten minutes, posted in three different intake batches: no batch alone
    # holds a burst (limit 5 per IP), and the sweep reads them two at a time.
    people = [row(f"p{i}@acme{i}.example", minutes=i, ip_address="10.0.0.9") for i in range(6)]
    for part in (people[:2], people[2:4], people[4:]):
        batch, ids = ingest(crm, part)
        assert cleanup.check_spam_at_intake(crm, POLICY, ids, batch, NOW).flagged == 0
    ingest(crm, [row("calm@acme.example", minutes=2, ip_address="10.0.0.1")])
    result = sweep(crm, batch_size=2)
    assert result.flagged == 6 and result.by_reason == {"ip_burst": 6}
    assert lead_by_email(crm, "calm@acme.example").status == "new"


def test_submissions_before_since_are_context_only(crm):
    ingest(crm, [row("old@mailinator.com", minutes=-60 * 24 * 30)])
    assert sweep(crm).flagged == 0
    assert sweep(crm, since=NOW - timedelta(days=60)).flagged == 1


def test_converted_leads_are_never_flagged_and_the_guard_sees_every_plan(crm):
    ingest(crm, [row("won@mailinator.com"), row("bot@mailinator.com")])
    with crm.begin() as conn:
        conn.execute(update(Lead).where(Lead.email == "won@mailinator.com").values(status="converted"))
    seen: list[pd.DataFrame] = []
    result = sweep(crm, guard=seen.append)
    assert result.flagged == 1 and lead_by_email(crm, "won@mailinator.com").status == "converted"
    assert seen[0]["previous_status"].tolist() == ["new"]


def test_a_failing_guard_writes_nothing(crm):
    ingest(crm, [row("bot@mailinator.com")])

    def refuse(plan):
        raise RuntimeError("guard failed")

    with pytest.raises(RuntimeError, match="guard failed"):
        sweep(crm, guard=refuse)
    assert lead_by_email(crm, "bot@mailinator.com").status == "new"


# --- intake-time check ----------------------------------------------------------------------------------------


def test_intake_check_flags_the_batch_and_counts_by_reason(crm):
    batch, ids = ingest(crm, [row("fine@acme.example"), row("bot@mailinator.com", form_fill_seconds="0.4"),
                              row("x@acme.example", first_name="<a href=x>Buy</a>")])
    result = cleanup.check_spam_at_intake(crm, POLICY, ids, batch, NOW)
    assert result.leads_checked == 3 and result.flagged == 2
    assert result.by_reason == {"disposable_domain": 1, "too_fast_form_fill": 1, "markup_in_name": 1,
                                "link_in_name": 1}
    assert lead_by_email(crm, "fine@acme.example").status == "new"
    assert lead_by_email(crm, "x@acme.example").status == "spam"
    # Another batch's submissions are not this batch's business.
    assert cleanup.check_spam_at_intake(crm, POLICY, ids, "other-batch", NOW).leads_checked == 0


def test_the_intake_check_marks_every_lead_it_judged_and_a_details_write_moves_only_those(crm):
    from leadflow.crm import progress
    from leadflow.domain.progress import LeadStep
    from leadflow.io.enrichment import DomainResults
    from leadflow.steps.enrichment import retrieve_lead_details
    from leadflow.steps.scoring import calculate_lead_scores, scoring_policy

    batch, ids = ingest(crm, [row("fine@acme.example"), row("bot@mailinator.com"), row("ok@beta.example")])
    result = cleanup.check_spam_at_intake(crm, POLICY, ids, batch, NOW, mark=True)
    assert result.flagged == 1
    with crm.engine.connect() as conn:
        assert set(progress.steps_of(conn, ids).values()) == {LeadStep.SPAM_CHECKED}
    retrieve_lead_details(crm, ids, DomainResults(), NOW, None, mark=True)
    with crm.engine.connect() as conn:
        assert set(progress.steps_of(conn, ids).values()) == {LeadStep.DETAILED}
    # A lead whose spam check has not run (another run's new submission put it back) stays where it is, written
    # now or later with the scores: its new submission is judged first.
    batch, more = ingest(crm, [row("new@gamma.example")], now=NOW + timedelta(minutes=5))
    for defer in (False, True):
        out = retrieve_lead_details(crm, more, DomainResults(), NOW, None, mark=True, defer_write=defer)
        if defer:
            calculate_lead_scores(crm, out.leads, scoring_policy(), as_of=NOW, batch_id=None, flow_run_id=None,
                                  mark=True, pending=out.pending)
        with crm.engine.connect() as conn:
            assert set(progress.steps_of(conn, more).values()) == {LeadStep.CREATED}


def judged(store, ids, batch, subs=None) -> pd.DataFrame:
    """The frame the intake check judges, read back from the database or taken from the chunk."""
    with store.engine.connect() as conn:
        return cleanup.batch_frame(conn, sorted(set(ids)), batch, subs)


def test_intake_check_from_the_chunk_judges_the_rows_reading_back_judges(crm):
    batch = str(uuid.uuid4())
    # Another run stored one of chunk 2's rows first: it is that run's business, not this batch's.
    elsewhere = row("eve@acme.example", minutes=40, message="first delivery")
    ingest(crm, [elsewhere])
    first = pd.DataFrame([
        # Export spellings for the signals, as intake resolves them.
        {**row("bob@acme.example"), "client_ip": "10.1.1.1", "form_fill_seconds": "0.3"},
        row("ann@acme.example", minutes=1, message="hello"),
        row("ann@acme.example", minutes=1, message="hello"),  # re-delivered inside the chunk
    ]).astype("string")
    _, first_ids, first_subs = ingest_chunk(crm, first, batch)
    second = pd.DataFrame([
        row("ann@acme.example", minutes=3, message="again"),  # her chunk-1 row is judged with this one
        row("carl@acme.example", minutes=4, honeypot=" x ", first_name="Carl"),
        elsewhere,
        row("eve@acme.example", minutes=42, message="second delivery"),
    ]).astype("string")
    _, ids, subs = ingest_chunk(crm, second, batch)
    from_chunk = judged(crm, ids, batch, subs)
    pd.testing.assert_frame_equal(from_chunk, judged(crm, ids, batch), check_like=True)
    assert sorted(from_chunk["email"].tolist()) == ["ann@acme.example", "ann@acme.example", "carl@acme.example",
                                                    "eve@acme.example"]
    assert from_chunk.loc[from_chunk["email"] == "eve@acme.example", "message"].tolist() == ["second delivery"]
    assert from_chunk["honeypot"].dropna().tolist() == [" x "]
    result = cleanup.check_spam_at_intake(crm, POLICY, ids, batch, NOW, subs=subs)
    assert (result.submissions_checked, result.leads_checked, result.flagged) == (4, 3, 1)
    assert result.by_reason == {"honeypot_filled": 1}
    assert lead_by_email(crm, "carl@acme.example").status == "spam"
    assert lead_by_email(crm, "eve@acme.example").status == "new"
    # Signals under an export's spelling of a column come through from the chunk as they do from the payload.
    chunk_one = judged(crm, first_ids, batch, first_subs)
    pd.testing.assert_frame_equal(chunk_one, judged(crm, first_ids, batch), check_like=True)
    assert chunk_one["ip_address"].dropna().tolist() == ["10.1.1.1"]


def test_intake_check_from_the_chunk_keeps_a_typed_false_honeypot_unfilled(crm):
    # A JSON-lines or Parquet export types the honeypot: `false` is a field left alone, `true` a filled one.
    raw = pd.DataFrame([row("quiet@acme.example"), row("bot@acme.example", minutes=1)]).astype("string")
    raw["honeypot"] = pd.array([False, True], dtype="boolean")
    batch, ids, subs = ingest_chunk(crm, raw)
    assert subs["honeypot"].tolist() == ["False", "True"]  # what the chunk itself holds
    frame = judged(crm, ids, batch, subs)
    pd.testing.assert_frame_equal(frame, judged(crm, ids, batch), check_like=True)
    result = cleanup.check_spam_at_intake(crm, POLICY, ids, batch, NOW, subs=subs)
    assert result.flagged == 1 and result.by_reason == {"honeypot_filled": 1}
    assert lead_by_email(crm, "quiet@acme.example").status == "new"
    assert lead_by_email(crm, "bot@acme.example").status == "spam"


def test_intake_check_from_the_chunk_still_sees_tombstones_and_exemptions(crm):
    ingest(crm, [row("gone@mailinator.com"), row("jo@mailinator.com")])
    sweep(crm)
    cleanup.purge_expired_spam(crm, POLICY, now=NOW + timedelta(days=31))
    cleanup.restore_spam(crm, email="jo@mailinator.com", now=NOW)
    batch, ids, subs = ingest_chunk(crm, pd.DataFrame([row("gone@mailinator.com", minutes=60),
                                                       row("jo@mailinator.com", minutes=61)]).astype("string"))
    result = cleanup.check_spam_at_intake(crm, POLICY, ids, batch, NOW, subs=subs)
    assert result.flagged == 1 and result.exempt == 1
    assert result.by_reason == {"disposable_domain": 1, "known_bad_address": 1}
    assert lead_by_email(crm, "jo@mailinator.com").status == "new"


# --- restore --------------------------------------------------------------------------------------------------


def test_restore_by_email_brings_the_lead_back_whole_and_it_stays_back(crm):
    ingest(crm, [row("jo@mailinator.com")])
    jo = lead_by_email(crm, "jo@mailinator.com")
    with crm.begin() as conn:
        conn.execute(update(Lead).where(Lead.id == jo.id).values(status="working", status_reason="contacted"))
    add_task_and_message(crm, jo.id)
    sweep(crm)
    result = cleanup.restore_spam(crm, email=" JO@mailinator.com", now=NOW, by="ops")
    assert result.restored == 1 and result.tasks_reopened == 1 and result.outbox_restored == 1
    back = lead_by_email(crm, "jo@mailinator.com")
    assert (back.status, back.status_reason, back.is_spam, back.spam_reasons) == ("working", "contacted", False, None)
    assert statuses(crm, CrmTask, jo.id) == ["open"] and statuses(crm, OutboxMessage, jo.id) == ["pending"]
    assert events(crm, jo.id)[-2:] == [
        ("status_changed", {"from": "spam", "to": "working", "reason": "spam_restored", "by": "ops"}),
        ("spam_restored", {"reasons": ["disposable_domain"], "by": "ops"}),
    ]
    # The next sweep and the next intake batch leave the restored lead alone.
    assert sweep(crm).flagged == 0 and sweep(crm).exempt == 1
    batch, ids = ingest(crm, [row("jo@mailinator.com", minutes=30, message="again")])
    assert cleanup.check_spam_at_intake(crm, POLICY, ids, batch, NOW).flagged == 0
    assert lead_by_email(crm, "jo@mailinator.com").status == "working"


def test_restore_by_reason_and_dry_run(crm):
    ingest(crm, [row("a@mailinator.com"), row("b@acme.example", honeypot="x")])
    sweep(crm)
    preview = cleanup.restore_spam(crm, reason="honeypot_filled", now=NOW, dry_run=True)
    assert preview.restored == 1 and lead_by_email(crm, "b@acme.example").status == "spam"
    done = cleanup.restore_spam(crm, reason="honeypot_filled", now=NOW)
    assert done.restored == 1 and done.by_reason == {"honeypot_filled": 1}
    assert lead_by_email(crm, "b@acme.example").status == "new"
    assert lead_by_email(crm, "a@mailinator.com").status == "spam"
    assert cleanup.restore_spam(crm, reason="honeypot_filled", now=NOW).restored == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"email": "a@b.com", "reason": "ip_burst"}, "exactly one"),
        ({"reason": "rude"}, "unknown spam reason"),
        ({"email": "not an email"}, "not an email"),
        ({"email": "nobody@acme.example"}, "no flagged lead"),
    ],
)
def test_restore_rejects_bad_requests(crm, kwargs, message):
    with pytest.raises(cleanup.SpamCleanupError, match=message):
        cleanup.restore_spam(crm, now=NOW, **kwargs)


# --- purge ----------------------------------------------------------------------------------------------------


def test_purge_after_retention_keeps_only_a_tombstone_that_later_runs_use(crm):
    ingest(crm, [row("gone@mailinator.com", message="casino"), row("keep@acme.example")])
    gone = lead_by_email(crm, "gone@mailinator.com")
    add_task_and_message(crm, gone.id)
    sweep(crm)
    early = cleanup.purge_expired_spam(crm, POLICY, now=NOW + timedelta(days=29))
    assert early.purged == 0 and lead_by_email(crm, "gone@mailinator.com") is not None
    later = NOW + timedelta(days=31)
    preview = cleanup.purge_expired_spam(crm, POLICY, now=later, dry_run=True)
    assert preview.purged == 1 and lead_by_email(crm, "gone@mailinator.com") is not None
    result = cleanup.purge_expired_spam(crm, POLICY, now=later, batch_size=1)
    assert result.purged == 1 and result.by_reason == {"disposable_domain": 1, "spam_message": 1}
    assert result.rows_deleted == {"crm_tasks": 1, "lead_events": 3, "lead_submissions": 1, "leads": 1, "outbox": 1}
    with crm.engine.connect() as conn:
        assert conn.execute(select(Lead.email)).scalars().all() == ["keep@acme.example"]
        for table in (LeadSubmission, CrmTask, OutboxMessage, LeadEvent):
            assert gone.id not in conn.execute(select(table.lead_id)).scalars().all()
        stone = conn.execute(select(SpamTombstone)).one()
    assert stone.email_hash == email_hash(pd.Series(["gone@mailinator.com"])).iloc[0]
    assert stone.reasons == "disposable_domain,spam_message"
    assert cleanup.purge_expired_spam(crm, POLICY, now=later).purged == 0
    # The same address comes back from an allowed domain: the tombstone alone flags it at intake.
    batch, ids = ingest(crm, [row("gone@mailinator.com", minutes=60, message="hello again")])
    assert cleanup.check_spam_at_intake(crm, POLICY, ids, batch, NOW).by_reason["known_bad_address"] == 1


def test_worked_leads_are_reported_for_review_not_purged(crm):
    ingest(crm, [row("done@mailinator.com"), row("qual@mailinator.com")])
    done, qual = lead_by_email(crm, "done@mailinator.com"), lead_by_email(crm, "qual@mailinator.com")
    add_task_and_message(crm, done.id, task_status="done")
    with crm.begin() as conn:
        conn.execute(update(Lead).where(Lead.id == qual.id).values(status="qualified"))
    assert sweep(crm).flagged == 2
    later = NOW + timedelta(days=31)
    result = cleanup.purge_expired_spam(crm, POLICY, now=later)
    assert result.purged == 0 and result.review == 2
    assert {(r["email"], r["why"]) for r in result.review_sample} == {("d***@m***.com", "task_done"),
                                                                      ("q***@m***.com", "status:qualified")}
    assert len(cleanup.spam_review_list(crm, POLICY, later)) == 2
    assert lead_by_email(crm, "done@mailinator.com").is_spam


def test_restoring_a_purged_address_clears_its_tombstone(crm):
    ingest(crm, [row("back@mailinator.com")])
    sweep(crm)
    cleanup.purge_expired_spam(crm, POLICY, now=NOW + timedelta(days=31))
    result = cleanup.restore_spam(crm, email="back@mailinator.com", now=NOW, by="ops")
    assert result.restored == 0 and result.tombstones_cleared == 1
    with crm.engine.connect() as conn:
        assert conn.execute(select(SpamTombstone)).all() == []
        assert conn.execute(select(SpamExemption.restored_by)).scalars().all() == ["ops"]


def test_flagging_an_assigned_lead_frees_its_reps_slot_and_restoring_takes_it_back(crm):
    from sqlalchemy import insert, select, update

    from leadflow.crm.schema import Lead, SalesRep

    _, ids = ingest(crm, [row("jo@mailinator.com")])
    with crm.begin() as conn:
        rep = conn.execute(insert(SalesRep).values(email="rep@example.com", name="Rep", territories=[], segments=[],
                                                   max_open_leads=5, open_leads=1).returning(SalesRep.id)).scalar_one()
        conn.execute(update(Lead).where(Lead.id == ids[0]).values(owner_id=rep, holds_capacity=True))

    def open_leads() -> int:
        with crm.begin() as conn:
            return conn.execute(select(SalesRep.open_leads).where(SalesRep.id == rep)).scalar_one()

    assert sweep(crm).flagged == 1 and open_leads() == 0
    assert cleanup.restore_spam(crm, email="jo@mailinator.com", now=NOW).restored == 1
    assert open_leads() == 1


# --- the repository's own reads and writes -------------------------------------------------------------------


def test_hash_lookups_read_a_small_table_whole_and_a_large_one_by_in_list(crm):
    from leadflow.crm import spam as spam_store

    stones = [f"{i:064x}" for i in range(5)]
    with crm.begin() as conn:
        for digest in stones:
            conn.execute(insert(SpamTombstone).values(email_hash=digest, reasons="ip_burst", policy_version="v",
                                                      flagged_at=NOW, purged_at=NOW))
    with crm.engine.connect() as conn:
        # More hashes asked than tombstones kept: the table is read whole.
        assert spam_store.tombstoned(conn, [*stones[:2], *(f"{i:064x}" for i in range(100, 110))]) == set(stones[:2])
        # Fewer: an IN-list; a Series of hashes with repeats counts each once.
        assert spam_store.tombstoned(conn, pd.Series([stones[3], stones[3], "f" * 64])) == {stones[3]}
        assert spam_store.tombstoned(conn, []) == set() and spam_store.exempted(conn, stones) == set()


def test_sweep_reads_page_by_time_and_id_through_equal_times(crm):
    from leadflow.crm import spam as spam_store

    ingest(crm, [row(f"p{i}@acme.example", minutes=i // 2, client_ip=f"10.0.0.{i}") for i in range(5)])
    seen: list[int] = []
    after = None
    with crm.engine.connect() as conn:
        scope = spam_store.sweep_scope(conn, NOW - timedelta(days=2))
        assert "client_ip" in scope.keys and "email" in scope.keys
        assert spam_store.sweep_scope(conn, NOW).keys == ()
        while True:
            rows, extracted, after = spam_store.sweep_chunk(conn, scope, ["client_ip"], after, 2)
            if after is None:
                assert rows.empty
                break
            assert len(rows) <= 2 and "raw_payload" not in rows.columns
            assert extracted["client_ip"][1] == ["text"] * len(rows)
            seen.extend(rows["submission_id"].tolist())
    assert len(seen) == 5 and len(set(seen)) == 5
    # Submissions stored after the sweep began are not its business (the intake check judged them).
    ingest(crm, [row("late@acme.example")])
    with crm.engine.connect() as conn:
        rows = spam_store.sweep_chunk(conn, scope, None, None, 10)[0]
    assert sorted(rows["submission_id"].tolist()) == sorted(seen) and "raw_payload" in rows.columns


def test_restore_by_reason_matches_whole_codes_only(crm):
    from leadflow.crm import spam as spam_store

    _, ids = ingest(crm, [row("a@acme.example"), row("b@acme.example"), row("c@acme.example")])
    with crm.begin() as conn:
        for lead_id, reasons in zip(ids, ["ip_burst", "email_burst,ip_burst", "email_burst"], strict=True):
            conn.execute(update(Lead).where(Lead.id == lead_id).values(is_spam=True, status="spam",
                                                                        spam_reasons=reasons))
    with crm.begin() as conn:
        found = spam_store.lock_flagged(conn, reason="ip_burst")
        assert found["lead_id"].tolist() == ids[:2]
        assert spam_store.lock_flagged(conn, email="c@acme.example")["reasons"].tolist() == ["email_burst"]


def test_delete_leads_removes_every_row_that_references_them(crm):
    from collections import Counter

    from leadflow.crm import spam as spam_store

    _, ids = ingest(crm, [row("gone@acme.example"), row("kept@acme.example")])
    add_task_and_message(crm, ids[0])
    deleted: Counter = Counter()
    with crm.begin() as conn:
        spam_store.delete_leads(conn, [ids[0]], deleted)
    assert deleted == {"crm_tasks": 1, "lead_events": 1, "lead_submissions": 1, "leads": 1, "outbox": 1}
    assert lead_by_email(crm, "gone@acme.example") is None and lead_by_email(crm, "kept@acme.example") is not None
