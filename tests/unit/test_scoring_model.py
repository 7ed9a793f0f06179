"""Point-in-time features, outcome labels, holdout and the hybrid guard, on tiny tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from leadflow.domain import scoring_model as sm
from leadflow.steps.scoring import scoring_policy

T0 = pd.Timestamp("2025-01-10T09:00:00Z")
AS_OF = datetime(2025, 12, 1, tzinfo=UTC)


def _leads(**columns) -> pd.DataFrame:
    base = {"id": [1, 2, 3], "first_touch_at": [T0, T0, T0 + pd.Timedelta(days=300)],
            "scored_at": [T0 + pd.Timedelta(hours=1), pd.NaT, T0 + pd.Timedelta(days=400)],
            "status": ["converted", "disqualified", "new"], "email_domain": ["acme.com", "gmail.com", None],
            "industry": ["Software", None, "Retail"], "employee_count": [120, None, None],
            "revenue_band": [None, None, None], "country": ["DE", "US", None]}
    base.update(columns)
    frame = pd.DataFrame(base)
    for name in ("first_touch_at", "scored_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame


def test_cutoff_is_the_score_time_at_most_first_touch_plus_the_window() -> None:
    cut = sm.cutoffs(_leads(), window_hours=24)
    assert cut[1] == T0 + pd.Timedelta(hours=1)  # scored within the window: its score time
    assert cut[2] == T0 + pd.Timedelta(hours=24)  # never scored: the window's end
    assert cut[3] == T0 + pd.Timedelta(days=301)  # scored long after (a re-score): the window's end


def _history(rows: list[tuple[int, str, pd.Timedelta]]) -> pd.DataFrame:
    return pd.DataFrame({"lead_id": [r[0] for r in rows], "status": [r[1] for r in rows],
                         "occurred_at": pd.to_datetime([T0 + r[2] for r in rows], utc=True)})


@pytest.mark.parametrize(
    ("history", "expected", "days"),
    [
        ([(1, "converted", pd.Timedelta(days=30))], "converted", 30 - 1 / 24),
        # a conversion after a disqualification in the period wins
        ([(1, "disqualified", pd.Timedelta(days=5)), (1, "converted", pd.Timedelta(days=40))], "converted",
         40 - 1 / 24),
        ([(1, "disqualified", pd.Timedelta(days=5))], "disqualified", 5 - 1 / 24),
        # after the maturity period the outcome does not count (the lead stays open)
        ([(1, "converted", pd.Timedelta(days=200))], "open", None),
    ],
)
def test_outcomes_within_the_maturity_period(history, expected, days) -> None:
    leads = _leads(status=["new", "new", "new"])
    out = sm.label_outcomes(leads, sm.cutoffs(leads, 24), _history(history), AS_OF, maturity_days=90)
    row = out.set_index("lead_id").loc[1]
    assert row["outcome"] == expected
    assert (pd.isna(row["days_to_outcome"]) if days is None else row["days_to_outcome"] == pytest.approx(days))


def test_only_mature_leads_count_and_a_status_without_history_counts_untimed() -> None:
    leads = _leads()
    out = sm.label_outcomes(leads, sm.cutoffs(leads, 24), _history([]), AS_OF, maturity_days=90).set_index("lead_id")
    assert out["mature"].tolist() == [True, True, False]  # lead 3 was first touched 300 days in: too young
    assert out["outcome"].tolist() == ["converted", "disqualified", "open"]
    assert out["days_to_outcome"].isna().all()


def _subs() -> pd.DataFrame:
    return pd.DataFrame({
        "lead_id": [1, 1, 2], "submitted_at": pd.to_datetime([T0, T0 + pd.Timedelta(days=20), T0], utc=True),
        "source": ["web_form", "event", "paid_search"], "message": ["pricing please", "ready to buy", None],
        "job_title": ["Analyst", "CEO", None], "company_size": ["51-200", None, None], "industry": [None, None, None],
        "country": [None, None, None], "demo_requested": ["false", "true", None], "page_views": ["3", "500", None],
        "pricing_page_visits": ["1", "9", None], "content_downloads": [None, None, "2"],
        "budget": ["small", "large", None],
    })


def test_a_touch_after_the_cutoff_never_enters_the_features() -> None:
    leads = _leads().iloc[:2]
    cut = sm.cutoffs(leads, 24)
    frame = sm.point_in_time(leads, _subs(), cut, extra=["budget"]).set_index("id")
    first = frame.loc[1]
    assert (first["job_title"], first["page_views"], first["pricing_page_visits"]) == ("Analyst", 3, 1)
    assert (bool(first["demo_requested"]), first["budget"], first["submissions"]) == (False, "small", 1)
    assert first["message"] == "pricing please" and first["source"] == "web_form"
    assert frame.loc[2, "content_downloads"] == 2 and pd.isna(frame.loc[2, "industry"])
    # firmographics come from the company (enrichment), the country from the lead when no form gave one
    assert first["industry"] == "Software" and frame.loc[2, "country"] == "US"
    scored = sm.rule_scores(frame.reset_index(), scoring_policy())
    assert "demo request" not in scored["explanation"].iloc[0]


def test_holdout_is_the_newest_share_by_cutoff() -> None:
    at = pd.Series(pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"], utc=True))
    held, start = sm.holdout_split(at, 0.25)
    assert held.tolist() == [False, False, False, True]
    assert start == pd.Timestamp("2025-04-01", tz="UTC")


def test_training_refuses_too_few_leads_and_one_class() -> None:
    features = pd.DataFrame({"cutoff": pd.to_datetime(["2025-01-01"] * 3, utc=True)})
    config = sm.ModelConfig(version="t", min_leads=20)
    with pytest.raises(sm.ModelError, match="3 labelled leads"):
        sm.train(features, np.zeros(3), scoring_policy(), config, {})
    many = pd.DataFrame({"cutoff": pd.date_range("2025-01-01", periods=40, freq="D", tz="UTC")})
    with pytest.raises(sm.ModelError, match="training leads need both"):
        sm.train(many, np.zeros(40), scoring_policy(), config, {})


@pytest.mark.parametrize("name", ["Budget", "budget range", "page_views", ""])
def test_extra_features_are_new_plain_names(name: str) -> None:
    with pytest.raises(ValueError, match="extra_features"):
        sm.ModelConfig(version="t", extra_features=[name])


def _meta(policy, model_auc: float, rule_auc: float) -> dict:
    return {"version": "m1", "rule_policy": {"version": policy.version, "rules_digest": sm.rules_digest(policy)},
            "metrics": {"model_auc": model_auc, "rule_auc": rule_auc}}


def test_hybrid_needs_the_same_rules_and_a_better_holdout_auc() -> None:
    policy = scoring_policy()
    sm.check_hybrid(_meta(policy, 0.80, 0.70), policy)
    # a new version or a named model leaves the rules, and so the comparison, as they were
    renamed = policy.model_copy(update={"version": "2027-1", "model": "m1"})
    sm.check_hybrid(_meta(policy, 0.80, 0.70), renamed)
    with pytest.raises(sm.ModelError, match="does not rank better"):
        sm.check_hybrid(_meta(policy, 0.70, 0.70), policy)
    changed = type(policy).model_validate({**json.loads(policy.model_dump_json()), "high_fit": policy.high_fit - 1})
    with pytest.raises(sm.ModelError, match="compared with the rules of policy"):
        sm.check_hybrid(_meta(policy, 0.80, 0.70), changed)


def test_a_model_file_from_another_scikit_learn_is_refused(tmp_path, monkeypatch) -> None:
    import joblib

    from leadflow.io import model_files

    meta = {"format": sm.MODEL_FORMAT, "kind": "leadflow-scoring-model", "version": "m1",
            "libraries": {"scikit-learn": "0.24.2"}}
    path = tmp_path / "m1.joblib"
    joblib.dump({"meta": meta, "payload": b""}, path)
    with pytest.raises(sm.ModelError, match=r"written with scikit-learn 0\.24\.2"):
        model_files.read_meta(path)
    joblib.dump({"meta": {**meta, "format": 99}, "payload": b""}, path)
    with pytest.raises(sm.ModelError, match="model format 99"):
        model_files.read_meta(path)
    path.write_text("not a model")
    with pytest.raises(sm.ModelError, match="not a leadflow model file"):
        model_files.read_meta(path)
    with pytest.raises(sm.ModelError, match="no model file"):
        model_files.resolve_model("missing", tmp_path)
