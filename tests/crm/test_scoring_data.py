"""What the scoring review and training read from the CRM: only touches up to the scoring cutoff, and outcomes."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import select

from leadflow.crm import scoring_data, spam
from leadflow.crm.schema import Lead
from leadflow.crm.status import apply_status_changes
from leadflow.steps import scoring_models
from tests.helpers import lead, run_intake, write_csv

FIRST = "2025-02-03T10:00:00Z"
LATER = "2025-02-23T10:00:00Z"


def _lead_with_a_later_touch(crm, tmp_path) -> int:
    rows = [
        lead("ann.lee@acme-robotics.com", FIRST, job_title="Analyst", page_views="3", demo_requested="false",
             budget="small", first_name="Ann", last_name="Lee", company="Acme Robotics"),
        lead("ann.lee@acme-robotics.com", LATER, source="event", job_title="CEO", page_views="500",
             demo_requested="true", budget="large", first_name="Ann", last_name="Lee", company="Acme Robotics"),
    ]
    run_intake(crm, write_csv(tmp_path / "leads.csv", rows))
    changes = pd.DataFrame({"row": [1], "email": ["ann.lee@acme-robotics.com"], "status": ["disqualified"],
                            "reason": ["no_budget"], "changed_at": [pd.Timestamp("2025-03-01T00:00:00Z")]})
    assert apply_status_changes(crm, changes, "test", datetime.now(UTC)).applied == 1
    with crm.engine.connect() as conn:
        return conn.execute(select(Lead.id)).scalar_one()


def test_a_touch_after_the_scoring_time_never_enters_training(crm, tmp_path):
    lead_id = _lead_with_a_later_touch(crm, tmp_path)
    with crm.engine.connect() as conn:
        stored = conn.execute(select(Lead.page_views, Lead.demo_requested, Lead.job_title)).one()
    assert tuple(stored) == (500, True, "CEO")  # the lead itself knows the later touch

    config = scoring_models.model_config().model_copy(update={"extra_features": ["budget"]})
    data = scoring_models.load_labelled(crm, config, datetime(2026, 1, 1, tzinfo=UTC))
    features = data.features.set_index("id").loc[lead_id]
    assert features["page_views"] == 3 and not features["demo_requested"]
    assert (features["job_title"], features["budget"], features["submissions"]) == ("Analyst", "small", 1)
    assert features["source"] == "web_form"
    outcome = data.outcomes.set_index("lead_id").loc[lead_id]
    assert outcome["outcome"] == "disqualified"
    assert outcome["days_to_outcome"] > 20  # from the cutoff (first touch + 24 h), not from the later touch

    # Read directly, the later submission is not even handed out.
    cutoff = pd.Series([pd.Timestamp(FIRST) + pd.Timedelta(hours=24)], index=[lead_id])
    subs = scoring_data.early_submissions(crm, cutoff, ["page_views", "budget"])
    assert [str(v) for v in subs["page_views"]] == ["3"] and subs["budget"].tolist() == ["small"]


def test_too_young_leads_are_left_out(crm, tmp_path):
    _lead_with_a_later_touch(crm, tmp_path)
    config = scoring_models.model_config()
    assert len(scoring_models.load_labelled(crm, config, datetime(2025, 3, 1, tzinfo=UTC)).leads) == 0


def test_model_scores_are_replaced_and_go_with_their_lead(crm, tmp_path):
    lead_id = _lead_with_a_later_touch(crm, tmp_path)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for probability, version in ((0.2, "m1"), (0.7, "m2")):
        scoring_models.store_model_scores(crm, pd.DataFrame({
            "lead_id": [lead_id], "model_version": [version], "probability": [probability],
            "top_features": ["budget large +1.20"], "scored_at": [at]}))
    stored = scoring_data.model_scores(crm, [lead_id])
    assert stored[["model_version", "probability"]].values.tolist() == [["m2", 0.7]]
    with crm.begin() as conn:
        spam.delete_leads(conn, [lead_id], Counter())
    assert scoring_data.model_scores(crm, [lead_id]).empty
