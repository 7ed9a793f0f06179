"""`leadflow matches`: the needs_review queue, a person's decision, and later runs keeping it."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from deployments.cli import app
from flows.intake import lead_intake
from leadflow.crm import reference
from leadflow.crm.schema import Account, Lead, LeadEvent
from tests.helpers import lead, write_csv

runner = CliRunner()


def _json(output: str) -> dict:
    return json.loads(output[output.index("{"):])


def _lead(crm, email: str) -> dict:
    with crm.engine.connect() as conn:
        row = conn.execute(select(Lead.id, Lead.account_id, Lead.match_details).where(Lead.email == email)).one()
    details = row.match_details if isinstance(row.match_details, dict) else json.loads(row.match_details)
    return {"id": row.id, "account_id": row.account_id, "details": details}


def _account(crm, name: str) -> int:
    with crm.engine.connect() as conn:
        return conn.execute(select(Account.id).where(Account.name == name)).scalar_one()


def _reviews(crm) -> int:
    with crm.engine.connect() as conn:
        return len(conn.execute(select(LeadEvent.id).where(LeadEvent.event_type == "match_reviewed")).all())


def _intake(crm, tmp_path) -> None:
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    reference.load_accounts(crm, reference.DATA_DIR / "accounts.csv")
    # Free-mail addresses: the company name is all there is to match on, and both names are near an account's.
    path = write_csv(tmp_path / "l.csv", [
        lead("jo.miller@gmail.com", company="Acmee", country="US"),
        lead("kim.lee@yahoo.com", company="Globx", country="DE"),
        lead("pat@initech.com", company="Initech", country="US"),
    ])
    lead_intake(path=path)


def test_review_link_and_new_account_are_kept_by_later_runs(crm, tmp_path):
    _intake(crm, tmp_path)
    acme, globex = _account(crm, "Acme Corporation"), _account(crm, "Globex GmbH")
    assert _lead(crm, "pat@initech.com")["account_id"] is not None

    result = runner.invoke(app, ["matches", "review", "--json"])
    assert result.exit_code == 0, result.output
    queue = _json(result.stdout)
    assert queue["waiting"] == 2
    assert {(r["company"], r["candidate_account_id"], r["candidate_name"]) for r in queue["leads"]} == {
        ("Acmee", acme, "Acme Corporation"), ("Globx", globex, "Globex GmbH")}
    assert all(80 <= r["score"] < 92 for r in queue["leads"])
    assert "jo.miller@gmail.com" not in result.stdout and "kim.lee@yahoo.com" not in result.stdout

    jo, kim = _lead(crm, "jo.miller@gmail.com"), _lead(crm, "kim.lee@yahoo.com")
    result = runner.invoke(app, ["matches", "link", str(jo["id"]), "--reviewer", "dana", "--json"])
    assert result.exit_code == 0, result.output
    assert _json(result.stdout) == {"lead_id": jo["id"], "decision": "link", "account_id": acme,
                                    "account_created": False, "changed": True}
    linked = _lead(crm, "jo.miller@gmail.com")
    assert linked["account_id"] == acme
    assert linked["details"]["review"]["decision"] == "link" and linked["details"]["review"]["reviewer"] == "dana"
    assert linked["details"]["band"] == "needs_review"

    result = runner.invoke(app, ["matches", "new-account", str(kim["id"])])
    assert result.exit_code == 0, result.output
    assert "linked to new account" in result.stdout
    kim_after = _lead(crm, "kim.lee@yahoo.com")
    assert kim_after["account_id"] not in (None, globex)
    with crm.engine.connect() as conn:
        assert conn.execute(select(Account.name).where(Account.id == kim_after["account_id"])).scalar_one() == "Globx"

    # The same decision again changes nothing; the queue is empty.
    result = runner.invoke(app, ["matches", "link", str(jo["id"])])
    assert result.exit_code == 0 and "nothing changed" in result.stdout
    assert _reviews(crm) == 2
    result = runner.invoke(app, ["matches", "review"])
    assert result.exit_code == 0 and result.stdout.startswith("0 leads wait")

    # Requalifying keeps what people decided.
    result = runner.invoke(app, ["qualify", "jo.miller@gmail.com", "kim.lee@yahoo.com", "--no-deliver"])
    assert result.exit_code == 0, result.output
    assert _lead(crm, "jo.miller@gmail.com")["account_id"] == acme
    assert _lead(crm, "kim.lee@yahoo.com")["account_id"] == kim_after["account_id"]
    assert _lead(crm, "jo.miller@gmail.com")["details"]["review"]["decision"] == "link"


def test_review_decisions_that_cannot_apply_fail_in_one_line(sqlite_crm, tmp_path):
    _intake(sqlite_crm, tmp_path)
    jo, pat = _lead(sqlite_crm, "jo.miller@gmail.com"), _lead(sqlite_crm, "pat@initech.com")
    for args, message in (
        (["matches", "link", "987654"], "no lead with id 987654"),
        (["matches", "link", str(jo["id"]), "987654"], "no account with id 987654"),
        (["matches", "new-account", str(pat["id"])], "already linked to account"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    # A lead linked by a person to another account cannot be re-decided as new.
    assert runner.invoke(app, ["matches", "link", str(jo["id"])]).exit_code == 0
    result = runner.invoke(app, ["matches", "new-account", str(jo["id"])])
    assert result.exit_code == 2 and "already linked" in result.stderr
