"""The channel vocabulary: CRM picklists and common spellings onto channels, UTM folding, the policy and its map."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from leadflow.config.policy import POLICY_DIR, PolicyError
from leadflow.domain import channels
from leadflow.domain.channels import (
    ChannelPolicy,
    listed_unknown_channels,
    load_vocabulary,
    normalize_channels,
    normalize_utm,
    unknown_channels,
)
from leadflow.domain.reports import history_by_channel

NA = pd.NA
VOCAB = load_vocabulary()
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("spelling", "channel"),
    [
        # Salesforce's default Lead Source picklist
        ("Web", "web_form"), ("Phone Inquiry", "phone_inquiry"), ("Partner Referral", "partner"),
        ("Purchased List", "purchased_list"), ("Other", "other"),
        # HubSpot's original source, internal values and labels
        ("ORGANIC_SEARCH", "organic_search"), ("PAID_SEARCH", "paid_search"), ("EMAIL_MARKETING", "email_campaign"),
        ("SOCIAL_MEDIA", "organic_social"), ("Organic Social", "organic_social"), ("REFERRALS", "referral"),
        ("OTHER_CAMPAIGNS", "other"), ("DIRECT_TRAFFIC", "direct"), ("OFFLINE", "offline"),
        ("Offline Sources", "offline"), ("PAID_SOCIAL", "paid_social"), ("AI Referrals", "referral"),
        # Zoho CRM's Lead Source picklist
        ("Advertisement", "advertising"), ("Cold Call", "outbound"), ("Employee Referral", "referral"),
        ("External Referral", "referral"), ("Online Store", "online_store"), ("Partner", "partner"),
        ("Public Relations", "public_relations"), ("Sales Email Alias", "email_inquiry"),
        ("Seminar Partner", "event"), ("Internal Seminar", "event"), ("Trade Show", "event"),
        ("Web Download", "web_form"), ("Web Research", "outbound"), ("Chat", "live_chat"),
        # Dynamics 365 leadsourcecode, SuiteCRM lead_source_dom, Pipedrive lead sources
        ("Seminar", "event"), ("Word of Mouth", "referral"), ("Existing Customer", "existing_customer"),
        ("Self Generated", "outbound"), ("Direct Mail", "direct_mail"), ("Conference", "event"),
        ("Web forms", "web_form"), ("Live chat", "live_chat"), ("Prospector", "outbound"), ("Import", "offline"),
        ("Manually created", "offline"), ("Website visitors", "web_form"), ("Leadbooster", "live_chat"),
        # the two that fragmented reports before the vocabulary
        ("Email Marketing", "email_campaign"), ("Online Form", "web_form"),
        # case, spacing, accents, camelCase and separators
        ("  email   CAMPAIGN ", "email_campaign"), ("PaidSearch", "paid_search"), ("paid-social", "paid_social"),
        ("Wébinar", "webinar"), ("Web_Form", "web_form"),
        # former channel names read as today's
        ("google_ads", "paid_search"), ("linkedin_ads", "paid_social"), ("LinkedIn", "paid_social"),
        # no channel at all
        ("N/A", "unknown"), ("(not set)", "unknown"),
    ],
)
def test_spellings_map_onto_the_vocabulary(spelling, channel):
    assert normalize_channels(pd.Series([spelling]), VOCAB).tolist() == [channel]
    assert channel in VOCAB.channels


@pytest.mark.parametrize(
    ("spelling", "kept"),
    [("Podcast Ad", "podcast_ad"), ("  Zoë's  Booth!! ", "zoe_s_booth"), ("日本", "日本"), ("x" * 80, "x" * 64)],
)
def test_unknown_spellings_are_kept_folded(spelling, kept):
    assert normalize_channels(pd.Series([spelling]), VOCAB).tolist() == [kept]


@pytest.mark.parametrize("missing", [None, NA, "", "   ", "!!!"])
def test_nothing_to_fold_is_missing(missing):
    assert normalize_channels(pd.Series([missing], dtype=object), VOCAB).isna().all()


def test_every_channel_names_itself_and_the_readme_documents_each():
    names = list(VOCAB.channels)
    assert normalize_channels(pd.Series(names), VOCAB).tolist() == names
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", README.read_text(encoding="utf-8"), flags=re.M))
    assert set(names) <= documented, sorted(set(names) - documented)


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        *[("utm_medium", v, "cpc") for v in ["cpc", "CPC", "ppc", "paid_search", "Paid Search", "paidsearch",
                                            "paid-search", " PPC "]],
        *[("utm_medium", v, "email") for v in ["email", "e-mail", "E-Mail", "e_mail", "Newsletter"]],
        *[("utm_medium", v, "social") for v in ["social", "social-media", "Social Media", "social_network"]],
        *[("utm_medium", v, "paid_social") for v in ["paid_social", "Paid Social", "paidsocial"]],
        ("utm_medium", "affiliate", "affiliate"), ("utm_medium", "(none)", "(none)"),
        *[("utm_source", v, "google") for v in ["google", "Google", "adwords", "Google Ads", "google.com"]],
        *[("utm_source", v, "linkedin") for v in ["LinkedIn", "li", "linked_in", "lnkd.in"]],
        ("utm_source", "news.ycombinator.com", "news.ycombinator.com"),
        *[("utm_campaign", v, "spring_sale_2025") for v in ["Spring Sale 2025", "spring-sale-2025",
                                                           "SPRING_SALE_2025", " spring  sale+2025 "]],
        # a campaign is never merged with a synonym, only folded: `cpc` stays a campaign named cpc
        ("utm_campaign", "CPC", "cpc"), ("utm_campaign", "Q3 – DACH", "q3_–_dach"), ("utm_campaign", "été", "été"),
        *[(kind, v, NA) for kind in ("utm_source", "utm_medium", "utm_campaign") for v in (None, "", " - ")],
    ],
)
def test_utm_values_are_folded_and_synonyms_merged(kind, raw, expected):
    out = normalize_utm(pd.Series([raw], dtype=object), kind, VOCAB)
    assert out.dtype == "string"
    assert (out.isna().all() if expected is NA else out.tolist() == [expected])


def test_utm_values_fit_their_columns_and_unknown_columns_are_refused():
    assert normalize_utm(pd.Series(["ß" * 150]), "utm_campaign", VOCAB).str.len().tolist() == [200]
    with pytest.raises(ValueError, match="unknown UTM column"):
        normalize_utm(pd.Series(["x"]), "utm_content", VOCAB)


def test_work_is_done_once_per_distinct_value():
    values = pd.Series(["Email Marketing", "Web"] * 50_000 + [None])
    calls = []
    vocab = load_vocabulary()
    original = vocab.channel_of

    class Counting:
        def __getattr__(self, name):
            return getattr(vocab, name)

        def channel_of(self, spelling):
            calls.append(spelling)
            return original(spelling)

    out = normalize_channels(values, Counting())
    assert sorted(calls) == ["Email Marketing", "Web"]
    assert out.value_counts(dropna=False).to_dict() == {"email_campaign": 50_000, "web_form": 50_000, NA: 1}


def _policy(**changes) -> dict:
    data = json.loads((POLICY_DIR / "channels.json").read_text(encoding="utf-8"))
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"aliases": {"podcast": ["Pod"]}}, "not in the vocabulary: podcast"),
        ({"aliases": {"web_form": ["Webinar"]}}, "'Webinar' means both webinar and web_form"),
        ({"aliases": {"web_form": ["-"]}}, "'-' folds to nothing"),
        ({"channels": {"Web Form": "x"}}, "String should match pattern"),
        ({"channels": {}}, "at least 1 item"),
        ({"utm_medium": {"cpc": ["E-mail"], "email": []}}, "'E-mail' means both"),
        ({"utm_medium": {"CPC": ["ppc"]}}, "String should match pattern"),
        ({"version": ""}, "at least 1 character"),
    ],
)
def test_an_invalid_policy_is_refused_with_its_reason(tmp_path, changes, message):
    path = tmp_path / "channels.json"
    path.write_text(json.dumps(_policy(**changes)), encoding="utf-8")
    with pytest.raises(PolicyError, match=re.escape(message)):
        load_vocabulary(policy=path)


def test_a_channel_map_adds_channels_and_its_spellings_win(tmp_path, monkeypatch):
    path = tmp_path / "acme-channels.yaml"
    path.write_text("version: acme-3\nchannels:\n  podcast: Our podcast's ad reads.\n"
                    "aliases:\n  podcast: [Pod Ad, Podcast]\n  organic_search: [Google]\n"
                    "utm_medium:\n  podcast: [audio]\n", encoding="utf-8")
    monkeypatch.setenv("LEADFLOW_CHANNEL_MAP", str(path))
    from leadflow.config.settings import get_settings

    get_settings.cache_clear()
    channels._cached.cache_clear()
    try:
        vocab = channels.active_vocabulary()
        assert vocab.version == "2026.12-1+acme-3" and "podcast" in vocab.channels
        got = normalize_channels(pd.Series(["POD-AD", "Google", "Google Ads", "Web"])).tolist()
        assert got == ["podcast", "organic_search", "paid_search", "web_form"]
        assert normalize_utm(pd.Series(["Audio", "ppc"]), "utm_medium").tolist() == ["podcast", "cpc"]
    finally:
        get_settings.cache_clear()
        channels._cached.cache_clear()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"version": "x", "aliases": {"podcast": ["Pod"]}}', "aliases name channels that are not in the vocabulary"),
        ('{"version": "x", "aliases": {"web_form": ["Pod", "POD"]}, "channels": {"pod": "p"}}', "means both"),
        ('{"version": "x", "colours": {}}', "Extra inputs are not permitted"),
        ("{not json", "cannot read"),
    ],
)
def test_a_broken_channel_map_is_refused(tmp_path, content, message):
    path = tmp_path / "map.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PolicyError, match=message):
        load_vocabulary(path)


def test_a_missing_channel_map_is_refused(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_vocabulary(tmp_path / "absent.json")


def test_unknown_spellings_are_counted_and_only_plausible_names_listed():
    values = normalize_channels(pd.Series(["Web", "Podcast", "podcast", "Billboard", "jane@example.com",
                                           "Lead 123456", "y" * 50, "y" * 50, None]), VOCAB)
    counts = unknown_channels(values, VOCAB)
    assert counts == {"podcast": 2, "billboard": 1, "jane_example_com": 1, "lead_123456": 1, "y" * 50: 2}
    # a value seen once, long or holding a number may be a person's data in the wrong column: counted, not named
    assert listed_unknown_channels(counts) == {"podcast": 2, "(other)": 5}
    assert listed_unknown_channels({}) == {}


def test_the_policy_model_is_the_file_schema():
    assert ChannelPolicy.model_validate(_policy()).version == VOCAB.version


def test_history_reads_stored_channels_through_the_vocabulary():
    history = pd.DataFrame({"month": ["2025-01", "2025-01", "2025-02", "2025-02"],
                            "source": ["google_ads", "paid_search", "Email Marketing", "None"],
                            "new_leads": [2, 3, 4, 1]})
    merged = history_by_channel(history)
    assert merged.values.tolist() == [["2025-01", "paid_search", 5], ["2025-02", "email_campaign", 4],
                                      ["2025-02", "unknown", 1]]
    assert history_by_channel(history.iloc[0:0]).empty
