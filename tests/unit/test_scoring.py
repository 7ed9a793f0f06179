"""Calculate Lead Score: seniority and size parsing, every scoring rule alone, tiers, determinism, policy checks."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from leadflow.config.policy import load_policy
from leadflow.domain.scoring import (
    OUTPUT_COLUMNS,
    SENIORITY_LEVELS,
    SIZE_BANDS,
    TIERS,
    ScoringPolicy,
    employee_band,
    parse_seniority,
    score_leads,
)

AS_OF = pd.Timestamp("2026-11-23 12:00", tz="UTC")

# A small policy with round numbers, so these tests do not move when RevOps tunes the bundled one.
POLICY_DATA: dict = {
    "version": "test-1",
    "fit": {
        "industry_points": {"Software": 10, "Retail": 4, "IT & Services": 6},
        "industry_aliases": {"SaaS": "Software"},
        "industry_default": 2,
        "size_points": {"1-10": 1, "11-50": 3, "51-200": 5, "201-1000": 8, "1001-5000": 9, "5000+": 7},
        "country_points": {"US": 5, "DE": 4},
        "country_default": 1,
        "seniority_points": {"c_level": 10, "vp": 9, "director": 8, "manager": 6, "individual": 2, "entry": 0.5},
        "work_email_points": 3,
        "free_mail_points": 1,
    },
    "intent": {
        "demo_request_points": 15,
        "pricing_visit_points": 3,
        "pricing_visits_cap": 9,
        "page_view_steps": [{"min_views": 5, "points": 2}, {"min_views": 20, "points": 4},
                            {"min_views": 100, "points": 6}],
        "download_points": 2,
        "downloads_cap": 4,
        "recency_points": 10,
        "recency_half_life_days": 7,
        "message_topics": [
            {"name": "pricing", "phrases": ["pricing", "quote", "how much", "Preis"], "points": 4},
            {"name": "budget", "phrases": ["budget"], "points": 3},
        ],
        "message_cap": 6,
    },
    "fit_cap": 30,
    "intent_cap": 40,
    "high_fit": 20,
    "high_intent": 15,
}
POLICY = ScoringPolicy.model_validate(POLICY_DATA)

COLUMN_DTYPES = {
    "job_title": "string",
    "industry": "string",
    "company_size": "string",
    "employee_count": "Int64",
    "country": "string",
    "email_domain": "string",
    "is_free_mail": "boolean",
    "demo_requested": "boolean",
    "pricing_page_visits": "Int64",
    "page_views": "Int64",
    "content_downloads": "Int64",
    "message": "string",
    "last_touch_at": "datetime64[ns, UTC]",
}


def leads(*rows: dict) -> pd.DataFrame:
    """A typed batch with every input column, NA wherever a row does not say."""
    frame = pd.DataFrame([{c: row.get(c) for c in COLUMN_DTYPES} for row in rows], columns=list(COLUMN_DTYPES))
    for column, dtype in COLUMN_DTYPES.items():
        if dtype.startswith("datetime"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        else:
            frame[column] = frame[column].astype(dtype)
    return frame


def score_one(policy: ScoringPolicy = POLICY, **fields) -> pd.Series:
    return score_leads(leads(fields), policy, AS_OF).iloc[0]


def with_policy(**changes) -> ScoringPolicy:
    """The test policy with top-level fields changed (validated)."""
    return ScoringPolicy.model_validate({**POLICY_DATA, **changes})


# --- parse_seniority ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "level"),
    [
        ("CEO", "c_level"),
        ("Chief Executive Officer", "c_level"),
        ("cto", "c_level"),
        ("Chief Revenue Officer", "c_level"),
        ("Chief Marketing & Growth Officer", "c_level"),
        ("Co-Founder & CTO", "c_level"),
        ("Founder", "c_level"),
        ("Owner", "c_level"),
        ("President", "c_level"),
        ("Managing Director", "c_level"),
        ("Geschäftsführer", "c_level"),
        ("Geschäftsführerin", "c_level"),
        ("Président-directeur général", "c_level"),
        ("PDG", "c_level"),
        ("Gründer & Inhaber", "c_level"),
        ("C.E.O.", "c_level"),
        # someone who works for an executive is not one
        ("Assistant to the CEO", "individual"),
        ("Executive Assistant to the President", "individual"),
        ("Assistentin der Geschäftsführung", "individual"),
        ("Assistant to the Vice President", "individual"),
        ("Founder's Associate", "individual"),
        ("Vice President of Sales", "vp"),
        ("Vice-President, Marketing", "vp"),
        ("SVP Engineering", "vp"),
        ("Head of Growth", "vp"),
        # decision: Chief of Staff ranks with vp (senior, but no C-suite function)
        ("Chief of Staff", "vp"),
        ("Chief of Staff to the CEO", "vp"),
        ("Leiter Vertrieb", "vp"),
        ("Director of Sales Operations", "director"),
        ("Associate Director, Marketing", "director"),
        ("Directeur Commercial", "director"),
        ("Vertriebsleiter", "director"),
        ("Sr. Manager", "manager"),
        ("Team Lead", "manager"),
        ("Supervisor", "manager"),
        ("Teamleiter", "manager"),
        ("Chef de projet", "manager"),
        ("Responsable marketing", "manager"),
        ("Junior Product Manager", "manager"),
        ("Product Owner", "individual"),
        ("Software Engineer", "individual"),
        ("Data Analyst", "individual"),
        ("COORDINATOR", "individual"),
        ("Account Executive", "individual"),
        ("Softwareentwickler", "individual"),
        ("Ingénieur d'affaires", "individual"),
        ("CRO Specialist", "individual"),
        ("Lead Generation Specialist", "individual"),
        ("Internal Auditor", "individual"),
        ("Marketing Intern", "entry"),
        ("Junior Developer", "entry"),
        ("Werkstudent", "entry"),
        ("Stagiaire", "entry"),
        ("Management Trainee", "entry"),
        ("Apprentice", "entry"),
        ("  Student  ", "entry"),
        (None, "unknown"),
        ("", "unknown"),
        ("   ", "unknown"),
        ("N/A", "unknown"),
        ("Mr", "unknown"),
    ],
)
def test_parse_seniority(title, level):
    assert parse_seniority(pd.Series([title], dtype="string")).tolist() == [level]


def test_parse_seniority_keeps_index_and_dtype_on_any_input():
    titles = pd.Series(["CEO", None, "Intern", "CEO"], index=[10, 11, 12, 13], dtype=object)
    result = parse_seniority(titles)
    assert result.index.tolist() == [10, 11, 12, 13]
    assert result.dtype == "string"
    assert result.tolist() == ["c_level", "unknown", "entry", "c_level"]
    assert parse_seniority(pd.Series([], dtype="string")).tolist() == []


# --- employee_band -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "band"),
    [
        ("1-10", "1-10"),
        ("2-10", "1-10"),
        ("10", "1-10"),
        ("11", "11-50"),
        ("11-50", "11-50"),
        ("10–50 employees", "11-50"),
        ("50", "11-50"),
        ("51-200", "51-200"),
        ("51 - 200", "51-200"),
        ("201-500", "201-1000"),
        ("501-1,000", "201-1000"),
        ("1000", "201-1000"),
        ("1000+", "1001-5000"),
        ("1,001-5,000", "1001-5000"),
        ("5000", "1001-5000"),
        ("5000+", "5000+"),
        ("5,001-10,000", "5000+"),
        ("10,000+", "5000+"),
        ("10.000", "5000+"),
        ("5k", "1001-5000"),
        ("10K+", "5000+"),
        ("1.5k", "1001-5000"),
        ("1M+", "5000+"),
        ("<10", "1-10"),
        ("less than 50", "11-50"),
        ("over 1000", "1001-5000"),
        ("approx. 300", "201-1000"),
        ("250 Mitarbeiter", "201-1000"),
        ("Enterprise", "1001-5000"),
        ("self-employed", "1-10"),
        ("Freelancer", "1-10"),
        ("0", "unknown"),
        ("lots", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_employee_band_from_typed_sizes(size, band):
    assert employee_band(pd.Series([size], dtype="string")).tolist() == [band]


def test_employee_band_from_enriched_counts():
    counts = pd.Series([1, 10, 11, 50, 51, 200, 201, 1000, 1001, 5000, 5001, 250_000, 0, -3, None], dtype="Int64")
    assert employee_band(counts).tolist() == [
        "1-10", "1-10", "11-50", "11-50", "51-200", "51-200", "201-1000", "201-1000", "1001-5000", "1001-5000",
        "5000+", "5000+", "unknown", "unknown", "unknown",
    ]
    assert employee_band(pd.Series([12.0, np.nan])).tolist() == ["11-50", "unknown"]


def test_employee_band_from_mixed_objects_keeps_index():
    result = employee_band(pd.Series([1200, "51-200", None], index=["a", "b", "c"], dtype=object))
    assert result.to_dict() == {"a": "1001-5000", "b": "51-200", "c": "unknown"}
    assert result.dtype == "string"
    assert set(result) <= set(SIZE_BANDS)


# --- every rule on its own ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "fit", "part"),
    [
        ({"industry": "Software"}, 10, "industry Software +10"),
        ({"industry": " saas "}, 10, "industry Software +10"),
        ({"industry": "it and services"}, 6, "industry IT & Services +6"),
        ({"industry": "RETAIL"}, 4, "industry Retail +4"),
        ({"industry": "Underwater Basket Weaving"}, 2, "industry other +2"),
        ({"company_size": "51-200"}, 5, "51-200 employees +5"),
        ({"employee_count": 1500}, 9, "1001-5000 employees +9"),
        # the enriched count is a measurement and wins over the typed guess
        ({"employee_count": 1500, "company_size": "1-10"}, 9, "1001-5000 employees +9"),
        ({"country": "US"}, 5, "country US +5"),
        ({"country": "de"}, 4, "country DE +4"),
        ({"country": "BR"}, 1, "country BR +1"),
        ({"job_title": "VP Sales"}, 9, "vp +9"),
        ({"job_title": "Intern"}, 0.5, "entry +0.5"),
        ({"email_domain": "acme.com", "is_free_mail": False}, 3, "work email +3"),
        ({"email_domain": "acme.com"}, 3, "work email +3"),
        ({"email_domain": "gmail.com"}, 1, "free mail +1"),
        ({"email_domain": "acme.com", "is_free_mail": True}, 1, "free mail +1"),
    ],
)
def test_each_fit_rule_alone(fields, fit, part):
    row = score_one(**fields)
    assert row.fit_score == fit
    assert row.intent_score == 0
    assert row.score == fit
    assert row.explanation == f"fit {fit:g}: {part}; intent 0: none"


@pytest.mark.parametrize(
    ("fields", "intent", "part"),
    [
        ({"demo_requested": True}, 15, "demo request +15"),
        ({"pricing_page_visits": 1}, 3, "1 pricing visit +3"),
        ({"pricing_page_visits": 2}, 6, "2 pricing visits +6"),
        ({"pricing_page_visits": 10}, 9, "10 pricing visits +9"),
        ({"page_views": 5}, 2, "5 page views +2"),
        ({"page_views": 20}, 4, "20 page views +4"),
        ({"page_views": 150}, 6, "150 page views +6"),
        ({"content_downloads": 1}, 2, "1 download +2"),
        ({"content_downloads": 7}, 4, "7 downloads +4"),
        ({"last_touch_at": AS_OF}, 10, "recent +10"),
        ({"last_touch_at": AS_OF - pd.Timedelta(days=7)}, 5, "recent +5"),
        ({"last_touch_at": AS_OF - pd.Timedelta(days=14)}, 2.5, "recent +2.5"),
        # a touch stamped after as_of (clock skew) counts as now, not as more than the maximum
        ({"last_touch_at": AS_OF + pd.Timedelta(days=3)}, 10, "recent +10"),
        ({"message": "What does it COST? Need a Quote."}, 4, "message: pricing +4"),
        ({"message": "How much is it?"}, 4, "message: pricing +4"),
        ({"message": "Was kostet es? Preis bitte"}, 4, "message: pricing +4"),
        ({"message": "Pricing?\nOur budget is approved."}, 6, "message: pricing, budget +6"),
    ],
)
def test_each_intent_rule_alone(fields, intent, part):
    row = score_one(**fields)
    assert row.intent_score == intent
    assert row.fit_score == 0
    assert row.explanation.endswith(f": {part}")
    assert row.explanation.startswith("fit 0: none; intent ")


def test_a_policy_without_message_topics_ignores_messages():
    policy = ScoringPolicy.model_validate({**POLICY_DATA, "intent": {**POLICY_DATA["intent"], "message_topics": []}})
    row = score_one(policy, message="pricing and budget, asap")
    assert row.intent_score == 0
    assert row.explanation == "fit 0: none; intent 0: none"


@pytest.mark.parametrize(
    "fields",
    [
        {"page_views": 4},
        {"page_views": -3},
        {"pricing_page_visits": -1},
        {"content_downloads": 0},
        {"demo_requested": False},
        {"message": "We have misquoted budgetary numbers"},  # whole words only
        {"message": "   "},
        {"last_touch_at": AS_OF - pd.Timedelta(days=365)},  # decayed to less than a tenth of a point
    ],
)
def test_rules_that_do_not_fire_earn_nothing(fields):
    row = score_one(**fields)
    assert (row.fit_score, row.intent_score, row.score) == (0, 0, 0)
    assert row.explanation == "fit 0: none; intent 0: none"


def test_absurd_page_views_are_capped_by_the_policy():
    for views in (99_999, 10**12):
        row = score_one(page_views=views)
        assert row.intent_score == 6
        assert row.explanation.endswith("page views +6")


def test_group_caps_apply_and_are_explained():
    row = score_one(industry="Software", employee_count=2000, country="US", job_title="CEO", email_domain="acme.com",
                    demo_requested=True, pricing_page_visits=5, page_views=500, content_downloads=9,
                    last_touch_at=AS_OF, message="pricing and budget")
    assert row.fit_score == 30  # 10 + 9 + 5 + 10 + 3 = 37, capped
    assert row.intent_score == 40  # 15 + 9 + 6 + 4 + 10 + 6 = 50, capped
    assert row.score == 70
    assert row.explanation.startswith("fit 30 (capped from 37): industry Software +10, 1001-5000 employees +9, ")
    assert "; intent 40 (capped from 50): demo request +15, 5 pricing visits +9," in row.explanation


def test_unknown_industry_on_the_bundled_policy_earns_its_default():
    policy = load_policy(ScoringPolicy, "scoring")
    row = score_one(policy, industry="Underwater Basket Weaving")
    assert row.fit_score == policy.fit.industry_default
    assert row.explanation.startswith(f"fit {policy.fit.industry_default:g}: industry other +")


# --- tiers -------------------------------------------------------------------------------------------------------

# fit 18 (Software 10 + 201-1000 employees 8), intent 15 (demo request)
BOUNDARY_LEAD = {"industry": "Software", "company_size": "201-1000", "demo_requested": True}


@pytest.mark.parametrize(
    ("high_fit", "high_intent", "tier"),
    [
        (18, 15, "tier_1"),  # exactly at both thresholds counts as high
        (17.9, 14.9, "tier_1"),
        (18, 15.1, "tier_2"),  # intent just below
        (18.1, 15, "tier_3"),  # fit just below: fit is known, so low fit, not tier_4
        (18.1, 15.1, "tier_3"),
    ],
)
def test_tier_boundaries(high_fit, high_intent, tier):
    row = score_one(with_policy(high_fit=high_fit, high_intent=high_intent), **BOUNDARY_LEAD)
    assert (row.fit_score, row.intent_score) == (18, 15)
    assert row.tier == tier


@pytest.mark.parametrize(
    ("fields", "tier"),
    [
        # high intent, and no industry, no size and no readable title: fit unknown -> tier_4
        ({"demo_requested": True}, "tier_4"),
        ({"demo_requested": True, "country": "US", "email_domain": "acme.com"}, "tier_4"),
        ({"demo_requested": True, "job_title": "Sales Wizard"}, "tier_4"),
        # any one of industry, size or seniority makes fit known
        ({"demo_requested": True, "job_title": "Engineer"}, "tier_3"),
        ({"demo_requested": True, "industry": "Mining"}, "tier_3"),
        ({"demo_requested": True, "employee_count": 40}, "tier_3"),
        # fit unknown but low intent is still tier_3
        ({"pricing_page_visits": 1}, "tier_3"),
    ],
)
def test_tier_4_is_high_intent_with_unknown_fit(fields, tier):
    assert score_one(**fields).tier == tier


def test_all_missing_row_scores_zero_with_a_readable_explanation():
    row = score_one()
    assert (row.fit_score, row.intent_score, row.score) == (0, 0, 0)
    assert row.tier == "tier_3"
    assert row.seniority == "unknown"
    assert row.explanation == "fit 0: none; intent 0: none"
    assert row.policy_version == "test-1"


def test_missing_columns_are_treated_as_missing_values():
    frame = pd.DataFrame({"email": ["ann@acme.com", "bob@gmail.com"], "demo_requested": [True, None]})
    result = score_leads(frame, POLICY, AS_OF)
    assert result.fit_score.tolist() == [3, 1]  # email domain taken from the email
    assert result.intent_score.tolist() == [15, 0]
    assert result.tier.tolist() == ["tier_4", "tier_3"]


def test_untyped_inputs_are_read_leniently():
    frame = pd.DataFrame({
        "demo_requested": ["yes", "no"],
        "pricing_page_visits": ["2", "lots"],
        "last_touch_at": [AS_OF.isoformat(), "not a date"],
        "employee_count": [None, None],
        "company_size": ["51-200", None],
    }, dtype=object)
    result = score_leads(frame, POLICY, AS_OF)
    assert result.intent_score.tolist() == [15 + 6 + 10, 0]
    assert result.fit_score.tolist() == [5, 0]


def test_output_shape_types_and_index():
    frame = leads({"job_title": "CEO"}, {"job_title": "Intern"}, {})
    frame.index = pd.Index(["x", "x", "y"], name="lead_id")  # duplicates and names survive
    result = score_leads(frame, POLICY, AS_OF.tz_localize(None))  # a naive as_of is UTC
    assert tuple(result.columns) == OUTPUT_COLUMNS
    assert result.index.equals(frame.index)
    for column in ("fit_score", "intent_score", "score"):
        assert result[column].dtype == "float64"
    for column in ("tier", "seniority", "explanation", "policy_version"):
        assert isinstance(result[column].dtype, pd.StringDtype)
    assert result.seniority.tolist() == ["c_level", "entry", "unknown"]


def test_empty_batch():
    result = score_leads(leads(), POLICY, AS_OF)
    assert result.empty
    assert tuple(result.columns) == OUTPUT_COLUMNS


# --- determinism -------------------------------------------------------------------------------------------------


def random_batch(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)

    def pick(values: list, dtype: str) -> pd.Series:
        return pd.Series(pd.array([values[i] for i in rng.integers(0, len(values), n)], dtype=dtype))

    frame = pd.DataFrame({
        "job_title": pick(["CEO", "VP Sales", "Head of IT", "Engineer", "Intern", "Assistant to the CEO", None],
                          "string"),
        "industry": pick(["Software", "saas", "Retail", "Mining", None], "string"),
        "company_size": pick(["51-200", "1000+", "5k", None], "string"),
        "employee_count": pick([12, 900, 7000, None], "Int64"),
        "country": pick(["US", "DE", "FR", None], "string"),
        "email_domain": pick(["acme.com", "gmail.com", None], "string"),
        "is_free_mail": pick([True, False, None], "boolean"),
        "demo_requested": pick([True, False, None], "boolean"),
        "pricing_page_visits": pick([0, 1, 2, 7, -1, None], "Int64"),
        "page_views": pick([0, 3, 7, 30, 99_999, None], "Int64"),
        "content_downloads": pick([0, 1, 3, None], "Int64"),
        "message": pick(["pricing?", "Budget approved, need a quote", "hello", None], "string"),
    })
    ages = pd.to_timedelta(rng.integers(0, 60 * 86_400, n), unit="s")
    frame["last_touch_at"] = (AS_OF - ages).where(rng.random(n) < 0.8)
    return frame


def test_scores_are_deterministic_and_independent_of_order_and_batch():
    frame = random_batch(600)
    first = score_leads(frame, POLICY, AS_OF)
    pd.testing.assert_frame_equal(first, score_leads(frame, POLICY, AS_OF))

    shuffled = frame.sample(frac=1, random_state=3)
    pd.testing.assert_frame_equal(score_leads(shuffled, POLICY, AS_OF).loc[frame.index], first)

    halves = pd.concat([score_leads(frame.iloc[:250], POLICY, AS_OF), score_leads(frame.iloc[250:], POLICY, AS_OF)])
    pd.testing.assert_frame_equal(halves, first)

    one_by_one = pd.concat([score_leads(frame.iloc[[i]], POLICY, AS_OF) for i in range(0, 600, 37)])
    pd.testing.assert_frame_equal(one_by_one, first.iloc[list(range(0, 600, 37))])


def test_explanation_parts_add_up_to_the_scores():
    result = score_leads(random_batch(400, seed=11), POLICY, AS_OF)
    for row in result.itertuples():
        fit_text, intent_text = row.explanation.split("; intent ")
        for score, text in ((row.fit_score, fit_text), (row.intent_score, intent_text)):
            parts = sum(float(p) for p in re.findall(r"\+(\d+(?:\.\d)?)(?:,|$)", text))
            capped = re.search(r"capped from (\d+(?:\.\d)?)", text)
            assert round(parts, 1) == (float(capped.group(1)) if capped else score)
        assert 0 <= row.score <= POLICY.fit_cap + POLICY.intent_cap
        assert row.score == round(row.fit_score + row.intent_score, 1)
        assert row.tier in TIERS and row.seniority in SENIORITY_LEVELS


# --- policy ------------------------------------------------------------------------------------------------------


def test_bundled_policy_loads_with_sensible_ranges():
    policy = load_policy(ScoringPolicy, "scoring")
    assert policy.version == "2026.11-1"
    assert (policy.fit_cap, policy.intent_cap) == (50, 50)
    assert 0 < policy.high_fit <= policy.fit_cap and 0 < policy.high_intent <= policy.intent_cap

    result = score_leads(random_batch(300), policy, AS_OF)
    assert result.fit_score.between(0, 50).all() and result.intent_score.between(0, 50).all()
    assert result.score.between(0, 100).all()
    assert (result.policy_version == "2026.11-1").all()


def test_bundled_policy_explains_a_typical_lead():
    policy = load_policy(ScoringPolicy, "scoring")
    row = score_one(policy, job_title="VP Marketing", industry="Software", company_size="201-1000",
                    email_domain="acme.com", is_free_mail=False, demo_requested=True, pricing_page_visits=3)
    assert row.explanation == (
        "fit 38: industry Software +12, 201-1000 employees +10, vp +12, work email +4; "
        "intent 24: demo request +15, 3 pricing visits +9"
    )
    assert row.tier == "tier_1"


def test_policy_renders_as_a_described_form():
    schema = ScoringPolicy.model_json_schema()
    assert {"version", "fit", "intent", "fit_cap", "intent_cap", "high_fit", "high_intent"} <= set(
        schema["properties"]
    )
    for name, model in schema["$defs"].items():
        for field, spec in model["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"


def fit_with(**changes) -> dict:
    return {**POLICY_DATA, "fit": {**POLICY_DATA["fit"], **changes}}


def intent_with(**changes) -> dict:
    return {**POLICY_DATA, "intent": {**POLICY_DATA["intent"], **changes}}


@pytest.mark.parametrize(
    "data",
    [
        fit_with(work_email_points=-1),
        fit_with(industry_points={"Software": -5}),
        fit_with(seniority_points={"vp": -1}),
        fit_with(size_points={"huge": 5}),
        fit_with(country_points={"usa": 5}),
        fit_with(industry_aliases={"SaaS": "Sofware"}),
        fit_with(industry_points={"Software": 5, "software": 6}),
        intent_with(demo_request_points=-15),
        intent_with(pricing_visits_cap=0),
        intent_with(recency_half_life_days=0),
        intent_with(page_view_steps=[{"min_views": 20, "points": 4}, {"min_views": 5, "points": 2}]),
        intent_with(page_view_steps=[{"min_views": 5, "points": 4}, {"min_views": 20, "points": 2}]),
        intent_with(message_topics=[{"name": "pricing", "phrases": ["?!"], "points": 2}]),
        intent_with(message_topics=[{"name": "Pricing!", "phrases": ["price"], "points": 2}]),
        {**POLICY_DATA, "high_fit": 31},  # above fit_cap 30
        {**POLICY_DATA, "high_intent": 41},  # above intent_cap 40
        {**POLICY_DATA, "fit_cap": 0},
        {**POLICY_DATA, "high_fit": 0},
        {**POLICY_DATA, "fit_weight": 2},  # unknown field: a typo must not pass silently
        {**POLICY_DATA, "version": ""},
    ],
)
def test_invalid_policies_are_rejected(data):
    with pytest.raises(ValidationError):
        ScoringPolicy.model_validate(data)


def test_scoring_never_imports_prefect():
    code = "import sys, leadflow.domain.scoring; assert not any(m.split('.')[0] == 'prefect' for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
