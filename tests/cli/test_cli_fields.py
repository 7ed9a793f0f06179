"""`leadflow intake` and `leadflow backfill` with --default-country and --date-order."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from deployments.cli import app
from tests.helpers import lead, write_csv

runner = CliRunner()


def test_intake_reads_phones_in_the_default_country_and_dates_in_the_given_order(sqlite_crm, tmp_path):
    path = write_csv(tmp_path / "leads.csv", [lead("a@example.com", "07/05/2019", phone="918-730-3911"),
                                              lead("b@example.com", "01/02/2020", phone="call me")])
    result = runner.invoke(app, ["intake", path, "--default-country", "us", "--date-order", "dmy", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["date_order"] == {"column": "submitted_at", "order": "dmy", "basis": "fallback"}
    assert summary["field_warnings"] == {"phone_unparsed": 1}
    with sqlite_crm.engine.connect() as conn:
        leads = pd.read_sql("SELECT email, phone, first_touch_at FROM leads ORDER BY email", conn)
    assert leads["phone"].tolist()[0] == "+19187303911"
    assert [str(t)[:10] for t in leads["first_touch_at"]] == ["2019-05-07", "2020-02-01"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["intake", "LEADS", "--default-country", "Narnia"], "unknown default country 'Narnia'"),
        (["intake", "LEADS", "--date-order", "ymd"], "unknown date order 'ymd'"),
        (["backfill", "LEADS", "--start", "2025-01-01", "--end", "2025-01-31", "--default-country", "Narnia"],
         "unknown default country 'Narnia'"),
    ],
)
def test_unknown_country_or_date_order_is_a_one_line_error(sqlite_crm, tmp_path, command, message):
    command = [write_csv(tmp_path / "leads.csv", [lead("a@b.com")]) if c == "LEADS" else c for c in command]
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert message in line
    assert sqlite_crm.table_counts()["intake_batches"] == 0
