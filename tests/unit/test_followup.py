"""The cadence policy and the follow-up, recycle and returning-lead rules, each with its failure path beside it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from leadflow.config.policy import POLICY_DIR, PolicyError
from leadflow.domain import followup as fu

POLICY = fu.load_cadence_policy()


def _policy_with(**change) -> dict:
    data = json.loads((POLICY_DIR / "cadence.json").read_text(encoding="utf-8"))
    data.update(change)
    return data


def test_the_shipped_policy_loads_and_its_templates_exist():
    from leadflow.domain.messages import TEMPLATE_DIR

    assert POLICY.version and POLICY.cadences[-1].matches_all()
    for cadence in POLICY.cadences:
        for step in cadence.steps:
            assert step.template is None or (TEMPLATE_DIR / step.template).is_file()


@pytest.mark.parametrize(("change", "message"), [
    ({"cadences": [{"name": "a", "tiers": ["tier_1"], "steps": [{"day": 1, "kind": "call", "hour": 9}]}]},
     "last cadence"),
    ({"cadences": [{"name": "a", "tiers": ["gold"], "steps": [{"day": 1, "kind": "call", "hour": 9}]}]},
     "unknown tiers"),
    ({"cadences": [{"name": "a", "steps": [{"day": 2, "kind": "call", "hour": 9},
                                          {"day": 1, "kind": "call", "hour": 9}]}]}, "order"),
    ({"cadences": [{"name": "a", "steps": [{"day": 1, "kind": "email", "hour": 9}]}]}, "needs template"),
    ({"cadences": [{"name": "a", "steps": [{"day": 1, "kind": "call", "hour": 9, "template": "x.j2"}]}]},
     "takes no template"),
    ({"cadences": [{"name": "a", "steps": [{"day": 1, "kind": "fax", "hour": 9}]}]}, "kind"),
    ({"cadences": [{"name": "a", "steps": [{"day": 1, "kind": "call", "hour": 24}]}]}, "hour"),
    ({"enroll_statuses": ["recycled"]}, "enroll_statuses"),
    ({"business_days": [7]}, "business_days"),
    ({"stop_outcomes": ["replied"]}, "every outcome"),
    ({"recycle": {"delays": {"six_months": 182}, "default_delay": 90, "terminal_reasons": ["six_months"],
                  "cold_after_days": 90}}, "both terminal and timing"),
    ({"recycle": {"delays": {"forever": 5000}, "default_delay": 90, "cold_after_days": 90}}, "1 to 1095"),
    ({"version": ""}, "version"),
])
def test_an_invalid_policy_is_refused_with_a_reason(tmp_path, change, message):
    path = tmp_path / "cadence.json"
    path.write_text(json.dumps(_policy_with(**change)), encoding="utf-8")
    with pytest.raises(PolicyError, match=message):
        fu.load_cadence_policy(str(path))


@pytest.mark.parametrize(("tier", "channel", "expected"), [
    ("tier_1", "event", "tier_1_event"),
    ("tier_1", "web_form", "tier_1"),
    ("tier_4", "event", "tier_2"),
    ("tier_3", "event", "standard"),
    (None, None, "standard"),
])
def test_each_lead_gets_the_first_matching_cadence(tier, channel, expected):
    chosen = fu.choose_cadences(pd.Series([tier]), pd.Series([channel]), POLICY)
    assert chosen.iloc[0] == expected


@pytest.mark.parametrize(("start", "day", "hour", "tz", "expected"), [
    # Tuesday 08:00 UTC, day 1 at 10:00 Berlin (UTC+1 in December) -> Wednesday 09:00 UTC.
    ("2026-12-01T08:00Z", 1, 10, "Europe/Berlin", "2026-12-02T09:00Z"),
    # The local start date counts: 23:30 UTC Tuesday is Wednesday in Berlin.
    ("2026-12-01T23:30Z", 1, 10, "Europe/Berlin", "2026-12-03T09:00Z"),
    # Friday + 1 day is Saturday: moved to Monday.
    ("2026-12-04T08:00Z", 1, 9, "UTC", "2026-12-07T09:00Z"),
    # New York: UTC-5.
    ("2026-12-01T15:00Z", 2, 15, "America/New_York", "2026-12-03T20:00Z"),
    # Day 0 at an hour already past: due at once (before the start).
    ("2026-12-01T15:00Z", 0, 9, "UTC", "2026-12-01T09:00Z"),
])
def test_steps_fall_due_in_business_hours_of_the_reps_time_zone(start, day, hour, tz, expected):
    due = fu.due_times(pd.Series([pd.Timestamp(start)]), pd.Series([day]), pd.Series([hour]), pd.Series([tz]),
                       POLICY.business_days)
    assert due.iloc[0] == pd.Timestamp(expected)


@pytest.mark.parametrize(("name", "expected"), [
    ("Europe/Paris", "Europe/Paris"), (None, "UTC"), ("", "UTC"), ("Mars/Olympus", "UTC"), ("../etc", "UTC"),
])
def test_a_missing_or_unknown_rep_time_zone_falls_back_to_the_default(name, expected):
    assert fu.zone(name, "UTC") == expected


def test_steps_of_finds_each_step_and_none_past_the_last():
    found = fu.steps_of(pd.Series(["tier_1", "tier_1", "tier_1", "gone"]), pd.Series([0, 5, 6, 0]), POLICY)
    assert found["kind"].tolist()[:2] == ["call", "breakup"]
    assert bool(found["last"].iloc[1]) is True
    assert found["kind"].iloc[2:].isna().all()


@pytest.mark.parametrize(("status", "spam", "owner", "expected"), [
    ("working", False, 1, None),
    ("qualified", False, 1, None),
    ("discovery_call_booked", False, 1, "status:discovery_call_booked"),
    ("recycled", False, 1, "status:recycled"),
    ("working", True, 1, "spam"),
    ("working", False, None, "no_owner"),
])
def test_a_sequence_stops_when_the_status_changes_or_the_lead_has_no_owner(status, spam, owner, expected):
    reason = fu.stop_reasons(pd.Series([status]), pd.Series([spam]), pd.Series([owner], dtype="Int64"), POLICY)
    assert (None if pd.isna(reason.iloc[0]) else reason.iloc[0]) == expected


@pytest.mark.parametrize(("typed", "outcome", "effect"), [
    ("No answer", "no_answer", "advance"), ("voicemail", "left_voicemail", "advance"),
    ("Replied", "replied", "stop"), ("meeting booked", "meeting_booked", "stop"),
])
def test_outcomes_advance_or_stop(typed, outcome, effect):
    assert fu.parse_outcome(typed) == outcome
    assert fu.outcome_effect(outcome, POLICY) == effect


@pytest.mark.parametrize("typed", ["working", "", None, "maybe"])
def test_what_is_no_outcome_is_not_taken_for_one(typed):
    assert fu.parse_outcome(typed) is None
    with pytest.raises(ValueError, match="unknown follow-up outcome"):
        fu.outcome_effect(str(typed), POLICY)


NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(("reason", "on", "strict", "expected", "error"), [
    ("six_months", None, True, NOW + pd.Timedelta(days=182), None),
    ("next_quarter", None, True, pd.Timestamp("2027-01-01T00:00Z"), None),
    (None, datetime(2027, 3, 1), True, pd.Timestamp("2027-03-01T00:00Z"), None),
    ("whenever", None, False, NOW + pd.Timedelta(days=91), None),
    ("whenever", None, True, None, "recycle_needs_reengage_date_or_known_reason"),
    (None, None, True, None, "recycle_needs_reengage_date_or_known_reason"),
    (None, datetime(2026, 11, 1), True, None, "reengage_date_not_in_future"),
])
def test_a_recycled_lead_gets_a_reengage_date_from_a_date_or_its_reason(reason, on, strict, expected, error):
    when, problem = fu.reengage_at(NOW, reason, on, POLICY, "UTC", strict=strict)
    assert (when, problem) == (expected, error)


@pytest.mark.parametrize(("moment", "expected"), [
    ("2026-02-10T00:00Z", "2026-04-01T00:00Z"), ("2026-12-31T23:00Z", "2027-01-01T00:00Z"),
    ("2026-07-01T00:00Z", "2026-10-01T00:00Z"),
])
def test_next_quarter_is_the_first_day_of_the_next_quarter(moment, expected):
    assert fu.next_quarter(pd.Timestamp(moment).to_pydatetime(), "UTC") == pd.Timestamp(expected)


@pytest.mark.parametrize(("status", "reason", "days_ago", "expected"), [
    ("recycled", "six_months", 5, "recycled"),
    ("disqualified", "bad_timing", 5, "timing:bad_timing"),
    ("disqualified", "budget_frozen", 5, "timing:budget_frozen"),
    ("disqualified", "not_a_fit", 500, None),  # terminal: a newsletter click does not resurrect it
    ("disqualified", "no_budget", 500, None),  # not about timing
    ("working", None, 120, "cold"),
    ("working", None, 30, None),
    ("converted", None, 500, None),
    ("new", None, None, None),
])
def test_who_returns_on_a_new_submission(status, reason, days_ago, expected):
    before = pd.Series([NOW - pd.Timedelta(days=days_ago) if days_ago is not None else pd.NaT])
    why = fu.returning(pd.Series([status]), pd.Series([reason], dtype="string"), before, NOW, POLICY)
    assert (None if pd.isna(why.iloc[0]) else why.iloc[0]) == expected


START, END = pd.Timestamp("2026-12-01T00:00Z"), pd.Timestamp("2027-01-01T00:00Z")
AS_OF = pd.Timestamp("2027-01-01T06:00Z")


def _tasks(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["lead_id", "kind", "status", "created_at", "due_at", "completed_at"]).astype(
        {"created_at": "datetime64[us, UTC]", "due_at": "datetime64[us, UTC]", "completed_at": "datetime64[us, UTC]"})


def test_report_figures_count_steps_stuck_leads_punctual_steps_and_reengaged_conversion():
    sequences = pd.DataFrame({"cadence": ["tier_1", "standard"], "step": [0, 2], "leads": [2, 1]})
    tasks = _tasks(
        (1, "followup_call", "done", "2026-12-02T10:00Z", "2026-12-03T10:00Z", "2026-12-02T12:00Z"),  # on time
        (2, "followup_call", "done", "2026-12-02T10:00Z", "2026-12-03T10:00Z", "2026-12-04T12:00Z"),  # late
        (3, "followup_call", "open", "2026-12-10T10:00Z", "2026-12-11T10:00Z", None),  # stuck (3 weeks)
        (3, "followup_social", "open", "2026-12-29T10:00Z", "2026-12-30T10:00Z", None),  # open, not stuck yet
        (1, "followup_email", "done", "2026-12-02T10:00Z", None, "2026-12-02T10:00Z"),  # sent: not a rep step
        (2, "followup_call", "done", "2026-11-02T10:00Z", "2026-11-03T10:00Z", "2026-11-03T09:00Z"),  # last month
    )
    returns = pd.DataFrame({"lead_id": [7, 8, 8, 9], "status": ["converted", "working", "working", "converted"],
                            "occurred_at": pd.to_datetime(["2026-12-05T00:00Z", "2026-12-06T00:00Z",
                                                           "2026-12-07T00:00Z", "2026-11-05T00:00Z"], utc=True)})
    figures = fu.report_figures(sequences, tasks, returns, START, END, AS_OF)
    assert figures["leads_per_step"] == [{"cadence": "standard", "step": 3, "leads": 1},
                                         {"cadence": "tier_1", "step": 1, "leads": 2}]
    assert (figures["active_sequences"], figures["stuck_leads"]) == (3, 1)
    assert (figures["rep_steps_due"], figures["rep_steps_on_time"], figures["on_time_rate"]) == (4, 1, 0.25)
    assert (figures["reengaged"], figures["reengaged_converted"], figures["reengaged_conversion"]) == (2, 1, 0.5)


def test_report_figures_of_a_month_without_follow_up_have_no_rates():
    figures = fu.report_figures(pd.DataFrame(columns=["cadence", "step", "leads"]), _tasks(),
                                pd.DataFrame(columns=["lead_id", "status", "occurred_at"]), START, END, AS_OF)
    assert figures == {"leads_per_step": [], "active_sequences": 0, "stuck_leads": 0, "rep_steps_due": 0,
                       "rep_steps_on_time": 0, "on_time_rate": None, "reengaged": 0, "reengaged_converted": 0,
                       "reengaged_conversion": None}
