"""A bad value costs one row, never a chunk: Create Lead Entry splits a chunk the database refuses until the refused
rows are isolated, stores the rest and quarantines those rows with the database's error code."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from leadflow.crm.schema import Lead, LeadSubmission, QuarantineRecord
from leadflow.crm.store import refused_value_code
from leadflow.domain.submissions import ROW_COLUMN
from leadflow.steps import intake as steps
from tests.unit.test_intake import subs as normalized

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _chunk() -> pd.DataFrame:
    """12 rows of 8 people (four with two touches); rows 6 (person 5) and 10 (the second touch of person 1) lack a
    source, which lead_submissions.source (NOT NULL) refuses: a real constraint violation on both databases."""
    rows = [{"email": f"person{i % 8}@example.com", "submitted_at": f"2025-03-0{1 + i // 8}T10:00:00Z",
             "source": "web_form", "company": f"Company {i}"} for i in range(12)]
    frame = normalized(rows)
    frame.loc[frame[ROW_COLUMN].isin([6, 10]), "source"] = pd.NA
    return frame


def test_refused_rows_are_isolated_and_quarantined_with_the_database_code(crm):
    chunk = _chunk()
    result = steps.create_lead_entries(crm, chunk, batch_id="b1", flow_run_id=None, now=NOW)

    code = "23502" if crm.dialect == "postgresql" else "SQLITE_CONSTRAINT_NOTNULL"
    assert sorted(result.erased_rows) == [6, 10]
    assert result.submissions_new == 10 and result.quarantined.rows == 2
    assert dict(result.quarantined.by_reason) == {f"db_refused:{code}": 2}
    # Person 1 keeps the touch the database took; person 5's only row (row 6) was refused: no lead.
    assert result.leads_created == 7 and len(result.lead_ids) == 7 == len(set(result.lead_ids))
    assert "person1@example.com" not in result.settled_emails
    with crm.engine.connect() as conn:
        emails = set(conn.execute(select(Lead.email)).scalars())
        stored_rows = conn.execute(select(LeadSubmission.id)).all()
        quarantined = conn.execute(select(QuarantineRecord.row_number, QuarantineRecord.reason_codes,
                                          QuarantineRecord.raw_payload, QuarantineRecord.batch_id)).all()
    assert len(emails) == 7 and "person5@example.com" not in emails and len(stored_rows) == 10
    assert sorted((row, reason) for row, reason, _, _ in quarantined) == [(6, f"db_refused:{code}"),
                                                                          (10, f"db_refused:{code}")]
    assert all("person" in str(payload) and batch == "b1" for _, _, payload, batch in quarantined)

    again = steps.create_lead_entries(crm, chunk, batch_id="b2", flow_run_id=None, now=NOW)
    assert again.submissions_new == 0 and again.submissions_duplicate == 10
    assert again.quarantined.rows == 2 and again.quarantined.new_records == 0
    assert crm.table_counts()["quarantine"] == 2


def test_a_chunk_the_database_takes_is_written_in_one_go(crm, monkeypatch):
    calls = []
    write = steps._write_lead_entries
    monkeypatch.setattr(steps, "_write_lead_entries", lambda *a, **k: calls.append(1) or write(*a, **k))
    chunk = _chunk()
    chunk["source"] = chunk["source"].fillna("event")
    result = steps.create_lead_entries(crm, chunk, batch_id="b1", flow_run_id=None, now=NOW)
    assert calls == [1] and result.submissions_new == 12 and result.erased_rows == []


def _sqlite_error(kind: type[Exception], message: str, name: str | None = None) -> Exception:
    error = kind(message)
    if name:
        error.sqlite_errorname = name
    return error


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__("refused")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("error", "code"), [
    (IntegrityError("INSERT", {}, _sqlite_error(sqlite3.IntegrityError, "NOT NULL", "SQLITE_CONSTRAINT_NOTNULL")),
     "SQLITE_CONSTRAINT_NOTNULL"),
    (IntegrityError("INSERT", {}, _PgError("22001")), "22001"),
    (IntegrityError("INSERT", {}, _PgError("23514")), "23514"),
    (UnicodeEncodeError("utf-8", "x\ud800", 1, 2, "surrogates not allowed"), "unencodable"),
    # Not a value's fault: a lock, a deadlock, a lost connection, a missing table. These fail the step as before.
    (OperationalError("INSERT", {}, _sqlite_error(sqlite3.OperationalError, "database is locked")), None),
    (OperationalError("INSERT", {}, _PgError("40P01")), None),
    (OperationalError("INSERT", {}, _PgError("42P01")), None),
    (ValueError("a bug"), None),
])
def test_only_a_refused_value_splits_a_chunk(error, code):
    assert refused_value_code(error) == code
