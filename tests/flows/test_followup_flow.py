"""lead-follow-up through eleven days of cadences and a recycle date, hour by hour, on SQLite and PostgreSQL.

The first hour and the recycle date run as the Prefect flow (with a re-run of the same hour that changes nothing);
every other hour runs the same steps without Prefect (`steps.followup.follow_up`), so the clock can move an hour at a
time. At every hour the new task keys, outbox keys and statuses must be exactly those the cadence policy foresees.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import select, update

from flows.followup import lead_follow_up
from leadflow.config.settings import get_settings
from leadflow.crm import reference
from leadflow.crm.followup import followups_frame
from leadflow.crm.schema import CrmTask, Lead, LeadEvent, OutboxMessage, SalesRep
from leadflow.domain.followup import load_cadence_policy
from leadflow.steps.followup import follow_up
from leadflow.steps.status import set_status
from tests.helpers import snapshot

T0 = datetime(2026, 12, 1, 6, tzinfo=UTC)  # a Tuesday


def at(text: str) -> datetime:
    return pd.Timestamp(text).to_pydatetime()


@pytest.fixture
def crm_f(crm, tmp_path, monkeypatch):
    """The demo reps (Ava in New York, Liam in Berlin) and five working leads of theirs."""
    monkeypatch.setenv("LEADFLOW_OUTBOX_DIR", str(tmp_path / "outbox"))
    get_settings.cache_clear()
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    with crm.engine.connect() as conn:
        reps = dict(conn.execute(select(SalesRep.email, SalesRep.id)).all())
    ava, liam = reps["ava.moreno@leadflow.example"], reps["liam.becker@leadflow.example"]
    rows = [
        ("hot@acme.example", "tier_1", True, False, ava, "Acme"),
        ("cold@beta.example", "tier_2", None, False, liam, "Beta"),
        ("meet@gamma.example", "tier_1", True, False, liam, "Gamma"),
        ("dnc@delta.example", "tier_3", True, True, ava, "Delta"),
        ("back@epsilon.example", "tier_1", True, False, ava, "Epsilon"),
    ]
    start = T0 - timedelta(days=1)
    with crm.begin() as conn:
        conn.execute(Lead.__table__.insert(), [
            {"email": e, "tier": t, "email_opt_in": o, "do_not_contact": d, "owner_id": r, "company": c,
             "first_name": "Sam", "status": "working", "first_touch_at": start, "last_touch_at": start,
             "first_touch_source": "web_form", "last_touch_source": "web_form", "created_at": start,
             "updated_at": start, "priority": "P1", "holds_capacity": True}
            for e, t, o, d, r, c in rows])
        conn.execute(update(SalesRep.__table__).where(SalesRep.id.in_([ava, liam]))
                     .values(open_leads=SalesRep.open_leads + 2))
    yield crm, {"ava": ava, "liam": liam}
    get_settings.cache_clear()


def _state(crm) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Follow-up task key -> status, outbox key -> kind, lead email -> status."""
    with crm.engine.connect() as conn:
        tasks = dict(conn.execute(select(CrmTask.idempotency_key, CrmTask.status)
                                  .where(CrmTask.kind.like("followup_%"))).all())
        mails = dict(conn.execute(select(OutboxMessage.idempotency_key, OutboxMessage.kind)).all())
        leads = dict(conn.execute(select(Lead.email, Lead.status)).all())
    return tasks, mails, leads


def _ids(crm) -> dict[str, int]:
    with crm.engine.connect() as conn:
        return {e.split("@")[0]: i for e, i in conn.execute(select(Lead.email, Lead.id)).all()}


def test_ten_days_of_cadences_and_a_recycle_date_hour_by_hour(crm_f):
    crm, reps = crm_f
    policy = load_cadence_policy()
    first = lead_follow_up(now=T0)
    assert first["enrolled"] == 5 and sum(first["steps_created"].values()) == 0
    before = snapshot(crm)
    assert lead_follow_up(now=T0)["enrolled"] == 0
    assert snapshot(crm) == before
    ids = _ids(crm)

    def key(name: str, seq: int, step: int, kind: str = "followup") -> str:
        return f"{kind}:lead:{ids[name]}:seq:{seq}:step:{step}"

    # New follow-up task keys (with their status right after creation) and outbox keys the policy foresees, by hour.
    # Ava is in New York (UTC-5), Liam in Berlin (UTC+1); steps fall on weekdays at the cadence's local hour.
    expected_tasks = {
        at("2026-12-02T09:00Z"): {key("cold", 1, 0): "skipped", key("meet", 1, 0): "open"},  # no consent; call
        at("2026-12-02T15:00Z"): {key("hot", 1, 0): "open"},  # day 1 call, 10:00 New York
        at("2026-12-02T17:00Z"): {key("hot", 1, 1): "done"},  # day 1 email, sent
        at("2026-12-03T15:00Z"): {key("dnc", 1, 0): "skipped"},  # do not contact: no email
        at("2026-12-03T20:00Z"): {key("hot", 1, 2): "open"},  # day 2 call at another time of day
        at("2026-12-04T10:00Z"): {key("cold", 1, 1): "open"},  # day 3 call, 11:00 Berlin
        # Day 4 fell on Saturday: Monday. The re-engaged lead restarted on Saturday evening in New York: its day 1
        # (Sunday) moves to Monday too, and its day 2 is that Monday.
        at("2026-12-07T15:00Z"): {key("hot", 1, 3): "done", key("back", 2, 0): "open"},
        at("2026-12-07T17:00Z"): {key("back", 2, 1): "done"},
        at("2026-12-07T20:00Z"): {key("back", 2, 2): "open"},
        at("2026-12-08T16:00Z"): {key("hot", 1, 4): "open"},  # day 7 call
        at("2026-12-09T15:00Z"): {key("back", 2, 3): "done"},  # its day 4
        at("2026-12-10T15:00Z"): {key("dnc", 1, 1): "skipped"},  # day 9 of the standard cadence
        at("2026-12-11T14:00Z"): {key("hot", 1, 5): "done"},  # day 10 breakup
    }
    notice = "manager_notice"
    expected_mail = {
        at("2026-12-02T17:00Z"): {key("hot", 1, 1, "followup_email")},
        at("2026-12-04T21:00Z"): {notice},  # the day 2 call still open 24 h after its time
        at("2026-12-06T00:00Z"): {f"returning_alert:lead:{ids['back']}:seq:2"},
        at("2026-12-07T15:00Z"): {key("hot", 1, 3, "followup_email")},
        at("2026-12-07T17:00Z"): {key("back", 2, 1, "followup_email")},
        at("2026-12-08T16:00Z"): {notice},  # back's day 1 call left open
        at("2026-12-08T21:00Z"): {notice},  # back's day 2 call left open
        at("2026-12-09T15:00Z"): {key("back", 2, 3, "followup_email")},
        at("2026-12-09T17:00Z"): {notice},  # hot's day 7 call left open
        at("2026-12-11T14:00Z"): {key("hot", 1, 5, "followup_email")},
    }
    # What reps and the status import record, at the hour they record it (before that hour's run).
    actions = {
        at("2026-12-01T07:00Z"): [("back@epsilon.example", "recycled", None, datetime(2026, 12, 6))],
        at("2026-12-02T10:00Z"): [("meet@gamma.example", "meeting_booked", None, None)],
        at("2026-12-02T16:00Z"): [("hot@acme.example", "no_answer", None, None)],
        at("2026-12-04T12:00Z"): [("cold@beta.example", "replied", None, None)],
    }
    tasks, mails, statuses = _state(crm)
    assert tasks == {} and statuses == dict.fromkeys(statuses, "working")
    now = T0 + timedelta(hours=1)
    end = at("2026-12-11T23:00Z")
    while now <= end:
        for email, status, reason, on in actions.get(now, []):
            result = set_status(crm, email, status, reason, now, by="rep", reengage_on=on, strict_recycle=True)
            assert result.rejected == [] and result.applied == 1, (now, email)
        if now == at("2026-12-06T00:00Z"):
            summary = lead_follow_up(now=now)
            assert summary["reengaged"] == summary["reengaged_to_previous_owner"] == 1
            assert summary["alerts_queued"] == 1
        else:
            follow_up(crm, policy, now, "UTC")
        new_tasks, new_mails, new_statuses = _state(crm)
        added = {k: v for k, v in new_tasks.items() if k not in tasks}
        assert added == expected_tasks.get(now, {}), now
        added_mail = {notice if new_mails[k] == notice else k for k in set(new_mails) - set(mails)}
        assert added_mail == expected_mail.get(now, set()), now
        if now in expected_tasks or now in expected_mail or now in actions:
            # A re-run of the same hour changes nothing.
            before = snapshot(crm)
            follow_up(crm, policy, now, "UTC")
            assert snapshot(crm) == before, now
        tasks, mails, statuses = new_tasks, new_mails, new_statuses
        now += timedelta(hours=1)

    assert statuses == {"hot@acme.example": "working", "cold@beta.example": "working",
                        "meet@gamma.example": "discovery_call_booked", "dnc@delta.example": "working",
                        "back@epsilon.example": "working"}
    state = followups_frame(crm).set_index("lead_id")
    assert state.loc[ids["hot"], ["state", "step"]].tolist() == ["completed", 6]
    assert state.loc[ids["cold"], ["state", "stop_reason", "last_outcome"]].tolist() == ["stopped", "replied",
                                                                                          "replied"]
    assert state.loc[ids["meet"], ["state", "stop_reason"]].tolist() == ["stopped", "meeting_booked"]
    assert state.loc[ids["back"], ["state", "sequence", "step"]].tolist() == ["active", 2, 4]
    assert state.loc[ids["back"], "reengaged_at"] == pd.Timestamp("2026-12-06T00:00Z")
    # The recycled lead never got a step of its first sequence, and is back with Ava.
    assert not [k for k in tasks if k.startswith(f"followup:lead:{ids['back']}:seq:1")]
    with crm.engine.connect() as conn:
        owner = conn.execute(select(Lead.owner_id).where(Lead.id == ids["back"])).scalar_one()
        alert = conn.execute(select(OutboxMessage).where(OutboxMessage.kind == "rep_alert")).mappings().one()
        notices = conn.execute(select(OutboxMessage.body).where(OutboxMessage.kind == "manager_notice")).scalars()
        notices = list(notices)
        events = conn.execute(select(LeadEvent.event_type, LeadEvent.details)
                              .where(LeadEvent.lead_id == ids["hot"])).all()
        followup_tasks = conn.execute(select(CrmTask.idempotency_key, CrmTask.status, CrmTask.owner_id)
                                      .where(CrmTask.kind.like("followup_%"))).all()
    assert owner == reps["ava"]
    assert alert["recipient"] == "ava.moreno@leadflow.example" and alert["lead_id"] == ids["back"]
    assert "working -&gt; recycled" in alert["body"] and "Ava Moreno" in alert["body"]
    assert "back@epsilon.example" not in alert["body"]
    # Each overdue step is reported once: four notices, each naming one task, no address in full.
    assert len(notices) == 4 and all("hot@acme.example" not in body for body in notices)
    outcomes = [json.loads(d) if isinstance(d, str) else d for t, d in events if t == "followup_outcome"]
    assert [o["outcome"] for o in outcomes] == ["no_answer"]
    # The meeting closed the open call; the reply stopped the sequence and cancelled nothing left open.
    by_key = {k: (s, o) for k, s, o in followup_tasks}
    assert by_key[key("meet", 1, 0)] == ("done", reps["liam"])
    assert by_key[key("hot", 1, 0)][0] == "done"
    assert by_key[key("cold", 1, 1)][0] == "done"

    # The monthly report's figures over these days: the two sequences still running by the step they wait for,
    # seven rep steps due (three done in time), one lead stuck for over a week, one lead re-engaged.
    from leadflow.steps.reports import lead_conversion_report

    figures = lead_conversion_report(crm, "2026-12", 1, pd.Timestamp("2026-12-12T00:00Z")).followup
    assert figures["leads_per_step"] == [{"cadence": "standard", "step": 3, "leads": 1},
                                         {"cadence": "tier_1", "step": 5, "leads": 1}]
    assert (figures["rep_steps_due"], figures["rep_steps_on_time"], figures["stuck_leads"]) == (7, 3, 1)
    assert (figures["reengaged"], figures["reengaged_converted"]) == (1, 0)


def test_a_recycled_lead_that_submits_again_returns_to_its_previous_owner_with_its_history(crm_f, tmp_path):
    from flows.intake import lead_intake
    from tests.helpers import lead, write_csv

    crm, _ = crm_f
    now = datetime.now(UTC).replace(microsecond=0)
    hot = {"job_title": "CTO", "company_size": "1200", "demo_requested": "yes", "country": "US",
           "message": "We need a replacement asap, budget approved", "first_name": "Robin", "company": "Zeta"}
    first = [lead("again@zeta.example", (now - timedelta(hours=3)).isoformat(), **hot),
             lead("never@eta.example", (now - timedelta(hours=3)).isoformat(), **{**hot, "company": "Eta"})]
    lead_intake(path=write_csv(tmp_path / "first.csv", first))
    with crm.engine.connect() as conn:
        owners = dict(conn.execute(select(Lead.email, Lead.owner_id)
                                   .where(Lead.email.in_(["again@zeta.example", "never@eta.example"]))).all())
    assert all(owners.values())
    assert set_status(crm, "again@zeta.example", "recycled", "six_months", now - timedelta(hours=2)).applied == 1
    assert set_status(crm, "never@eta.example", "disqualified", "not_a_fit", now - timedelta(hours=2)).applied == 1
    state = followups_frame(crm).set_index("lead_id")
    assert list(state["state"]) == ["recycled"]
    assert state["reengage_at"].iloc[0] == pd.Timestamp(now - timedelta(hours=2)) + pd.Timedelta(days=182)

    again = [lead("again@zeta.example", (now - timedelta(minutes=10)).isoformat(), source="webinar", **hot),
             lead("never@eta.example", (now - timedelta(minutes=10)).isoformat(), source="webinar",
                  **{**hot, "company": "Eta"})]
    lead_intake(path=write_csv(tmp_path / "again.csv", again))
    with crm.engine.connect() as conn:
        leads = {r.email: r for r in conn.execute(select(Lead.email, Lead.id, Lead.status, Lead.owner_id,
                                                         Lead.priority))}
        alerts = conn.execute(select(OutboxMessage).where(OutboxMessage.idempotency_key.like("returning_alert:%"))
                              ).mappings().all()
        events = conn.execute(select(LeadEvent.event_type, LeadEvent.lead_id)
                              .where(LeadEvent.event_type == "lead_returned")).all()
    back, never = leads["again@zeta.example"], leads["never@eta.example"]
    # Re-scored and re-prioritized by the run, back with the same rep; the terminal disqualification stays closed.
    assert (back.status, back.owner_id) == ("working", owners["again@zeta.example"]) and back.priority
    assert never.status == "disqualified"
    assert events == [("lead_returned", back.id)]
    (alert,) = alerts
    assert alert["lead_id"] == back.id and alert["kind"] == "rep_alert"
    body = alert["body"]
    assert "Returning lead (recycled)" in body and "new -&gt; recycled (six_months)" in body
    assert "webinar" in body and "web_form" in body  # the last touches
    assert "again@zeta.example" not in body
    state = followups_frame(crm).set_index("lead_id")
    assert state.loc[back.id, ["state", "sequence", "step"]].tolist() == ["active", 2, 0]
