"""Re-importing an erased person on SQLite and PostgreSQL: quarantined as erased_person, no trace, no other change."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from leadflow.config.settings import email_hash_key, get_settings
from leadflow.crm.schema import Base, QuarantineRecord
from leadflow.domain.privacy import keyed_hash
from leadflow.steps import intake
from leadflow.steps.backfill import quarantine_undated
from leadflow.steps.people import erase_person
from tests.helpers import lead, run_intake, snapshot, write_csv

RECENT = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0).isoformat()
ADA = {"email": "ada.quillfeather@acme.com", "first_name": "Adelheid", "last_name": "Quillfeather",
       "phone": "+1 415 555 0142", "ip_address": "203.0.113.77"}
NEEDLES = ("ada.quillfeather", "adelheid", "quillfeather", "415 555 0142", "4155550142", "203.0.113.77")


def rows() -> list[dict]:
    """Ada three times (two accepted rows, one rejected for its future time), and two other people."""
    return [
        lead(ADA["email"], RECENT, **{k: v for k, v in ADA.items() if k != "email"}, message="call me"),
        lead(f"Ada <{ADA['email'].upper()}>", RECENT, source="webinar", external_id="w-1",
             last_name=ADA["last_name"], phone=ADA["phone"]),
        lead(ADA["email"], "2099-01-01T00:00:00Z", first_name=ADA["first_name"], phone=ADA["phone"]),
        lead("bob.stone@globex.de", RECENT, first_name="Bob", last_name="Stone", phone="+49 30 1234567"),
        lead("carla@initech.io", "2099-01-01T00:00:00Z", first_name="Carla"),
    ]


def dump(crm) -> str:
    """Every table of the CRM as one lower-case text."""
    parts = []
    with crm.engine.connect() as conn:
        for name, table in Base.metadata.tables.items():
            parts += [f"{name}: {dict(r)}" for r in conn.execute(select(table)).mappings()]
    return "\n".join(parts).lower()


def erased_quarantine(crm) -> list[dict]:
    with crm.engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            select(QuarantineRecord.__table__).where(QuarantineRecord.reason_codes == "erased_person")
            .order_by(QuarantineRecord.row_number)).mappings()]


def test_a_reimported_erased_person_is_quarantined_without_a_trace(crm, tmp_path):
    path = write_csv(tmp_path / "leads.csv", rows())
    first = run_intake(crm, path)
    assert (first["submissions_new"], first["quarantined"]) == (3, 2)
    assert any(n in dump(crm) for n in NEEDLES)
    key = email_hash_key(get_settings(), crm.url).decode()
    erase_person(crm, ADA["email"], hash_key=key, outbox_dir=tmp_path / "outbox", reason="ticket-17")
    assert not any(n in dump(crm) for n in NEEDLES)
    before = snapshot(crm)

    again = run_intake(crm, path)

    # Ada's three rows (both accepted ones and the rejected one) are quarantined as erased_person, nothing else.
    assert again["quarantined"] == 4 and again["quarantined_new"] == 3
    assert again["quarantined_by_reason"]["erased_person"] == 3
    assert (again["submissions_new"], again["leads_created"], again["submissions_duplicate"]) == (0, 0, 1)
    text = dump(crm)
    assert [n for n in NEEDLES if n in text] == []
    records = erased_quarantine(crm)
    payload = {"erased_email_hash": keyed_hash(ADA["email"], key)}
    assert [r["row_number"] for r in records] == [1, 2, 3]
    assert all(r["origin"] == path and r["source"] for r in records)
    assert [(json.loads(p) if isinstance(p, str) else p) for p in (r["raw_payload"] for r in records)] == [payload] * 3
    after = snapshot(crm)
    assert {k: v for k, v in after.items() if k != "quarantine"} == {k: v for k, v in before.items()
                                                                       if k != "quarantine"}
    assert set(before["quarantine"]) < set(after["quarantine"]) and len(after["quarantine"]) == len(
        before["quarantine"]) + 3

    # Once more: the same records, nothing new anywhere.
    third = run_intake(crm, path)
    assert (third["quarantined"], third["quarantined_new"]) == (4, 0)
    assert snapshot(crm) == after


def test_backfill_undated_rows_of_an_erased_person_keep_no_payload(crm, tmp_path):
    key = email_hash_key(get_settings(), crm.url).decode()
    erase_person(crm, ADA["email"], hash_key=key, outbox_dir=tmp_path / "outbox")
    part = write_csv(tmp_path / "undated.csv", [lead(ADA["email"], "", **{k: v for k, v in ADA.items()
                                                                        if k != "email"}),
                                                lead("bob.stone@globex.de", "", first_name="Bob")])
    done = quarantine_undated(crm, part, batch_id="b1", origin="history.csv", flow_run_id=None,
                              now=datetime.now(UTC))
    assert done.quarantined_by_reason == {"erased_person": 1, "missing_submitted_at": 1}
    assert not any(n in dump(crm) for n in NEEDLES) and "bob.stone@globex.de" in dump(crm)
    assert [(r["origin"], r["row_number"]) for r in erased_quarantine(crm)] == [("history.csv", 1)]


def test_without_erasures_intake_never_asks_for_the_hash_key(crm, tmp_path, monkeypatch):
    def no_key(*_args, **_kwargs):
        raise AssertionError("the hash key was looked up with no erasure recorded")

    monkeypatch.setattr(intake, "email_hash_key", no_key)
    summary = run_intake(crm, write_csv(tmp_path / "leads.csv", rows()))
    assert (summary["submissions_new"], summary["quarantined"]) == (3, 2)
    with pytest.raises(AssertionError):
        # And with one recorded it is asked (the guard above is live).
        key = email_hash_key(get_settings(), crm.url).decode()
        erase_person(crm, "someone@else.org", hash_key=key, outbox_dir=tmp_path / "outbox")
        run_intake(crm, write_csv(tmp_path / "more.csv", rows()))
