"""A CRM export's own state as tables: the status map, flag parsing, owners, and the message freshness rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from leadflow.config.policy import POLICY_DIR, PolicyError
from leadflow.domain import crm_state
from leadflow.domain.crm_state import load_status_map
from leadflow.domain.qualification import load_qualification_policy
from leadflow.domain.spam import NEVER_FLAGGED

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
MAP = load_status_map()


@pytest.mark.parametrize(("value", "lifecycle", "expected"), [
    # Salesforce Lead Status (the standard picklist)
    ("Open - Not Contacted", False, "new"), ("Working - Contacted", False, "working"),
    ("Closed - Converted", False, "converted"), ("Closed - Not Converted", False, "disqualified"),
    # HubSpot lead status (internal values) and lifecycle stages
    ("NEW", False, "new"), ("OPEN", False, "new"), ("IN_PROGRESS", False, "working"),
    ("OPEN_DEAL", False, "converted"), ("UNQUALIFIED", False, "disqualified"),
    ("ATTEMPTED_TO_CONTACT", False, "working"), ("CONNECTED", False, "working"), ("BAD_TIMING", False, "recycled"),
    ("subscriber", True, "new"), ("lead", True, "new"), ("marketingqualifiedlead", True, "new"),
    ("salesqualifiedlead", True, "qualified"), ("opportunity", True, "converted"), ("customer", True, "converted"),
    ("evangelist", True, "converted"), ("other", True, None),
    # Zoho CRM Lead Status
    ("Not Contacted", False, "new"), ("Attempted to Contact", False, "working"),
    ("Contact in Future", False, "recycled"), ("Pre-Qualified", False, "working"),
    ("Junk Lead", False, "disqualified"), ("Lost Lead", False, "disqualified"),
    ("Not Qualified", False, "disqualified"),
    # SuiteCRM, Pipedrive, Dynamics 365 status reasons
    ("In Process", False, "working"), ("Dead", False, "disqualified"), ("Won", False, "converted"),
    ("Lost", False, "disqualified"), ("Cannot Contact", False, "disqualified"),
    ("No Longer Interested", False, "disqualified"),
    # leadflow's own names and aliases; unknown and blank values map to nothing; spam is never imported
    ("discovery_call_booked", False, "discovery_call_booked"), ("Meeting Booked", False, "discovery_call_booked"),
    ("Purple", False, None), ("", False, None), (None, False, None), ("spam", False, None),
])
def test_status_map(value, lifecycle, expected):
    assert MAP.lookup(value, lifecycle=lifecycle) == expected


def _policy_file(tmp_path, **changes) -> str:
    data = json.loads((POLICY_DIR / "status_map.json").read_text(encoding="utf-8"))
    data.update(changes)
    path = tmp_path / "status_map.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def test_the_status_map_is_overridable_and_validated(tmp_path):
    custom = load_status_map(_policy_file(tmp_path, lead_statuses={"hot_prospect": "qualified"}))
    assert custom.lookup("Hot Prospect") == "qualified" and custom.lookup("Closed - Converted") is None
    for bad in ({"lead_statuses": {"x": "spam"}}, {"lead_statuses": {"x": "winning"}},
                {"closed_statuses": ["done"]}, {"lead_statuses": {"Not Folded": "new"}}, {"version": ""}):
        with pytest.raises(PolicyError):
            load_status_map(_policy_file(tmp_path, **bad))


def test_closed_statuses_are_never_flagged_as_spam():
    assert set(MAP.closed_statuses) <= set(NEVER_FLAGGED)


def _prepared(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    frame = pd.DataFrame({c: pd.Series([None] * n, dtype="string") for c in
                          ("lead_status", "lifecycle_stage", "owner", "converted", "email_opt_out", "do_not_contact")})
    for name, values in columns.items():
        frame[name] = pd.Series(values, dtype="string")
    return frame


def test_state_of_decides_status_by_converted_then_closed_then_status_then_stage():
    frame = _prepared(
        lead_status=["Open - Not Contacted", "OPEN", "Working - Contacted", None, "Purple", "Closed - Not Converted"],
        lifecycle_stage=[None, "customer", "lead", "salesqualifiedlead", None, None],
        converted=["true", None, "false", None, None, "TRUE"])
    state = crm_state.state_of(frame, MAP)
    assert state["crm_status"].tolist() == ["converted", "converted", "working", "qualified", pd.NA, "converted"]
    assert state["crm_status_original"].tolist() == ["converted: true", "customer", "Working - Contacted",
                                                     "salesqualifiedlead", pd.NA, "converted: TRUE"]
    assert state["crm_unmapped"].tolist() == [pd.NA, pd.NA, pd.NA, pd.NA, "lead_status:Purple", pd.NA]


@pytest.mark.parametrize(("parse", "values", "expected"), [
    (crm_state.parse_flag, ["true", "FALSE", "Yes", "no", "1", "0", "x", "X", " y ", "checked"],
     [True, False, True, False, True, False, True, True, True, True]),
    (crm_state.parse_flag, ["maybe", "", "  ", None, "2"], [None] * 5),
    (crm_state.parse_opt_out, ["Opted Out", "unsubscribed", "subscribed", "Opted In", "true", "0", "later"],
     [True, True, False, False, True, False, None]),
    (crm_state.parse_do_not_contact, ["Do Not Call", "DNC", "yes", "false", "whenever"],
     [True, True, True, False, None]),
    (crm_state.parse_converted, ["Converted", "Not Converted", "1", "n/a"], [True, False, True, None]),
])
def test_flag_parsing(parse, values, expected):
    out = parse(pd.Series(values, dtype="object"))
    assert out.dtype == "boolean"
    assert [None if pd.isna(v) else bool(v) for v in out] == expected


def test_flag_parsing_takes_real_booleans_and_an_opt_out_always_wins():
    assert crm_state.parse_flag(pd.Series([True, False])).tolist() == [True, False]
    opt_in = pd.Series([True, True, None, None], dtype="boolean")
    out = crm_state.with_opt_out(opt_in, pd.Series([True, False, True, None], dtype="boolean"))
    assert [None if pd.isna(v) else bool(v) for v in out] == [False, True, False, None]


def test_owners_match_active_reps_by_email_or_name():
    reps = pd.DataFrame({"id": [1, 2, 3], "email": ["ava@x.example", "liam@x.example", "gone@x.example"],
                         "name": ["Ava Moreno", "Liam Becker", "Gone Rep"], "active": [True, True, False]})
    owners = pd.Series([" AVA@x.example", "liam  becker", "Gone Rep", "005xx000001Sv6dAAC", None], dtype="string")
    assert crm_state.match_owners(owners, reps).tolist() == [1, 2, pd.NA, pd.NA, pd.NA]
    assert crm_state.match_owners(owners, reps.iloc[0:0]).isna().all()


def test_imported_reasons_are_slugs_of_the_original_value():
    assert crm_state.imported_reason("Closed - Not Converted", "disqualified") == "closed_not_converted"
    assert crm_state.imported_reason(None, "disqualified") == "imported"
    assert crm_state.imported_reason("Closed - Converted", "converted") is None


@pytest.mark.parametrize(("mode", "historical", "messages", "held"), [
    ("auto", [False, False, True, True, True], [True, True, False, False, False], {"older_than_window": 3}),
    ("none", [False, False, True, True, True], [False] * 5, {"older_than_window": 3, "messages_none": 2}),
    ("all", [False] * 5, [True] * 5, {}),
])
def test_freshness_rule(mode, historical, messages, held):
    touches = pd.Series([NOW, pd.Timestamp(NOW) - pd.Timedelta(hours=24), pd.Timestamp(NOW) - pd.Timedelta(hours=25),
                         pd.Timestamp("2023-05-01", tz="UTC"), None])
    fresh = crm_state.freshness(touches, NOW, 24, mode)
    assert fresh.historical.tolist() == historical and fresh.messages.tolist() == messages
    assert fresh.held_back == held


def test_freshness_keeps_leads_qualified_before_live_and_refuses_unknown_modes():
    touches = pd.Series([pd.Timestamp("2023-05-01", tz="UTC")] * 2)
    fresh = crm_state.freshness(touches, NOW, 24, "auto", qualified_before=np.array([True, False]))
    assert fresh.historical.tolist() == [False, True] and not fresh.messages.any()
    with pytest.raises(ValueError, match="auto, none, all"):
        crm_state.freshness(touches, NOW, 24, "sometimes")


def test_the_freshness_window_is_a_policy_value(tmp_path):
    assert load_qualification_policy().messages.fresh_hours == 24
    data = json.loads((POLICY_DIR / "qualification.json").read_text(encoding="utf-8"))
    data["messages"]["fresh_hours"] = 0
    path = tmp_path / "q.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PolicyError, match="fresh_hours"):
        load_qualification_policy(str(path))


def test_the_intake_command_refuses_an_unknown_messages_mode_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from deployments.cli import app

    result = CliRunner().invoke(app, ["intake", str(tmp_path / "leads.csv"), "--messages", "sometimes"])
    assert result.exit_code != 0
    assert "--messages must be one of auto, none, all" in result.output and "Traceback" not in result.output
