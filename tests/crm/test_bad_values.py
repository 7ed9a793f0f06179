"""A bad value costs one row, never a chunk: control characters on both databases, and errors without row values."""

from __future__ import annotations

import json
import pickle
import traceback
from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlalchemy import select

from leadflow.crm import submissions
from leadflow.crm.schema import IntakeBatch, Lead, LeadSubmission, QuarantineRecord
from leadflow.crm.store import DatabaseError, is_transient_db_error
from tests.helpers import lead, run_intake, write_csv

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
EMAIL = "jane.doe@example.com"
PHONE = "+14155552671"


def _all_text(error: BaseException) -> str:
    """Everything an error can show or carry: its text, its traceback with causes, and its pickle."""
    shown = "".join(traceback.format_exception(error))
    return shown + repr(error) + repr(pickle.dumps(error)) + repr(pickle.loads(pickle.dumps(error)))


def test_a_nul_byte_costs_nothing_on_either_database(crm, tmp_path):
    rows = [lead(f"person{i}@example.com", company=f"Company {i}", phone=PHONE) for i in range(10)]
    rows[3]["company"] = "Ac\x00me"
    rows[5]["message"] = "line one\r\nline\x01 two\tend"
    rows[7]["job_title"] = "\x00\x07"  # nothing left: an empty field
    path = write_csv(tmp_path / "leads.csv", rows)

    summary = run_intake(crm, path)

    assert crm.table_counts()["quarantine"] == 0
    with crm.engine.connect() as conn:
        leads = {r.email: r for r in conn.execute(select(Lead))}
        subs = conn.execute(select(LeadSubmission.message, LeadSubmission.raw_payload)).all()
        status = conn.execute(select(IntakeBatch.status)).scalar_one()
    assert status == "completed" and summary["rows_read"] == 10
    assert len(leads) == 10 and len(subs) == 10
    assert leads["person3@example.com"].company == "Acme"
    assert leads["person7@example.com"].job_title is None
    assert "line one\r\nline two\tend" in {m for m, _ in subs}
    payloads = [p if isinstance(p, dict) else json.loads(p) for _, p in subs]
    assert {p["company"] for p in payloads} >= {"Acme", "Company 0"}
    assert all("\x00" not in json.dumps(p, ensure_ascii=False) for p in payloads)
    assert not any("job_title" in p for p in payloads)


def test_a_failed_write_names_no_values(crm):
    """A unique violation: PostgreSQL's DETAIL repeats the key, and the parameters hold the whole row."""
    row = {"email": EMAIL, "phone": PHONE, "first_touch_at": NOW, "last_touch_at": NOW, "first_touch_source": "x",
           "last_touch_source": "x", "created_at": NOW,
           "updated_at": NOW}
    with crm.begin() as conn:
        conn.execute(Lead.__table__.insert(), [row])
    with pytest.raises(DatabaseError) as caught, crm.begin() as conn:
        conn.execute(Lead.__table__.insert(), [row])
    error = caught.value
    text = _all_text(error)
    assert EMAIL not in text and PHONE not in text
    assert error.params is None and "[SQL: INSERT INTO leads" in str(error)
    assert "UNIQUE" in str(error).upper()
    if crm.dialect == "postgresql":
        assert error.orig.sqlstate == "23505" and not is_transient_db_error(error)
        assert "leads" in str(error)  # the schema's own names stay readable


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_an_over_long_value_written_through_the_store_names_no_values(crm):
    payload = json.dumps({"email": EMAIL, "phone": PHONE})
    rows = pd.DataFrame([{"idempotency_key": "k1", "batch_id": "b", "origin": "f.csv", "row_number": 1,
                          "source": EMAIL * 4, "reason_codes": "missing_email", "raw_payload": payload,
                          "created_at": NOW, "flow_run_id": None}])
    with pytest.raises(DatabaseError) as caught, crm.begin() as conn:
        submissions.insert_quarantine(crm, conn, rows)
    text = _all_text(caught.value)
    assert "too long" in text and caught.value.orig.sqlstate == "22001"
    assert EMAIL not in text and PHONE not in text
    assert crm.table_counts()["quarantine"] == 0


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
def test_a_value_postgresql_refuses_costs_its_row_not_the_chunk(crm, tmp_path):
    """A website whose host is longer than any DNS name (253) passes normalizing, but not leads.company_domain
    (varchar 253) on PostgreSQL: that row is quarantined with the SQLSTATE, the other nine are stored."""
    rows = [lead(f"person{i}@example.com", company=f"Company {i}", phone=PHONE) for i in range(10)]
    rows[4]["website"] = "https://" + ".".join(label * 60 for label in "abcde") + ".com/about"
    path = write_csv(tmp_path / "leads.csv", rows)

    summary = run_intake(crm, path)

    assert summary["quarantined"] == 1 and summary["submissions_new"] == 9
    assert summary["quarantined_by_reason"] == {"db_refused:22001": 1}
    with crm.engine.connect() as conn:
        assert conn.execute(select(IntakeBatch.status)).scalar_one() == "completed"
        kept = conn.execute(select(QuarantineRecord.row_number, QuarantineRecord.reason_codes,
                                   QuarantineRecord.raw_payload)).one()
        emails = set(conn.execute(select(Lead.email)).scalars())
    assert kept.row_number == 5 and kept.reason_codes == "db_refused:22001"
    assert "person4@example.com" in json.dumps(kept.raw_payload)  # the payload is kept whole, for a human
    assert len(emails) == 9 and "person4@example.com" not in emails
