"""Check Company Existence: name cleaning, domain-first matching, fuzzy bands and blocking."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from leadflow.domain import accounts as matching
from leadflow.domain.qualification import load_qualification_policy

BANDS = load_qualification_policy().matching
ACCOUNTS = pd.DataFrame({
    "id": [1, 2, 3, 4],
    "name_key": ["acme", "globex", "initech", "stark industries"],
    "domain": ["acme.com", "globex.de", None, "starkindustries.com"],
})


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("ACME", "acme"), ("Acme, Inc.", "acme"), ("acme inc", "acme"), ("The Acme Corporation", "acme"),
        ("Acme GmbH & Co. KG", "acme"), ("A.C.M.E. Ltd", "acme"), ("  acme   LLC ", "acme"),
        ("Stark Industries Ltd.", "stark industries"), ("Société Générale S.A.", "societe generale"),
    ],
)
def test_company_names_are_cleaned(name, key):
    assert matching.clean_company_names(pd.Series([name])).iloc[0] == key


@pytest.mark.parametrize(
    ("website", "domain"),
    [("https://www.acme.com/contact", "acme.com"), ("www.Acme.com", "acme.com"), ("http://acme.com:8080", "acme.com"),
     ("acme.com/", "acme.com"), ("not a site", None)],
)
def test_websites_are_cleaned(website, domain):
    value = matching.clean_websites(pd.Series([website])).iloc[0]
    assert (None if pd.isna(value) else value) == domain


def match_one(**lead) -> pd.Series:
    frame = pd.DataFrame([{"company": None, "company_domain": None, **lead}])
    return matching.match_companies(frame, ACCOUNTS, BANDS).iloc[0]


@pytest.mark.parametrize(
    ("lead", "band", "method", "account", "candidate"),
    [
        # Domain first: the name does not matter.
        ({"company": "Totally Different", "company_domain": "https://www.acme.com"}, "domain", "domain", 1, None),
        ({"company_domain": "globex.de"}, "domain", "domain", 2, None),
        # Name variants of a known account link automatically.
        ({"company": "Acme Corporation"}, "auto_link", "name_exact", 1, None),
        ({"company": "INITECH, INC."}, "auto_link", "name_exact", 3, None),
        ({"company": "Stark Industries Ltd"}, "auto_link", "name_exact", 4, None),
        ({"company": "Stark Industires"}, "auto_link", "name_fuzzy", 4, None),
        # Close but not close enough: a human decides, the candidate is kept.
        ({"company": "Acmee"}, "needs_review", "name_fuzzy", None, 1),
        ({"company": "Globexx"}, "auto_link", "name_fuzzy", 2, None),
        # Same name but another known domain: never linked automatically.
        ({"company": "Acme", "company_domain": "acme-widgets.io"}, "needs_review", "name_exact", None, 1),
        # Different block (first letters differ): never compared, so new.
        ({"company": "Kacme"}, "new_company", "none", None, None),
        ({"company": "Umbrella Health"}, "new_company", "none", None, None),
        # Free-mail domains never count: matched by name only.
        ({"company": "Acme", "company_domain": "gmail.com"}, "auto_link", "name_exact", 1, None),
        ({"company_domain": "gmail.com"}, "no_company", "none", None, None),
        ({"company": "Freelance"}, "no_company", "none", None, None),
        ({}, "no_company", "none", None, None),
    ],
)
def test_match_bands(lead, band, method, account, candidate):
    row = match_one(**lead)
    assert (row["match_band"], row["match_method"]) == (band, method)
    assert (None if pd.isna(row["matched_account_id"]) else row["matched_account_id"]) == account
    assert (None if pd.isna(row["candidate_account_id"]) else row["candidate_account_id"]) == candidate
    details = json.loads(row["match_details"])
    assert details["band"] == band and details["candidate_account_id"] == candidate


def test_review_band_keeps_score_and_evidence():
    row = match_one(company="Acmee")
    details = json.loads(row["match_details"])
    assert BANDS.needs_review_min <= details["score"] < BANDS.auto_link_min
    assert details["candidate_name_key"] == "acme" and details["key"] == "acmee"


def test_new_companies_in_one_batch_become_one_account_each():
    leads = pd.DataFrame({
        "company": ["Brand New Widgets Ltd", "brand new widgets", "Brand-New Widget", "Other Co", None],
        "company_domain": [None, None, None, "other.io", "domainonly.io"],
        "industry": None, "employee_count": None, "country": "US",
    })
    match = matching.match_companies(leads, ACCOUNTS, BANDS)
    assert match["match_band"].tolist() == ["new_company"] * 5
    assert match["new_name_key"].tolist() == ["brand new widgets"] * 3 + ["other", "domainonly.io"]
    proposals = matching.new_accounts(leads, match)
    assert sorted(proposals["name_key"]) == ["brand new widgets", "domainonly.io", "other"]
    assert proposals.set_index("name_key").loc["other", "domain"] == "other.io"


def test_blocking_never_compares_all_pairs(monkeypatch):
    calls = []
    real = matching.cdist

    def counting(queries, choices, **kwargs):
        calls.append(len(queries) * len(choices))
        return real(queries, choices, **kwargs)

    monkeypatch.setattr(matching, "cdist", counting)
    accounts = pd.DataFrame({"id": range(1000), "name_key": [f"{c}{i}" for i in range(500) for c in ("aa", "zz")],
                             "domain": None})
    leads = pd.DataFrame({"company": ["aa7 x", "zz9 y"], "company_domain": None})
    matching.match_companies(leads, accounts, BANDS)
    assert sum(calls) <= 1000 and max(calls) <= 500


def test_index_of_the_caller_is_kept():
    frame = pd.DataFrame({"company": ["Acme", "Nope Inc"], "company_domain": [None, None]}, index=[10, 4])
    match = matching.match_companies(frame, ACCOUNTS, BANDS)
    assert match.loc[10, "matched_account_id"] == 1 and match.loc[4, "match_band"] == "new_company"


def test_near_duplicate_new_companies_on_distinct_domains_stay_apart():
    leads = pd.DataFrame({"company": [f"Zyxquant {i}" for i in range(40)],
                          "company_domain": [f"zyxquant{i}.io" for i in range(40)]})
    match = matching.match_companies(leads, ACCOUNTS, BANDS)
    assert match["match_band"].eq("new_company").all()
    proposals = matching.new_accounts(leads, match)
    assert len(proposals) == 40
    assert sorted(proposals["domain"]) == sorted(f"zyxquant{i}.io" for i in range(40))
    assert dict(zip(proposals["domain"], proposals["name_key"], strict=True))["zyxquant7.io"] == "zyxquant 7"


@pytest.mark.parametrize(
    ("companies", "domains", "accounts"),
    [
        # one company, spelled twice, on one domain, or with the domain on one row only
        (["Acme Inc", "ACME Incorporated"], ["acme.com", "acme.com"], 1),
        (["Acme Inc", "ACME Incorporated"], ["acme.com", None], 1),
        (["Zyxquant Systems", "Zyxquant System"], ["zyxquant.com", "zyxquant.com"], 1),
        (["Zyxquant Systems", "Zyxquant System"], [None, "zyxquant.com"], 1),
        (["Zyxquant Systems", "Zyxquant System"], [None, None], 1),
        # near-duplicate names on two domains: two companies, as when linking to a known account
        (["Zyxquant Systems", "Zyxquant System"], ["zyxquant.com", "zyxquant.io"], 2),
        # a domainless spelling joins the best match whose domain does not conflict
        (["Zyxquant Systems", "Zyxquant System", "Zyxquant Systemz"], ["zyxquant.com", "zyxquant.io", None], 2),
    ],
)
def test_new_company_grouping_respects_domains(companies, domains, accounts):
    leads = pd.DataFrame({"company": companies, "company_domain": domains})
    match = matching.match_companies(leads, pd.DataFrame({"id": [], "name_key": [], "domain": []}), BANDS)
    assert match["match_band"].eq("new_company").all()
    assert len(matching.new_accounts(leads, match)) == accounts
    assert match["new_name_key"].nunique() == accounts
