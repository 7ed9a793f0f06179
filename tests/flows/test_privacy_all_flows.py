"""Issue 17's "done when", on SQLite and PostgreSQL: a CRM populated through every flow (intake with qualification and
delivery to a real SMTP server, outbox delivery, backfill, the monthly report, spam cleanup with retention) holds one
person in many places; the export names every row a full scan finds; the person-erasure flow leaves 0 hits of their
email, phone, name and IP in every table and every file under the output folders; re-importing the original file
quarantines their rows as erased_person and changes nothing else; every CSV the run wrote is formula-safe."""

from __future__ import annotations

import csv
import json
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from sqlalchemy import select

from flows.backfill import lead_backfill
from flows.delivery import outbox_delivery
from flows.intake import lead_intake
from flows.monthly_report import monthly_report
from flows.person_erasure import person_erasure
from flows.spam_cleanup import spam_cleanup
from leadflow.config.settings import get_settings
from leadflow.crm import reference
from leadflow.crm.inbox import submit_lead
from leadflow.crm.schema import Base, QuarantineRecord
from leadflow.domain.privacy import FORMULA_PREFIXES
from leadflow.steps.people import export_person
from tests.flows.test_delivery import Inbox
from tests.helpers import lead, snapshot, write_csv

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC).replace(microsecond=0)
RECENT = (NOW - timedelta(hours=2)).isoformat()
MONTH = (NOW - timedelta(hours=2)).strftime("%Y-%m")
KEY = "test-only-email-hash-key-0123456789"  # tests/conftest.py's LEADFLOW_HASH_KEY
# Distinctive values, so that a hit is hers and not a coincidence.
ZEPH = {"email": "zephyrine.quillfeather@acme.com", "first_name": "Zephyrine", "last_name": "Quillfeather",
        "phone": "+1 415 555 0142", "ip_address": "203.0.113.77"}
NEEDLES = [ZEPH["email"], "zephyrine", "quillfeather", "+14155550142", "415 555 0142", "4155550142", "203.0.113.77"]
HOT = {"job_title": "CTO", "company": "ACME Corp.", "country": "US", "demo_requested": "true",
       "company_size": "1001-5000", "email_opt_in": "true", "message": "We need a replacement asap, budget approved"}
# Formula prefixes planted through intake (OWASP CSV injection); the report CSVs carry UTM values and sources.
FORMULAS = {"utm_source": "=HYPERLINK(\"http://evil.example/x\",\"click\")", "utm_medium": "=cmd|' /C calc'!A0",
            "utm_campaign": "@SUM(1+1)"}


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def scan(crm, output: Path) -> dict[str, set]:
    """Where any needle shows up: table -> row ids, and file paths under the output folders."""
    found: dict[str, set] = {}
    with crm.engine.connect() as conn:
        for name, table in Base.metadata.tables.items():
            for row in conn.execute(select(table)).mappings():
                text = " ".join(str(v) for v in row.values()).lower()
                if any(n in text for n in NEEDLES):
                    found.setdefault(name, set()).add(row.get("id"))
    for path in _files(output):
        text = path.read_bytes().decode("utf-8", "replace").lower()
        if any(n in text for n in NEEDLES):
            found.setdefault("files", set()).add(str(path.relative_to(output)))
    return found


@pytest.fixture
def smtp():
    import socket

    from aiosmtpd.controller import Controller

    inbox = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, f"smtp://127.0.0.1:{port}"
    controller.stop()


def test_erasure_after_every_flow_leaves_no_trace_and_reimport_changes_nothing_else(crm, smtp, tmp_path,
                                                                                   monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    inbox, smtp_url = smtp
    output = tmp_path / "leadflow-output"
    for key, value in {"SMTP_URL": smtp_url, "OUTBOX_DIR": output / "outbox", "REPORT_DIR": output / "reports",
                       "BACKFILL_DIR": output / "backfill"}.items():
        monkeypatch.setenv(f"LEADFLOW_{key}", str(value))
    get_settings.cache_clear()
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    reference.load_accounts(crm, reference.DATA_DIR / "accounts.csv")

    live = write_csv(tmp_path / "live.csv", [
        lead(ZEPH["email"], RECENT, **{k: v for k, v in ZEPH.items() if k != "email"}, **HOT),
        lead(f"Zephyrine <{ZEPH['email'].upper()}>", "2099-01-01T00:00:00Z", phone=ZEPH["phone"]),  # quarantined
        lead("bob.stone@globex.de", RECENT, first_name="Bob", last_name="Stone", **FORMULAS,
             **{**HOT, "company": "Globex", "country": "DE"}),
        lead("-carol@initech.com", RECENT, first_name="@Carol", company="=Initech"),
    ])
    history = tmp_path / "history"
    history.mkdir()
    write_csv(history / "2025.csv", [
        lead(ZEPH["email"], "2025-01-10T09:00:00Z", source="webinar", phone=ZEPH["phone"],
             ip_address=ZEPH["ip_address"], last_name=ZEPH["last_name"]),
        lead("dan@hooli.com", "2025-01-12T09:00:00Z", source="event", first_name="Dan"),
    ])
    submit_lead(crm, {"Email": ZEPH["email"], "message": f"call {ZEPH['first_name']} on {ZEPH['phone']}"})

    intake = lead_intake(path=live)
    assert intake["quarantined"] == 1 and intake["qualification"]["delivered"] > 0
    assert inbox.messages, "nothing reached the SMTP server"
    outbox_delivery()
    # One window; the report of its month is not recomputed (monthly_report below runs that flow).
    lead_backfill(path=str(history), start=date(2025, 1, 1), end=date(2025, 1, 31), window="month",
                  recompute_reports=False)
    monthly_report(month=MONTH)
    spam_cleanup()
    assert list((output / "backfill").rglob("*.jsonl")) and list((output / "reports").rglob("*.csv"))

    # (c) Every CSV the product wrote is safe to open; the planted formulas are there, neutralized.
    cells = [cell for path in (output / "reports").rglob("*.csv")
             for row in csv.reader(path.open(encoding="utf-8")) for cell in row]
    assert [c for c in cells if c.startswith(FORMULA_PREFIXES) and not _number(c)] == []
    # The channel dimension is "utm_medium / utm_source": the cell starts with the medium's '='.
    # UTM values are stored folded (lower case, `+` and spaces to `_`), so the medium plants `=`, which folding keeps.
    assert any(c.startswith("'=cmd") and "=hyperlink" in c for c in cells)

    # The export names every row the full scan finds.
    before = scan(crm, output)
    assert {"leads", "lead_submissions", "outbox", "quarantine", "lead_inbox", "files"} <= set(before)
    export = export_person(crm, ZEPH["email"], hash_key=KEY, outbox_dir=output / "outbox",
                           backfill_dir=output / "backfill")
    for name, ids in before.items():
        if name != "files":
            assert ids <= {r["id"] for r in export["tables"][name]}, name
    exported_files = {f"backfill/{r['file']}" for r in export["files"]["backfill_window_rows"]}
    exported_files |= {f"outbox/{name}" for name in export["files"]["eml_files"]}
    assert before["files"] <= exported_files and export["files"]["backfill_window_rows"]

    requests = tmp_path / "requests.txt"
    requests.write_text(f"# ticket 4711\n{ZEPH['email'].upper()}\n", encoding="utf-8")
    summary = person_erasure(path=str(requests), reason="ticket-4711")
    assert summary["erased"] == 1 and summary["backfill_rows"] == 1 and summary["removed"]["leads"] == 1
    assert scan(crm, output) == {}
    with get_client(sync_client=True) as client:
        artifacts = "\n".join(repr(a.data) for a in client.read_artifacts()).lower()
    assert "person erasure" in artifacts
    # Every log record but the test SMTP server's own (it received her mail, as a mail server does).
    logs = "\n".join(r.getMessage() for r in caplog.records if r.name != "mail.log").lower()
    assert [n for n in NEEDLES if n in artifacts or n in logs] == []

    # Re-importing the original file brings nothing of her back and changes nothing else.
    kept = snapshot(crm, skip=("intake_batches", "quarantine"))
    with crm.engine.connect() as conn:
        quarantined = set(conn.execute(select(QuarantineRecord.id)).scalars())
    again = lead_intake(path=live)
    assert again["quarantined"] == 2 and again["submissions_new"] == 0
    assert snapshot(crm, skip=("intake_batches", "quarantine")) == kept
    with crm.engine.connect() as conn:
        new = conn.execute(select(QuarantineRecord.__table__).where(QuarantineRecord.id.not_in(quarantined))).all()
    assert {r.reason_codes for r in new} == {"erased_person"} and len(new) == 2
    assert all(set(json.loads(json.dumps(r.raw_payload))) == {"erased_email_hash"} for r in new)
    assert scan(crm, output) == {}


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
