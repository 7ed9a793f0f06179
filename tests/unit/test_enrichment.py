"""Retrieve Lead Details: record cleaning, lookup planning, fill-only-empty, Retry-After and the HTTP provider."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pandas as pd
import pytest

from leadflow.config.settings import Settings
from leadflow.io import enrichment as en
from tests.enrichment_server import EnrichmentApi, enrichment_server

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ACME = {"legal_name": "Acme Corporation", "industry": "Manufacturing", "employee_count": 1200,
        "revenue_band": "250M-1B", "country": "US"}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (ACME, ACME),
        ({"industry": "  Software ", "employee_count": "340"}, {"industry": "Software", "employee_count": 340}),
        ({"employee_count": "many"}, None),
        ({"employee_count": -5, "industry": ""}, None),
        ({"employee_count": 99_999_999}, None),
        ({"country": "Deutschland"}, {"country": "DE"}),
        ({"country": "Atlantis"}, None),
        ({"unknown_field": "x"}, None),
        (None, None),
        ("not a record", None),
        ({"industry": float("nan"), "legal_name": "Globex"}, {"legal_name": "Globex"}),
    ],
)
def test_firmographic_records_are_cleaned(record, expected):
    assert en._firmographic(record) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2", 2.0),
        (" 0 ", 0.0),
        ("-3", 0.0),
        ("1.5", 1.5),
        (None, None),
        ("", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: go now
    ],
)
def test_retry_after_header(header, expected):
    assert en.parse_retry_after(header) == expected


def test_retry_after_http_date_in_the_future():
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC).timestamp()
    assert en.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == pytest.approx(30.0)


@pytest.mark.parametrize(("base", "attempts", "expected"), [(1.0, 1, []), (1.0, 4, [1.0, 2.0, 4.0]),
                                                             (0.5, 3, [0.5, 1.0])])
def test_backoff_doubles_without_jitter(base, attempts, expected):
    assert en.jittered_backoff(base, attempts, jitter=0) == expected


def test_backoff_jitter_stretches_each_delay_by_at_most_half():
    delays = en.jittered_backoff(1.0, 6, jitter=0.5, seed=7)
    assert all(2**i <= d <= 1.5 * 2**i for i, d in enumerate(delays))


def _leads(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {
        "id": list(range(1, n + 1)),
        "email_domain": [None] * n,
        "company": [None] * n,
        "company_domain": [None] * n,
        "enrichment_status": [None] * n,
        "enrichment_sources": [None] * n,
        "company_legal_name": [None] * n,
        "industry": [None] * n,
        "employee_count": [None] * n,
        "revenue_band": [None] * n,
        "country": [None] * n,
    }
    base.update(columns)
    frame = pd.DataFrame(base)
    frame["employee_count"] = frame["employee_count"].astype("Int64")
    for name in ("email_domain", "company", "company_domain", "company_legal_name", "industry", "revenue_band",
                 "country", "enrichment_status"):
        frame[name] = frame[name].astype("string")
    return frame


def test_free_mail_domains_are_never_looked_up():
    leads = _leads(company_domain=["acme.com", "gmail.com", None, "WWW-less.example"],
                   email_domain=["acme.com", "gmail.com", "outlook.com", "x.example"])
    assert en.lookup_domains(leads).tolist() == ["acme.com", pd.NA, pd.NA, "www-less.example"]


@pytest.mark.parametrize(
    ("status", "sources", "domain", "expected"),
    [
        (None, None, "acme.com", True),  # never tried
        ("failed", {"_domain": "acme.com"}, "acme.com", True),  # provider failed last time: try again
        ("enriched", {"_domain": "acme.com"}, "acme.com", False),
        ("not_found", {"_domain": "acme.com"}, "acme.com", False),
        ("not_found", {"_domain": "acme.com"}, "globex.de", True),  # the company domain changed
        ("no_domain", {}, "acme.com", True),  # a website arrived later
        ("free_mail", "{}", None, False),
        ("enriched", '{"_domain": "acme.com"}', "acme.com", False),  # JSON text as SQLite returns it
    ],
)
def test_which_leads_need_a_lookup(status, sources, domain, expected):
    leads = _leads(enrichment_status=[status], enrichment_sources=[sources], company_domain=[domain])
    assert en.needs_lookup(leads, en.lookup_domains(leads)).tolist() == [expected]


def test_apply_details_fills_only_empty_fields_and_records_sources():
    leads = _leads(
        company_domain=["acme.com", "acme.com", "unknown.example", "down.example", None, None],
        email_domain=["acme.com", "acme.com", "unknown.example", "down.example", "gmail.com", "corp.example"],
        company=[None, "ACME Typed", "Unknown", "Down", None, None],
        industry=[None, "Retail", None, None, None, None],
        country=[None, "DE", None, None, None, None],
    )
    results = en.DomainResults()
    results.add({"acme.com": ACME, "unknown.example": None})
    results.add_failed(["down.example"])
    out = en.apply_details(leads, results, "reference", NOW).set_index("id")
    assert out["enrichment_status"].tolist() == ["enriched", "enriched", "not_found", "failed", "free_mail",
                                                 "no_domain"]
    # Lead 1 had nothing: everything comes from the reference table, including the company name.
    assert out.loc[1, "industry"] == "Manufacturing" and out.loc[1, "company"] == "Acme Corporation"
    assert out.loc[1, "employee_count"] == 1200
    # Lead 2 typed its industry, country and company: those win.
    assert out.loc[2, "industry"] == "Retail" and out.loc[2, "country"] == "DE"
    assert out.loc[2, "company"] == "ACME Typed"
    assert out.loc[2, "revenue_band"] == "250M-1B"
    sources = json.loads(out.loc[2, "enrichment_sources"])
    # Typed fields are not named; every provider value is, with where it came from.
    assert sources == {"_domain": "acme.com", "legal_name": {"from": "reference", "value": "Acme Corporation"},
                       "employee_count": {"from": "reference", "value": 1200},
                       "revenue_band": {"from": "reference", "value": "250M-1B"}}
    assert json.loads(out.loc[1, "enrichment_sources"])["company"] == {"from": "reference",
                                                                        "value": "Acme Corporation"}
    assert out.loc[3, "industry"] is pd.NA and json.loads(out.loc[3, "enrichment_sources"]) == {
        "_domain": "unknown.example"}
    assert json.loads(out.loc[5, "enrichment_sources"]) == {}


def test_a_provider_value_replaced_by_a_typed_one_leaves_the_sources():
    sources = {"_domain": "acme.com", "industry": {"from": "reference", "value": "Manufacturing"},
               "employee_count": {"from": "reference", "value": 1200}}
    leads = _leads(company_domain=["acme.com"], email_domain=["acme.com"], enrichment_status=["enriched"],
                   enrichment_sources=[json.dumps(sources)], industry=["Retail"], employee_count=[1200])
    out = en.apply_details(leads, en.DomainResults(), "reference", NOW)
    assert out["enrichment_status"].tolist() == ["enriched"]  # no new lookup
    assert json.loads(out["enrichment_sources"].iloc[0]) == {
        "_domain": "acme.com", "employee_count": {"from": "reference", "value": 1200}}


def test_apply_details_without_a_provider_says_disabled():
    leads = _leads(company_domain=["acme.com"], email_domain=["acme.com"])
    out = en.apply_details(leads, en.DomainResults(), None, NOW)
    assert out["enrichment_status"].tolist() == ["disabled"]
    assert out["industry"].isna().all()


def test_apply_details_leaves_leads_that_need_no_lookup_alone():
    leads = _leads(company_domain=["acme.com"], email_domain=["acme.com"], enrichment_status=["enriched"],
                   enrichment_sources=[{"_domain": "acme.com"}])
    assert en.apply_details(leads, en.DomainResults(), "reference", NOW).empty


def test_outage_after_consecutive_failed_calls():
    results = en.DomainResults()
    results.add_failed(["a.example"])
    results.add_failed(["b.example"])
    assert not results.outage
    results.add({"c.example": None})  # one success resets the count
    for domain in ("d.example", "e.example", "f.example"):
        results.add_failed([domain])
    assert results.outage and results.calls == 6 and results.failed_calls == 5
    assert results.known() == {"a.example", "b.example", "c.example", "d.example", "e.example", "f.example"}


def test_firmographics_file_rejects_bad_rows_with_reasons(tmp_path):
    path = tmp_path / "firmographics.csv"
    path.write_text(
        "Domain,Legal Name,Industry,Employees,Revenue Band,Country\n"
        "https://www.Acme.com/about,Acme Corporation,Manufacturing,1200,250M-1B,United States\n"
        "not a domain,Broken Inc,Software,10,<1M,US\n"
        "empty.example,,,,,\n"
        "globex.de,Globex GmbH,Software,340,50M-250M,DE\n"
        "globex.de,Globex AG,Software,350,50M-250M,DE\n",
        encoding="utf-8",
    )
    good, rejected = en.read_firmographics(str(path))
    assert good["domain"].tolist() == ["acme.com", "globex.de"]
    assert good.set_index("domain").loc["globex.de", "legal_name"] == "Globex AG"  # the last row wins
    assert good.set_index("domain").loc["acme.com", "country"] == "US"
    assert rejected[["_row", "reason"]].values.tolist() == [[3, "invalid_domain"], [4, "no_firmographics"],
                                                            [5, "duplicate_domain"]]


def test_firmographics_file_without_domains_is_an_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("company,industry\nAcme,Software\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no domain column"):
        en.read_firmographics(str(path))


def _http_settings(url: str, **overrides) -> Settings:
    return Settings(enrichment_provider="http", enrichment_url=url, enrichment_timeout_seconds=0.5,
                    enrichment_rate_per_second=1000, **overrides)


def test_http_provider_answers_in_batches_and_cleans_records():
    api = EnrichmentApi({"acme.com": {**ACME, "employee_count": "1200"}})
    with enrichment_server(api) as url:
        provider = en.HttpProvider(_http_settings(url, enrichment_batch_size=2))
        batches = provider.batches(["acme.com", "b.example", "c.example"])
        answers = {}
        for batch in batches:
            answers.update(provider.fetch(batch))
    assert batches == [["acme.com", "b.example"], ["c.example"]]
    assert answers == {"acme.com": ACME, "b.example": None, "c.example": None}
    assert api.calls == batches


@pytest.mark.parametrize(
    ("move", "retryable"),
    [(("status", 500), True), (("status", 503), True), (("status", 429), True), (("status", 400), False),
     (("status", 401), False), (("status", 404), False), (("slow", 2.0), True)],
)
def test_http_provider_says_which_failures_are_worth_a_retry(move, retryable):
    api = EnrichmentApi({}, script=[move])
    with enrichment_server(api) as url, pytest.raises(en.EnrichmentError) as caught:
        en.HttpProvider(_http_settings(url)).fetch(["acme.com"])
    assert caught.value.retryable is retryable


def test_http_provider_waits_for_retry_after_before_giving_the_attempt_back():
    api = EnrichmentApi({}, script=[("status", 429, "1")])
    with enrichment_server(api) as url:
        provider = en.HttpProvider(_http_settings(url))
        started = time.monotonic()
        with pytest.raises(en.EnrichmentError) as caught:
            provider.fetch(["acme.com"])
        assert time.monotonic() - started >= 1.0
    assert caught.value.retry_after == 1.0


def test_http_provider_down_is_a_retryable_error():
    with enrichment_server(EnrichmentApi({})) as url:
        pass  # the server is gone once the block ends: its port refuses connections
    with pytest.raises(en.EnrichmentError, match="unreachable") as caught:
        en.HttpProvider(_http_settings(url)).fetch(["acme.com"])
    assert caught.value.retryable


def test_http_provider_needs_a_url():
    with pytest.raises(ValueError, match="LEADFLOW_ENRICHMENT_URL"):
        en.HttpProvider(Settings(enrichment_provider="http"))


def test_http_provider_sends_the_api_key_as_a_bearer_token():
    seen = {}

    class Recorder(en.HttpProvider):
        pass

    api = EnrichmentApi({})
    with enrichment_server(api) as url:
        provider = Recorder(_http_settings(url, enrichment_api_key="s3cret"))
        seen["auth"] = provider.client.headers.get("Authorization")
        provider.fetch(["acme.com"])
    assert seen["auth"] == "Bearer s3cret"


def test_merge_details_swaps_in_changed_rows_by_id_whatever_the_dtypes():
    at = pd.Timestamp("2025-06-01 12:00", tz="UTC")
    leads = pd.DataFrame({
        "id": [1, 2, 3],
        # As leads are read back: seconds when every stored time is whole, "str" texts (NaN when missing).
        "enriched_at": pd.Series([pd.NaT, at, pd.NaT], dtype="datetime64[s, UTC]"),
        "industry": pd.array(["Retail", None, None], dtype="string"),
        "country": pd.Series(["DE", None, "FR"], dtype="str"),
        "employee_count": [float("nan")] * 3,
    })
    changed = pd.DataFrame({
        "id": [3, 1],
        "enriched_at": pd.Series([at, at], dtype="datetime64[us, UTC]"),
        "industry": pd.array(["Software", None], dtype="string"),
        "employee_count": pd.array([250, None], dtype="Int64"),
        "country": pd.array(["NL", None], dtype="string"),
        "enrichment_status": pd.array(["enriched", "not_found"], dtype="string"),
    })
    merged = en.merge_details(leads, changed).set_index("id")
    assert merged["enriched_at"].dtype == "datetime64[us, UTC]"
    assert merged["enriched_at"].tolist() == [at, at, at]
    assert merged["industry"].dtype == "string"
    assert merged["industry"].tolist()[:2] == [pd.NA, pd.NA] and merged.loc[3, "industry"] == "Software"
    assert merged["country"].dtype == "str" and merged.loc[3, "country"] == "NL"
    assert pd.isna(merged.loc[1, "country"]) and pd.isna(merged.loc[2, "country"])
    assert merged.loc[1, "employee_count"] is None and pd.isna(merged.loc[2, "employee_count"])
    assert merged.loc[3, "employee_count"] == 250
    assert merged.loc[1, "enrichment_status"] == "not_found" and pd.isna(merged.loc[2, "enrichment_status"])
    assert merged.loc[3, "enrichment_status"] == "enriched"
    assert leads["industry"].tolist()[0] == "Retail"
