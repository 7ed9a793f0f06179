"""Retention on SQLite and PostgreSQL: what is past its period is stripped or deleted, the rest untouched, a dry run
only counts, a second pass finds nothing; erasure also reaches backfill window files and purged spam tombstones."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select, update

from leadflow.crm.inbox import submit_lead
from leadflow.crm.schema import (
    LeadInboxRow,
    LeadSubmission,
    MailboxMessageRow,
    QuarantineRecord,
    SpamTombstone,
    WebhookDelivery,
)
from leadflow.domain.privacy import keyed_hash
from leadflow.io import privacy_files
from leadflow.steps.people import erase_people, erase_person, export_person
from leadflow.steps.retention import RetentionPeriods, apply_retention
from tests.helpers import lead, run_intake, snapshot, write_csv

NOW = datetime.now(UTC).replace(microsecond=0)
OLD = NOW - timedelta(days=400)
KEY = "test-only-hash-key"


def _age(path: Path, days: int) -> None:
    stamp = (NOW - timedelta(days=days)).timestamp()
    os.utime(path, (stamp, stamp))


@pytest.fixture
def aged(crm, tmp_path):
    """Two submissions, two quarantined rows, three inbox rows and files; one of each (two inbox rows) made old."""
    rows = [lead("old@acme.com", first_name="Olga", ip_address="203.0.113.7"),
            lead("new@acme.com", first_name="Nina", ip_address="198.51.100.9"),
            lead("not-an-address"), lead("also not one")]
    run_intake(crm, write_csv(tmp_path / "leads.csv", rows))
    old_inbox, unprocessed = submit_lead(crm, {"email": "a@acme.com"}), submit_lead(crm, {"email": "b@acme.com"})
    submit_lead(crm, {"email": "c@acme.com"})
    with crm.begin() as conn:
        subs = LeadSubmission.__table__
        conn.execute(update(subs).where(subs.c.raw_payload["email"].as_string() == "old@acme.com")
                     .values(received_at=OLD))
        quarantine = QuarantineRecord.__table__
        first = conn.execute(select(quarantine.c.id).order_by(quarantine.c.id)).scalars().first()
        conn.execute(update(quarantine).where(quarantine.c.id == first).values(created_at=OLD))
        inbox = LeadInboxRow.__table__
        conn.execute(update(inbox).where(inbox.c.id == old_inbox).values(processed_at=OLD, received_at=OLD))
        # Never processed: however old, it still waits for intake.
        conn.execute(update(inbox).where(inbox.c.id == unprocessed).values(received_at=OLD))
        conn.execute(WebhookDelivery.__table__.insert(), [
            {"vendor": "typeform", "delivery_id": "old", "received_at": NOW - timedelta(days=91)},
            {"vendor": "typeform", "delivery_id": "new", "received_at": NOW - timedelta(days=89)}])
        conn.execute(MailboxMessageRow.__table__.insert(), [
            {"message_key": "a" * 64, "outcome": "inquiry", "taken_at": OLD, "handled_at": OLD},
            # Never moved or flagged: it is still in the folder, and without its row the next run would take it again.
            {"message_key": "b" * 64, "outcome": "touch", "taken_at": OLD, "handled_at": None},
            {"message_key": "c" * 64, "outcome": "skipped", "taken_at": NOW, "handled_at": NOW}])
    outbox_dir, backfill_dir = tmp_path / "outbox", tmp_path / "backfill"
    outbox_dir.mkdir()
    for name, days in (("old.eml", 40), ("new.eml", 2)):
        (outbox_dir / name).write_text("To: x@acme.com\n\nhello", encoding="utf-8")
        _age(outbox_dir / name, days)
    for plan, days in (("key1/month-20240101-20240331", 45), ("key2/month-20250101-20250331", 3)):
        windows = backfill_dir / plan / "windows"
        windows.mkdir(parents=True)
        (windows / "2024-01.jsonl").write_text('{"email": "old@acme.com"}\n', encoding="utf-8")
        (backfill_dir / plan / "manifest.json").write_text("{}", encoding="utf-8")
        for path in (windows / "2024-01.jsonl", backfill_dir / plan / "manifest.json"):
            _age(path, days)
    return crm, outbox_dir, backfill_dir


def test_retention_strips_and_deletes_only_what_is_past_its_period(aged):
    crm, outbox_dir, backfill_dir = aged
    periods = RetentionPeriods()
    before = snapshot(crm)
    preview = apply_retention(crm, periods, now=NOW, outbox_dir=outbox_dir, backfill_dir=backfill_dir, dry_run=True)
    expected = {"raw_payloads": 1, "quarantine": 1, "lead_inbox": 1, "eml_files": 1, "backfill_window_files": 1,
                "webhook_deliveries": 1, "mailbox_messages": 1}
    assert preview.counts == expected
    assert snapshot(crm) == before and len(list(outbox_dir.iterdir())) == 2
    assert (backfill_dir / "key1").exists()

    done = apply_retention(crm, periods, now=NOW, outbox_dir=outbox_dir, backfill_dir=backfill_dir)
    assert done.counts == expected and done.backfill_folders == 1
    with crm.engine.connect() as conn:
        payloads = conn.execute(select(LeadSubmission.raw_payload)).scalars().all()
        assert [json.dumps(p) for p in payloads].count("{}") == 1
        assert sum("198.51.100.9" in json.dumps(p) for p in payloads) == 1
        assert len(conn.execute(select(QuarantineRecord.id)).all()) == 1
        assert len(conn.execute(select(LeadInboxRow.id)).all()) == 2
        assert conn.execute(select(WebhookDelivery.delivery_id)).scalars().all() == ["new"]
        assert sorted(conn.execute(select(MailboxMessageRow.message_key)).scalars()) == ["b" * 64, "c" * 64]
    assert [p.name for p in outbox_dir.iterdir()] == ["new.eml"]
    assert not (backfill_dir / "key1").exists() and (backfill_dir / "key2").exists()

    again = apply_retention(crm, periods, now=NOW, outbox_dir=outbox_dir, backfill_dir=backfill_dir)
    assert sum(again.counts.values()) == 0
    forever = RetentionPeriods(raw_payloads=0, quarantine=0, lead_inbox=0, eml_files=0, backfill_window_files=0,
                               webhook_deliveries=0, mailbox_messages=0)
    assert apply_retention(crm, forever, now=NOW + timedelta(days=9999), outbox_dir=outbox_dir,
                           backfill_dir=backfill_dir).total == 0


def test_erase_reaches_backfill_window_files_and_a_purged_spam_tombstone(crm, tmp_path):
    windows = tmp_path / "backfill" / "abc" / "month-20240101-20240331" / "windows"
    windows.mkdir(parents=True)
    rows = [{"email": "Ada <ADA@acme.com>", "first_name": "Ada"}, {"email": "joann@acme.com"},
            {"email": "x@acme.com", "message": "cc ada@acme.com please"}]
    (windows / "2024-01.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (windows.parent / "manifest.json").write_text(json.dumps({"windows": {"2024-01": 3}}), encoding="utf-8")
    # Her spam lead was purged long ago: only its keyed-hash tombstone is left.
    with crm.begin() as conn:
        conn.execute(SpamTombstone.__table__.insert().values(email_hash=keyed_hash("ada@acme.com", KEY),
                                                             reasons="honeypot", purged_at=OLD))
    assert export_person(crm, "ada@acme.com", hash_key=KEY)["tables"]["spam_tombstones"]
    outbox_dir = tmp_path / "outbox"
    outbox_dir.mkdir()
    # An .eml file whose outbox row went with a purge: found by what it says.
    (outbox_dir / "orphan.eml").write_text("To: ada@acme.com\n\nThanks", encoding="utf-8")
    (outbox_dir / "other.eml").write_text("To: joann@acme.com\n\nThanks", encoding="utf-8")

    dry = erase_person(crm, "ada@acme.com", hash_key=KEY, outbox_dir=outbox_dir, dry_run=True,
                       backfill_dir=tmp_path / "backfill")
    assert (dry.backfill_rows, dry.backfill_files, dry.eml_files, dry.counts["spam_tombstones"]) == (2, 1, 1, 1)
    assert len((windows / "2024-01.jsonl").read_text().splitlines()) == 3

    done = erase_person(crm, "ada@acme.com", hash_key=KEY, outbox_dir=outbox_dir, backfill_dir=tmp_path / "backfill")
    assert (done.backfill_rows, done.eml_files, done.counts["spam_tombstones"]) == (2, 1, 1)
    left = (windows / "2024-01.jsonl").read_text()
    assert "ada@" not in left.lower() and "joann@acme.com" in left
    assert json.loads((windows.parent / "manifest.json").read_text())["windows"] == {"2024-01": 1}
    assert [p.name for p in outbox_dir.iterdir()] == ["other.eml"]
    with crm.engine.connect() as conn:
        assert conn.execute(select(SpamTombstone.id)).all() == []


def test_a_batch_of_requests_counts_people_and_malformed_requests_without_addresses(crm, tmp_path):
    run_intake(crm, write_csv(tmp_path / "leads.csv", [lead("ada@acme.com"), lead("bob@acme.com")]))
    requests = tmp_path / "requests.csv"
    pd.DataFrame({"ticket": ["t1", "t2", "t3", "t4"],
                  "email": ["ADA@acme.com", "nobody@acme.com", "not an address", "ada@acme.com"]}
                 ).to_csv(requests, index=False)
    emails = privacy_files.read_erasure_requests(requests)
    assert emails == ["ADA@acme.com", "nobody@acme.com", "not an address", "ada@acme.com"]
    summary = erase_people(crm, emails, hash_key=KEY, outbox_dir=tmp_path, backfill_dir=None, reason="batch")
    assert (summary.requests, summary.erased, summary.not_found, summary.invalid) == (4, 1, 1, [3])
    assert summary.removed["leads"] == 1 and len(summary.erasure_ids) == 2
    assert "@" not in json.dumps(summary.as_dict())
    assert export_person(crm, "bob@acme.com")["tables"]["leads"]


def test_erase_reaches_a_group_input_a_kill_left_half_written(tmp_path, monkeypatch):
    """A backfill pass killed while joining its windows leaves `group-...<pid>.tmp.jsonl`, cut anywhere, even inside
    a character: erasure still finds her row there and leaves the other bytes as they were."""
    from leadflow.io.backfill_files import join_parts
    from leadflow.io.privacy_files import erase_from_backfill_files

    windows = tmp_path / "backfill" / "abc" / "month-20240101-20240331" / "windows"
    windows.mkdir(parents=True)
    part = windows / "2024-01.jsonl"
    part.write_text(json.dumps({"email": "ada@acme.com"}) + "\n"
                    + json.dumps({"email": "zoë@acme.com"}, ensure_ascii=False) + "\n", encoding="utf-8")
    whole = Path(join_parts([part], windows / "group-2024-01--2024-01.jsonl"))
    assert whole.read_bytes() == part.read_bytes()
    assert not list(windows.glob("*.tmp*"))  # written through a temporary file, replaced atomically
    whole.unlink()
    # What a kill in the middle of the copy leaves: the temporary file, cut inside the "ë" of the second row.
    data = part.read_bytes()
    raw = data[:data.index("ë".encode()) + 1]

    def killed(source, target) -> None:
        target.write(raw)
        raise KeyboardInterrupt

    monkeypatch.setattr("leadflow.io.backfill_files.shutil.copyfileobj", killed)
    with pytest.raises(KeyboardInterrupt):
        join_parts([part], windows / "group-2024-01--2024-01.jsonl")
    part.unlink()
    (cut,) = windows.iterdir()
    assert cut.name.endswith(".tmp.jsonl")
    done = erase_from_backfill_files(tmp_path / "backfill", "ada@acme.com")
    assert (done.rows, done.files) == (1, 1)
    assert cut.read_bytes() == raw.split(b"\n", 1)[1]
