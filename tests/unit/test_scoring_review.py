"""Scoring review arithmetic against values worked out by hand on tiny tables, each with its failure path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadflow.domain.scoring import score_leads
from leadflow.domain.scoring_review import (
    ReviewError,
    auc_difference,
    calibration,
    lift_by_group,
    outcomes_by,
    roc_auc,
    rule_points,
    rules_vs_conversion,
    score_band,
    time_to_outcome,
)
from leadflow.steps.scoring import scoring_policy


@pytest.mark.parametrize(
    ("converted", "score", "expected"),
    [
        # positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs ordered right
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),
        ([0, 1], [1, 2], 1.0),
        ([0, 1], [2, 1], 0.0),
        # ties count half: (1 vs 1) 0.5 + (1 vs 2) 0 + (2 vs 1) 1 + (2 vs 2) 0.5 = 2 of 4
        ([0, 1, 0, 1], [1, 1, 2, 2], 0.5),
        ([1, 1, 0], [5, 5, 5], 0.5),
    ],
)
def test_roc_auc_by_hand(converted: list[int], score: list[float], expected: float) -> None:
    assert roc_auc(converted, score) == pytest.approx(expected)


def test_roc_auc_agrees_with_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = rng.integers(0, 20, 500).astype(float) + y * 3  # many ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))


@pytest.mark.parametrize(
    ("converted", "score", "message"),
    [
        ([1, 1], [1, 2], "both converted and not converted"),
        ([0, 0], [1, 2], "both converted and not converted"),
        ([], [], "both converted and not converted"),
        ([0, 2], [1, 2], "0 or 1"),
        ([0, 1], [1, float("nan")], "every lead needs a score"),
        ([0, 1, 1], [1, 2], "differ in length"),
    ],
)
def test_roc_auc_refuses(converted: list, score: list, message: str) -> None:
    with pytest.raises(ReviewError, match=message):
        roc_auc(converted, score)


def test_lift_by_hand() -> None:
    # descending scores 9..0; the top half holds 3 of the 3 conversions: rate 0.6 against 0.3 overall
    table = lift_by_group([1, 1, 0, 0, 1, 0, 0, 0, 0, 0], list(range(9, -1, -1)), groups=2)
    assert table["leads"].tolist() == [5, 5]
    assert table["converted"].tolist() == [3, 0]
    assert table["rate"].tolist() == pytest.approx([0.6, 0.0])
    assert table["lift"].tolist() == pytest.approx([2.0, 0.0])
    assert table["captured"].tolist() == pytest.approx([1.0, 1.0])
    assert table["min_score"].tolist() == [5, 0]


def test_lift_ties_keep_input_order_and_refuses_without_conversions() -> None:
    table = lift_by_group([1, 0, 0, 1], [1, 1, 1, 1], groups=2)
    assert table["converted"].tolist() == [1, 1]
    with pytest.raises(ReviewError, match="at least one converted"):
        lift_by_group([0, 0], [1, 2])
    with pytest.raises(ReviewError, match="needs leads"):
        lift_by_group([], [])


def test_calibration_by_hand() -> None:
    table, brier, ece = calibration([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9], bins=2)
    assert table["predicted"].tolist() == pytest.approx([0.1, 0.9])
    assert table["observed"].tolist() == pytest.approx([0.5, 1.0])
    assert brier == pytest.approx((0.01 + 0.81 + 0.01 + 0.01) / 4)
    assert ece == pytest.approx((2 * 0.4 + 2 * 0.1) / 4)
    # a probability of exactly 1 falls in the last bin, not past it
    table, _, _ = calibration([1], [1.0], bins=2)
    assert table["high"].tolist() == [1.0]


def test_calibration_refuses_non_probabilities() -> None:
    with pytest.raises(ReviewError, match="between 0 and 1"):
        calibration([0, 1], [0.5, 12.0])


def test_outcomes_by_tier_and_band_by_hand() -> None:
    leads = pd.DataFrame({"tier": ["tier_1", "tier_1", "tier_3", "tier_3"],
                          "score": [85.0, 62.0, 10.0, 19.9],
                          "outcome": ["converted", "disqualified", "disqualified", "open"]})
    by_tier = outcomes_by(leads, "tier").set_index("tier")
    assert by_tier.loc["tier_1", ["leads", "converted", "disqualified"]].tolist() == [2, 1, 1]
    assert by_tier.loc["tier_1", "conversion_rate"] == pytest.approx(0.5)
    assert by_tier.loc["tier_1", "lift"] == pytest.approx(2.0)  # 0.5 against 1 in 4 overall
    assert by_tier.loc["tier_3", "disqualification_rate"] == pytest.approx(0.5)
    assert score_band(leads["score"]).tolist() == ["80+", "60-79", "0-19", "0-19"]
    empty = outcomes_by(leads.iloc[0:0], "tier")
    assert empty.empty


def test_time_to_outcome_leaves_out_unknown_times() -> None:
    leads = pd.DataFrame({"outcome": ["converted", "converted", "converted", "disqualified"],
                          "days_to_outcome": [10.0, 20.0, None, None]})
    table = time_to_outcome(leads).set_index("outcome")
    assert table.loc["converted", "leads"] == 2
    assert table.loc["converted", "median_days"] == pytest.approx(15.0)
    assert table.loc["disqualified", "leads"] == 0
    assert pd.isna(table.loc["disqualified", "median_days"])


def test_bootstrap_difference_is_seeded_and_paired() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    noise = rng.normal(size=400)
    good = y + noise * 0.5
    weak = y + noise * 3
    result = auc_difference(y, weak, good, resamples=100, seed=7)
    assert result == auc_difference(y, weak, good, resamples=100, seed=7)
    assert result.difference == pytest.approx(roc_auc(y, good) - roc_auc(y, weak))
    assert result.low > 0 and result.verdict == "challenger ranks better"
    same = auc_difference(y, good, good, resamples=50, seed=7)
    assert (same.low, same.high, same.verdict) == (0.0, 0.0, "no clear difference")
    swapped = auc_difference(y, good, weak, resamples=100, seed=7)
    assert swapped.high < 0 and swapped.verdict == "champion ranks better"


def test_bootstrap_refuses_one_class() -> None:
    with pytest.raises(ReviewError, match="both converted"):
        auc_difference([1, 1, 1], [1, 2, 3], [3, 2, 1])


def test_rule_points_by_hand() -> None:
    text = pd.Series([
        "fit 20: industry software +12, 51-200 employees +8; intent 10.5: demo request +5, 2 pricing visits +2.5, "
        "message: pricing, demo +3",
        "fit 0: none; intent 0: none",
        None,
    ])
    points = rule_points(text)
    assert points.loc[0, ["industry", "company size", "demo request", "pricing visits", "message"]].tolist() == [
        12, 8, 5, 2.5, 3]
    assert points.loc[1].sum() == 0 and points.loc[2].sum() == 0
    table = rules_vs_conversion(text, [1, 0, 0]).set_index("rule")
    assert table.loc["industry", "leads_fired"] == 1
    assert table.loc["industry", "rate_fired"] == 1.0 and table.loc["industry", "rate_not_fired"] == 0.0
    assert table.loc["recency", "leads_fired"] == 0 and pd.isna(table.loc["recency", "rate_fired"])


def test_rule_points_read_what_the_scorer_writes() -> None:
    """Every point of a real explanation is attributed to a rule: the labels stay in step with the scorer."""
    leads = pd.DataFrame({
        "email": ["a@acme.com", "b@gmail.com"], "industry": ["Software", None], "company_size": ["51-200", None],
        "country": ["US", "DE"], "job_title": ["VP Sales", "Intern"], "demo_requested": [True, False],
        "pricing_page_visits": [2, 0], "page_views": [12, 1], "content_downloads": [1, 0],
        "last_touch_at": pd.to_datetime(["2026-01-01", "2025-01-01"], utc=True),
        "message": ["What is the pricing for a demo?", None],
    })
    scored = score_leads(leads, scoring_policy(), pd.Timestamp("2026-01-02", tz="UTC"))
    points = rule_points(scored["explanation"])
    assert points.sum(axis=1).tolist() == pytest.approx(scored["score"].tolist())
