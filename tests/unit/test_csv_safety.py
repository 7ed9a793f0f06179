"""CSV files we write cannot run formulas in a spreadsheet (OWASP CSV injection): text cells get a leading quote."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert

from leadflow.crm.schema import Lead, LeadSubmission
from leadflow.domain import reports as rpt
from leadflow.domain.privacy import FORMULA_PREFIXES, neutralize_formulas
from leadflow.io.report_files import to_csv_text
from leadflow.steps import reports as report_steps

EVIL = '=HYPERLINK("http://evil.example/x","click")'


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_each_formula_prefix_gets_a_leading_quote(prefix):
    frame = pd.DataFrame({"text": [f"{prefix}1+1", "plain"], "typed": pd.array([f"{prefix}x", "y"], dtype="string")})
    out = neutralize_formulas(frame)
    assert out["text"].tolist() == [f"'{prefix}1+1", "plain"]
    assert out["typed"].tolist() == [f"'{prefix}x", "y"] and out["typed"].dtype == frame["typed"].dtype
    assert frame["text"].iloc[0] == f"{prefix}1+1", "the input frame is left as it was"


def test_numbers_and_missing_values_stay_as_they_are():
    frame = pd.DataFrame({"n": [-3.5, np.nan, 2.0], "i": pd.array([-1, None, 3], dtype="Int64"),
                          "mixed": pd.Series([-3.5, None, "=x"], dtype=object),
                          "s": pd.array(["-x", pd.NA, "ok"], dtype="string")})
    out = neutralize_formulas(frame)
    assert out["n"].iloc[0] == -3.5 and np.isnan(out["n"].iloc[1])
    assert out["i"].dtype == "Int64" and out["i"].iloc[0] == -1 and pd.isna(out["i"].iloc[1])
    assert out["mixed"].iloc[0] == -3.5 and out["mixed"].iloc[1] is None and out["mixed"].iloc[2] == "'=x"
    assert out["s"].iloc[0] == "'-x" and pd.isna(out["s"].iloc[1])
    assert to_csv_text(frame).splitlines()[1].startswith("-3.5,-1,-3.5,'-x")


def test_a_formula_in_a_utm_value_is_neutralized_in_the_monthly_report_csv(sqlite_crm, tmp_path):
    at = datetime(2025, 3, 3, tzinfo=UTC)
    with sqlite_crm.begin() as conn:
        conn.execute(insert(Lead.__table__), [{
            "id": 1, "email": "lead1@example.com", "created_at": at, "updated_at": at, "is_spam": False,
            "first_touch_at": at, "last_touch_at": at, "first_touch_source": "web_form",
            "last_touch_source": "web_form", "first_touch_utm_medium": EVIL, "first_touch_utm_source": "@cmd"}])
        conn.execute(insert(LeadSubmission.__table__), [{
            "idempotency_key": "s1", "lead_id": 1, "batch_id": "b", "source": "web_form", "submitted_at": at,
            "received_at": at, "raw_payload": {}}])
    month = "2025-03"
    as_of = rpt.month_bounds(month)[1]
    volume = report_steps.aggregate_monthly_lead_volume(sqlite_crm, month)
    conversion = report_steps.lead_conversion_report(sqlite_crm, month, 1, as_of)
    report = report_steps.assemble_report(month, as_of, volume, conversion)
    published = report_steps.publish_monthly_report(sqlite_crm, report, ["csv"],
                                                    report_steps.check_report(report), tmp_path)
    [path] = [p for p in published["files"]["csv"] if p.endswith("-volume.csv")]
    with open(path, newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    # the report reads stored UTM tags folded (lower case), as intake now stores them
    assert f"'{EVIL.lower()} / @cmd" in cells
    assert not [cell for cell in cells if cell.startswith(("=", "+", "@", "\t", "\r"))]
