"""`leadflow api keys create|list|revoke`: a key printed once, stored hashed, listed without it, then revoked."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from deployments.cli import app
from leadflow.crm.api_keys import find_active_key
from leadflow.crm.schema import ApiKey
from leadflow.domain.api_intake import hash_key

runner = CliRunner()


def test_a_key_is_created_once_listed_without_itself_and_revoked(crm):
    made = runner.invoke(app, ["api", "keys", "create", "website", "--channel", "web_form", "--origin",
                               "HTTPS://www.Example.com/,https://shop.example.com:8443", "--json"])
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)
    assert key["allowed_origins"] == ["https://www.example.com", "https://shop.example.com:8443"]
    assert find_active_key(crm, hash_key(key["key"]))["name"] == "website"
    with crm.engine.connect() as conn:
        assert key["key"] not in str(conn.execute(select(ApiKey.__table__)).all())
    listed = runner.invoke(app, ["api", "keys", "list"])
    assert listed.exit_code == 0 and "website" in listed.stdout and key["prefix"] in listed.stdout
    assert key["key"] not in listed.stdout and "active" in listed.stdout
    revoked = runner.invoke(app, ["api", "keys", "revoke", key["prefix"]])
    assert revoked.exit_code == 0, revoked.output
    assert find_active_key(crm, hash_key(key["key"])) is None
    assert "revoked" in runner.invoke(app, ["api", "keys", "list"]).stdout


@pytest.mark.parametrize(("args", "needle"), [
    (["create", "site", "--origin", "www.example.com"], "not an origin"),
    (["create", "site", "--origin", "https://example.com/form"], "not an origin"),
    (["revoke", "nothing"], "no API key"),
])
def test_bad_key_commands_fail_in_one_line(crm, args, needle):
    result = runner.invoke(app, ["api", "keys", *args])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr


@pytest.mark.parametrize("crm", ["sqlite"], indirect=True)
def test_a_name_is_taken_once(crm):
    assert runner.invoke(app, ["api", "keys", "create", "chat"]).exit_code == 0
    again = runner.invoke(app, ["api", "keys", "create", "chat"])
    assert again.exit_code == 2 and "exists already" in again.stderr
