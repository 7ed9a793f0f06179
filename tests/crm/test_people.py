"""Export and erasure of one person on SQLite and PostgreSQL: every row found, every trace gone, others untouched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from leadflow.crm import people, reference
from leadflow.crm.inbox import submit_lead
from leadflow.crm.schema import Base, Lead, OutboxMessage
from leadflow.domain.privacy import keyed_hash
from leadflow.domain.qualification import load_qualification_policy
from leadflow.domain.summary import QualificationSummary
from leadflow.io.senders import write_eml
from leadflow.steps.people import PersonRequestError, erase_person, export_person
from leadflow.steps.qualification import local_steps, qualify
from tests.helpers import lead, run_intake, snapshot, write_csv

KEY = "test-only-hash-key"
NOW = datetime.now(UTC).replace(microsecond=0)
RECENT = (NOW - timedelta(hours=1)).isoformat()
ADA = {"email": "ada.quillfeather@acme.com", "phone": "+1 415 555 0142", "last_name": "Quillfeather"}
BOB = {"email": "bob.stone@globex.de", "phone": "+49 30 1234567", "last_name": "Stonebridge"}
HOT = {"job_title": "CTO", "company": "ACME Corp.", "country": "US", "demo_requested": "true",
       "company_size": "1001-5000", "message": "We need a replacement asap, budget approved"}


def dump(crm) -> dict[str, list[tuple[int | None, str]]]:
    """Every table's rows as (id, all columns as one lower-case text)."""
    tables = {}
    with crm.engine.connect() as conn:
        for name, table in Base.metadata.tables.items():
            rows = conn.execute(select(table)).mappings().all()
            tables[name] = [(r.get("id"), " ".join(str(v) for v in r.values()).lower()) for r in rows]
    return tables


def hits(crm, person: dict[str, str]) -> dict[str, set]:
    """Ids of rows (by table) holding the person's email, phone (as typed or stored) or last name."""
    needles = [person["email"], person["last_name"].lower(), person["phone"].lower(), person.get("stored_phone")]
    found: dict[str, set] = {}
    for name, rows in dump(crm).items():
        ids = {i for i, text in rows if any(n and n.lower() in text for n in needles)}
        if ids:
            found[name] = ids
    return found


@pytest.fixture
def populated(crm, tmp_path):
    """Two people through intake (one of Ada's rows quarantined), an inbox post, qualification and .eml files."""
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    reference.load_accounts(crm, reference.DATA_DIR / "accounts.csv")
    rows = [lead(ADA["email"], RECENT, first_name="Ada", last_name=ADA["last_name"], phone=ADA["phone"], **HOT),
            lead(ADA["email"].upper(), RECENT, source="webinar", external_id="w-1", last_name=ADA["last_name"]),
            lead(f"Ada <{ADA['email']}>", "2099-01-01T00:00:00Z", phone=ADA["phone"]),
            lead("joann.quill@acme.com", RECENT, first_name="Jo", last_name="Ann"),
            lead(BOB["email"], RECENT, first_name="Bob", last_name=BOB["last_name"], phone=BOB["phone"],
                 **{**HOT, "company": "Globex", "country": "DE"})]
    summary = run_intake(crm, write_csv(tmp_path / "leads.csv", rows))
    assert summary["quarantined"] == 1
    submit_lead(crm, {"Email": ADA["email"].title(), "message": "call me"})
    submit_lead(crm, {"email": BOB["email"]})
    with crm.engine.connect() as conn:
        ids = conn.execute(select(Lead.id)).scalars().all()
    policy = load_qualification_policy()
    qualify(local_steps(crm), ids, policy, QualificationSummary(replay=False, policy_version=policy.version),
            replay=False, timezone="UTC", clock=lambda: NOW, chunk_size=1000)
    outbox_dir = tmp_path / "outbox"
    outbox_dir.mkdir()
    with crm.engine.connect() as conn:
        for row in conn.execute(select(OutboxMessage.__table__)).mappings():
            write_eml(dict(row), outbox_dir, "sales@leadflow.example")
        for person in (ADA, BOB):
            person["stored_phone"] = conn.execute(select(Lead.phone).where(Lead.email == person["email"])).scalar()
    return crm, outbox_dir


def test_export_holds_every_row_of_the_person(populated):
    crm, _ = populated
    export = export_person(crm, f"  {ADA['email'].upper()} ")
    tables = export["tables"]
    assert export["email"] == ADA["email"]
    for name in ("leads", "lead_submissions", "lead_events", "crm_tasks", "outbox", "quarantine", "lead_inbox"):
        assert tables[name], f"nothing exported from {name}"
    lead_id = tables["leads"][0]["id"]
    assert len(tables["leads"]) == 1 and len(tables["lead_submissions"]) == 2
    assert all(r["lead_id"] == lead_id for name in ("lead_submissions", "lead_events", "crm_tasks")
               for r in tables[name])
    # Every row a full-text scan finds (or that links to the lead) is in the export; Jo Ann's lookalike is not.
    exported = {name: {r["id"] for r in found} for name, found in tables.items()}
    found = hits(crm, ADA)
    assert set(found) >= {"leads", "lead_submissions", "outbox", "quarantine", "lead_inbox"}
    assert set(found) <= set(exported) and all(found[name] <= exported[name] for name in found)
    assert not any("joann" in str(r).lower() for found in tables.values() for r in found)


def test_erase_removes_every_trace_and_keeps_a_keyed_record(populated):
    crm, outbox_dir = populated
    before_bob = export_person(crm, BOB["email"])["tables"]
    export = export_person(crm, ADA["email"])["tables"]
    ada_files = {p.name for p in outbox_dir.iterdir()}
    before = snapshot(crm)

    dry = erase_person(crm, ADA["email"], hash_key=KEY, outbox_dir=outbox_dir, dry_run=True).as_dict()
    assert snapshot(crm) == before and {p.name for p in outbox_dir.iterdir()} == ada_files
    assert dry["erasure_id"] is None and dry["removed"]["leads"] == 1
    assert all(dry["removed"][name] == len(rows) for name, rows in export.items())

    summary = erase_person(crm, ADA["email"], hash_key=KEY, outbox_dir=outbox_dir, reason="ticket-17").as_dict()
    assert summary["removed"] == dry["removed"] and summary["removed"]["capacity_released"] == 1
    # Every message of hers had an .eml file written.
    assert summary["eml_files"] == dry["eml_files"] == len(export["outbox"]) > 0
    assert hits(crm, ADA) == {}
    # The folder keeps Bob's messages only.
    assert not any(p.read_bytes().lower().count(ADA["email"].encode()) for p in outbox_dir.iterdir())
    assert len(list(outbox_dir.iterdir())) == len(ada_files) - summary["eml_files"]
    with crm.engine.connect() as conn:
        records = people.erasures(conn, keyed_hash(ADA["email"], KEY))
    assert len(records) == 1 and records[0]["reason"] == "ticket-17"
    assert records[0]["counts"]["leads"] == 1 and records[0]["id"] == summary["erasure_id"]
    # Bob is untouched, and erasing again finds nothing.
    assert export_person(crm, BOB["email"])["tables"] == before_bob
    again = erase_person(crm, ADA["email"], hash_key=KEY, outbox_dir=outbox_dir).as_dict()
    assert sum(again["removed"].values()) == 0


def test_erase_without_a_key_or_with_a_bad_address_changes_nothing(populated):
    crm, outbox_dir = populated
    before = snapshot(crm)
    for key, email in ((None, ADA["email"]), ("", ADA["email"]), (KEY, "not-an-address")):
        with pytest.raises(PersonRequestError) as failure:
            erase_person(crm, email, hash_key=key, outbox_dir=outbox_dir)
        assert "quillfeather" not in str(failure.value).lower()
    assert snapshot(crm) == before


def test_a_non_ascii_address_is_found_by_scanning_payloads_in_chunks(crm, monkeypatch):
    monkeypatch.setattr(people, "SCAN_CHUNK", 1)
    submit_lead(crm, {"email": "JÖRG@Bäckerei.de"})
    submit_lead(crm, {"email": "other@bäckerei.de"})
    with crm.engine.connect() as conn:
        found = people.person_rows(conn, "jörg@bäckerei.de")
    assert [r["payload"]["email"] for r in found["lead_inbox"]] == ["JÖRG@Bäckerei.de"]


@pytest.mark.parametrize(("payload", "carries"), [
    ({"email": "Ann <ANN@acme.com>"}, True),
    ({"notes": "write to mailto:ann@acme.com, please"}, True),
    ('{"e": "ann@acme.com"}', True),
    ({"email": "joann@acme.com"}, False),
    ({"email": "ann@acme.com.evil"}, False),
])
def test_payload_matching_takes_whole_addresses_only(payload, carries):
    assert people.payload_carries(payload, "ann@acme.com") is carries


def test_keyed_hash_depends_on_the_key_and_is_no_bare_hash():
    from hashlib import sha256

    one, other = keyed_hash(ADA["email"], "k1"), keyed_hash(ADA["email"], "k2")
    assert len(one) == 64 and one != other and one != sha256(ADA["email"].encode()).hexdigest()
    with pytest.raises(ValueError):
        keyed_hash(ADA["email"], "")
