"""Intake of real-world shapes end to end (no Prefect): channels and UTM tags, short rows, blank lines, nested JSON."""

from __future__ import annotations

import codecs
import json

from sqlalchemy import select

from leadflow.crm.schema import Lead, LeadSubmission, QuarantineRecord
from tests.helpers import run_intake


def test_channels_utm_short_rows_and_blank_lines_of_a_utf16_export(sqlite_crm, tmp_path):
    text = (
        "Email,Created Date,Lead Source,Company,utm_source,utm_medium,utm_campaign\n"
        "ann@acme.com,2025-03-01 10:00,Email Marketing,Acme,Newsletter,E-mail,Spring Sale 2025\n"
        "bo@beta.io,2025-03-01 11:00,Online Form,Beta,Google,PPC,spring-sale-2025\n"
        "cy@gamma.de,2025-03-01 12:00,Podcast,Gamma GmbH,google,cpc,SPRING_SALE_2025\n"
        "di@delta.fr,2025-03-01 13:00,podcast,Delta\n"
        "ed@eps.com,2025-03-01 14:00,PAID_SEARCH,Eps,adwords,paid_search,brand\n"
        "\n\n"
    )
    path = tmp_path / "hubspot.csv"
    path.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    summary = run_intake(sqlite_crm, str(path))
    assert summary["rows_read"] == 7 and summary["blank_rows"] == 2 and summary["submissions_new"] == 4
    # the short row is one malformed row, not three "missing" reasons
    assert summary["quarantined_by_reason"] == {"malformed_row": 1}
    # one accepted row named an unknown channel: counted, but not named (a single value may be a wrong column)
    assert summary["unknown_channels"] == {"(other)": 1}
    assert summary["channel_vocabulary"] == "2026.12-1"
    with sqlite_crm.engine.connect() as conn:
        subs = conn.execute(select(LeadSubmission.source, LeadSubmission.utm_source, LeadSubmission.utm_medium,
                                   LeadSubmission.utm_campaign).order_by(LeadSubmission.submitted_at)).all()
        quarantined = conn.execute(select(QuarantineRecord.reason_codes, QuarantineRecord.raw_payload)).one()
    assert [tuple(row) for row in subs] == [
        ("email_campaign", "newsletter", "email", "spring_sale_2025"),
        ("web_form", "google", "cpc", "spring_sale_2025"),
        ("podcast", "google", "cpc", "spring_sale_2025"),
        ("paid_search", "google", "cpc", "brand"),
    ]
    assert quarantined.reason_codes == "malformed_row"
    assert json.loads(quarantined.raw_payload["_malformed"]) == ["di@delta.fr", "2025-03-01 13:00", "podcast",
                                                                 "Delta"]
    assert run_intake(sqlite_crm, str(path))["submissions_new"] == 0


def test_unknown_channels_seen_twice_are_named_in_the_summary(sqlite_crm, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("email,submitted_at,source\n" + "".join(
        f"p{i}@acme.com,2025-03-0{i + 1}T10:00:00Z,{s}\n"
        for i, s in enumerate(["Podcast", "podcast ", "Billboard", "Web"])))
    summary = run_intake(sqlite_crm, str(path))
    assert summary["unknown_channels"] == {"podcast": 2, "(other)": 1}


def test_nested_json_is_flattened_or_quarantined_never_stored_as_a_repr(sqlite_crm, tmp_path):
    path = tmp_path / "people.jsonl"
    rows = [
        {"email": "ann@acme.com", "submitted_at": "2025-03-01T10:00:00Z", "source": "Web",
         "name": {"given": "Ann", "family": "Lee"}, "company": {"name": "Acme"}, "job_title": "CEO"},
        {"email": "bo@beta.io", "submitted_at": "2025-03-01T11:00:00Z", "source": "Web", "job_title": ["CEO", "CTO"]},
        {"email": ["cy@gamma.de"], "submitted_at": "2025-03-01T12:00:00Z", "source": "Web"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    column_map = {"name.given": "first_name", "name.family": "last_name", "company.name": "company"}
    summary = run_intake(sqlite_crm, str(path), column_map=column_map)
    assert summary["submissions_new"] == 1
    # each row says once why: the list stands where a value belongs (its field is not also "missing")
    assert summary["quarantined_by_reason"] == {"nested_value": 2}
    with sqlite_crm.engine.connect() as conn:
        lead = conn.execute(select(Lead.first_name, Lead.last_name, Lead.company)).one()
        order = QuarantineRecord.row_number
        payloads = conn.execute(select(QuarantineRecord.raw_payload).order_by(order)).scalars().all()
        stored = conn.execute(select(LeadSubmission.raw_payload)).scalar_one()
    assert tuple(lead) == ("Ann", "Lee", "Acme")
    assert stored["name.given"] == "Ann" and stored["company.name"] == "Acme"
    assert payloads[0]["job_title"] == ["CEO", "CTO"] and payloads[1]["email"] == ["cy@gamma.de"]
    assert "{'" not in json.dumps([tuple(lead), payloads, stored])


def test_a_submission_without_its_lead_fails_without_naming_the_address():
    import numpy as np
    import pandas as pd
    import pytest

    from leadflow.steps.intake import _ids_of

    emails = pd.Series(["ann@acme.io", "bo@beta.io"])
    assert _ids_of(emails, {"ann@acme.io": 1, "bo@beta.io": 2}).tolist() == [1, 2]
    assert _ids_of(emails.iloc[:0], {}).dtype == np.int64
    with pytest.raises(ValueError, match=r"^1 submissions have no lead after the upsert$"):
        _ids_of(emails, {"ann@acme.io": 1})
