"""Follow-up outcomes and recycle dates through the status import, and migration 0025 both ways, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select

from leadflow.crm import reference
from leadflow.crm.followup import followup_tasks, followups_frame
from leadflow.crm.schema import CrmTask, Lead, LeadEvent, SalesRep
from leadflow.crm.store import MIGRATIONS
from leadflow.domain.followup import load_cadence_policy
from leadflow.steps.followup import follow_up
from leadflow.steps.status import import_status_file, set_status

T0 = datetime(2026, 12, 1, 6, tzinfo=UTC)
NOW = datetime(2026, 12, 3, 21, tzinfo=UTC)


@pytest.fixture
def crm_l(crm):
    """Three working tier-1 leads of Ava's, each with the first step (a call) of its sequence open."""
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    with crm.engine.connect() as conn:
        ava = conn.execute(select(SalesRep.id).where(SalesRep.email == "ava.moreno@leadflow.example")).scalar_one()
    with crm.begin() as conn:
        conn.execute(Lead.__table__.insert(), [
            {"email": f"{name}@example.com", "tier": "tier_1", "owner_id": ava, "status": "working",
             "first_touch_at": T0, "last_touch_at": T0, "first_touch_source": "web_form",
             "last_touch_source": "web_form", "created_at": T0, "updated_at": T0}
            for name in ("a", "b", "c")])
    policy = load_cadence_policy()
    follow_up(crm, policy, T0, "UTC")
    follow_up(crm, policy, datetime(2026, 12, 2, 15, tzinfo=UTC), "UTC")
    assert set(followup_tasks(crm)["status"]) == {"open"}
    return crm


def test_outcomes_and_recycled_rows_of_a_status_import_apply_once(crm_l, tmp_path):
    path = tmp_path / "status.csv"
    pd.DataFrame({
        "Email": ["a@example.com", "b@example.com", "c@example.com", "nobody@example.com", "a@example.com"],
        "Lead Status": ["Left voicemail", "Replied", "Recycled", "No answer", "Maybe later"],
        "Reason": ["", "", "Talk to my successor", "", ""],
        "Changed At": ["2026-12-03T10:00Z", "2026-12-03T11:00Z", "2026-12-03T12:00Z", "2026-12-03T12:00Z",
                       "2026-12-03T12:00Z"],
    }).to_csv(path, index=False)
    result = import_status_file(crm_l, path, NOW)
    assert (result.rows, result.applied, result.already_recorded) == (5, 3, 0)
    assert [(r.row, r.reason) for r in result.rejected] == [(4, "unknown_lead"), (5, "unknown_status")]
    state = followups_frame(crm_l).merge(pd.DataFrame({"lead_id": [1, 2, 3], "name": ["a", "b", "c"]}))
    state = state.set_index("name")
    assert state.loc["a", ["state", "last_outcome"]].tolist() == ["active", "left_voicemail"]
    assert state.loc["b", ["state", "stop_reason"]].tolist() == ["stopped", "replied"]
    # No date and a reason the policy does not know: an import's recycled row gets the default delay.
    assert state.loc["c", ["state", "recycle_reason"]].tolist() == ["recycled", "talk_to_my_successor"]
    assert state.loc["c", "reengage_at"] == pd.Timestamp("2026-12-03T12:00Z") + pd.Timedelta(days=91)
    tasks = followup_tasks(crm_l).set_index("lead_id")["status"].to_dict()
    assert tasks == {1: "done", 2: "done", 3: "cancelled"}

    again = import_status_file(crm_l, path, NOW)
    assert (again.applied, again.already_recorded) == (0, 3)
    with crm_l.engine.connect() as conn:
        outcomes = conn.execute(select(LeadEvent.lead_id).where(LeadEvent.event_type == "followup_outcome")).all()
    assert sorted(i for (i,) in outcomes) == [1, 2]


@pytest.mark.parametrize(("status", "reason", "on", "problem"), [
    ("recycled", None, None, "recycle_needs_reengage_date_or_known_reason"),
    ("recycled", "whenever", None, "recycle_needs_reengage_date_or_known_reason"),
    ("recycled", None, datetime(2026, 1, 1), "reengage_date_not_in_future"),
    ("no_answer", None, None, None),
    ("recycled", "next_quarter", None, None),
])
def test_the_command_wants_a_reengage_date_or_a_known_reason(crm_l, status, reason, on, problem):
    result = set_status(crm_l, "a@example.com", status, reason, NOW, reengage_on=on, strict_recycle=True)
    assert [r.reason for r in result.rejected] == ([problem] if problem else [])
    with crm_l.engine.connect() as conn:
        current = conn.execute(select(Lead.status).where(Lead.email == "a@example.com")).scalar_one()
    assert current == ("recycled" if status == "recycled" and not problem else "working")
    if status == "recycled" and not problem:
        assert followups_frame(crm_l).set_index("lead_id").loc[1, "reengage_at"] == pd.Timestamp("2027-01-01T00:00Z")


def test_migration_0025_goes_down_and_up_with_rows_in_place(crm_l):
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))

    def migrate(revision: str, down: bool = False) -> None:
        with crm_l.engine.begin() as conn:
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, revision)

    from alembic.script import ScriptDirectory

    from leadflow.crm.store import head_revision

    migrate(ScriptDirectory.from_config(config).get_revision("0025_followup").down_revision, down=True)
    try:
        with crm_l.engine.connect() as conn:
            assert conn.execute(select(CrmTask.id)).all()  # the step tasks stay, as tasks
    finally:
        migrate("heads")
    assert crm_l.revision() == head_revision()
    assert followups_frame(crm_l).empty


def test_a_lead_recycled_without_a_date_gets_one_from_its_reason_or_the_default(crm_l):
    from sqlalchemy import update

    # A CRM export's own state recycles leads with no date: the next follow-up run gives them one.
    with crm_l.begin() as conn:
        conn.execute(update(Lead).where(Lead.email == "a@example.com").values(status="recycled",
                                                                              status_reason="six_months"))
        conn.execute(update(Lead).where(Lead.email == "b@example.com").values(status="recycled", status_reason=None))
    policy = load_cadence_policy()
    result, _ = follow_up(crm_l, policy, NOW, "UTC")
    assert result.recycle_scheduled == 2 and result.stopped == {"status:recycled": 2}
    state = followups_frame(crm_l).set_index("lead_id")
    assert state.loc[1, "reengage_at"] == pd.Timestamp(NOW) + pd.Timedelta(days=182)
    assert state.loc[2, "reengage_at"] == pd.Timestamp(NOW) + pd.Timedelta(days=91)
    assert list(state.loc[[1, 2], "state"]) == ["recycled", "recycled"]
    again, _ = follow_up(crm_l, policy, NOW, "UTC")
    assert again.recycle_scheduled == 0
    # On the date, the lead is back with its owner.
    back, reengaged = follow_up(crm_l, policy, datetime(2027, 3, 5, tzinfo=UTC), "UTC")
    assert back.reengaged == 1 and reengaged.to_owner == [2]


@pytest.mark.parametrize("stop", [True, False], ids=["replies stop", "replies advance (a policy's choice)"])
def test_mail_replies_note_the_outcome_and_stop_only_when_the_policy_says(crm_l, stop):
    from leadflow.crm.followup import record_mail_replies

    with crm_l.engine.connect() as conn:
        ids = dict(conn.execute(select(Lead.email, Lead.id)).all())
    with crm_l.begin() as conn:
        conn.execute(Lead.__table__.insert(), [{"email": "new@example.com", "status": "new", "created_at": T0,
                                                "updated_at": T0, "first_touch_at": T0, "last_touch_at": T0,
                                                "first_touch_source": "web_form", "last_touch_source": "web_form"}])
        new_id = conn.execute(select(Lead.id).where(Lead.email == "new@example.com")).scalar_one()
        replies = pd.DataFrame({"lead_id": [ids["a@example.com"], new_id], "at": [NOW, NOW], "stop": stop,
                                "details": [{"outcome": "replied", "by": "mailbox"}] * 2})
        stopped = record_mail_replies(conn, crm_l, replies, NOW)
    assert stopped == (1 if stop else 0)
    state = followups_frame(crm_l).set_index("lead_id")
    assert new_id not in state.index  # a lead without a sequence gets none
    assert state.loc[ids["a@example.com"], "last_outcome"] == "replied"
    assert state.loc[ids["a@example.com"], "state"] == ("stopped" if stop else "active")
    assert state.loc[ids["b@example.com"], "state"] == "active"
    assert pd.isna(state.loc[ids["b@example.com"], "last_outcome"])
    tasks = followup_tasks(crm_l).set_index("lead_id")["status"]
    assert tasks.loc[ids["a@example.com"]] == ("cancelled" if stop else "done")
    assert tasks.loc[ids["b@example.com"]] == "open"
    with crm_l.engine.connect() as conn:
        events = conn.execute(select(LeadEvent.lead_id).where(LeadEvent.event_type == "followup_outcome")).all()
    assert [e.lead_id for e in events] == [ids["a@example.com"]]
