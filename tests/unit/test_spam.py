"""Spam rules: one table of positive and negative cases per rule, bursts, reasons, hashes, masks and the policy."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from leadflow.config.policy import PolicyError, load_policy
from leadflow.config.settings import email_hash_key
from leadflow.domain.spam import (
    DENIED_DOMAIN,
    DISPOSABLE_DOMAIN,
    EMAIL_BURST,
    GIBBERISH_NAME,
    HONEYPOT_FILLED,
    IP_BURST,
    KNOWN_BAD_ADDRESS,
    LINK_IN_NAME,
    LINKS_IN_MESSAGE,
    MARKUP_IN_NAME,
    OUTPUT_COLUMNS,
    REASON_CODES,
    SPAM_MESSAGE,
    TOO_FAST_FORM_FILL,
    SpamPolicy,
    detect_spam,
    email_hash,
    mask_email,
    mask_emails,
)

POLICY = load_policy(SpamPolicy, "spam")
T0 = pd.Timestamp("2026-11-02 09:00", tz="UTC")


def policy(**changes: Any) -> SpamPolicy:
    """The bundled policy with some fields replaced, validated again."""
    return SpamPolicy.model_validate({**POLICY.model_dump(), **changes})


def judge(rows: list[dict[str, Any]], rules: SpamPolicy = POLICY, known_bad: set[str] | None = None) -> pd.DataFrame:
    return detect_spam(pd.DataFrame(rows), rules, known_bad)


def sha(email: str) -> str:
    """The keyed hash of an email under the settings' key (the tests' LEADFLOW_HASH_KEY)."""
    return hmac.new(email_hash_key(), email.strip().lower().encode(), hashlib.sha256).hexdigest()


# --- one table per rule -----------------------------------------------------------------------------------------

DENY = {"deny_domains": ["spammy.example", "bad.test"]}

RULE_CASES = [
    # disposable_domain
    (DISPOSABLE_DOMAIN, {"email": "x@mailinator.com"}, True, {}),
    (DISPOSABLE_DOMAIN, {"email": " X@MAILINATOR.COM "}, True, {}),
    (DISPOSABLE_DOMAIN, {"email": "x@inbox.mailinator.com"}, True, {}),
    (DISPOSABLE_DOMAIN, {"email": "x@a.b.guerrillamail.com"}, True, {}),
    (DISPOSABLE_DOMAIN, {"email": "x@acme.com", "email_domain": "Mailinator.com."}, True, {}),
    (DISPOSABLE_DOMAIN, {"email": "x@@mailinator.com"}, True, {}),
    (DISPOSABLE_DOMAIN, {"email": "bob@gmail.com"}, False, {}),
    (DISPOSABLE_DOMAIN, {"email": "jane@acme.com"}, False, {}),
    (DISPOSABLE_DOMAIN, {"email": "jane@realmailinator.com"}, False, {}),
    (DISPOSABLE_DOMAIN, {"email": "mailinator.com"}, False, {}),
    (DISPOSABLE_DOMAIN, {"email": None}, False, {}),
    (DISPOSABLE_DOMAIN, {"email": "x@mailinator.com"}, False, {"allow_domains": ["mailinator.com"]}),
    (DISPOSABLE_DOMAIN, {"email": "x@a.mailinator.com"}, False, {"allow_domains": ["mailinator.com"]}),
    (DISPOSABLE_DOMAIN, {"email": "x@a.mailinator.com"}, False, {"allow_domains": ["a.mailinator.com"]}),
    (DISPOSABLE_DOMAIN, {"email": "x@b.mailinator.com"}, True, {"allow_domains": ["a.mailinator.com"]}),
    # denied_domain
    (DENIED_DOMAIN, {"email": "x@spammy.example"}, True, DENY),
    (DENIED_DOMAIN, {"email": "x@mail.bad.test"}, True, DENY),
    (DENIED_DOMAIN, {"email": "x@SPAMMY.example"}, True, DENY),
    (DENIED_DOMAIN, {"email": "x@notbad.test"}, False, DENY),
    (DENIED_DOMAIN, {"email": "x@gmail.com"}, False, DENY),
    (DENIED_DOMAIN, {"email": "x@good.bad.test"}, False, {**DENY, "allow_domains": ["good.bad.test"]}),
    (DENIED_DOMAIN, {"email": "x@spammy.example"}, False, {}),
    # honeypot_filled
    (HONEYPOT_FILLED, {"honeypot": "x"}, True, {}),
    (HONEYPOT_FILLED, {"honeypot": "  http://spam.example  "}, True, {}),
    (HONEYPOT_FILLED, {"honeypot": True}, True, {}),
    (HONEYPOT_FILLED, {"honeypot": "   "}, False, {}),
    (HONEYPOT_FILLED, {"honeypot": "\t\n"}, False, {}),
    (HONEYPOT_FILLED, {"honeypot": "\u200b"}, False, {}),
    (HONEYPOT_FILLED, {"honeypot": ""}, False, {}),
    (HONEYPOT_FILLED, {"honeypot": None}, False, {}),
    (HONEYPOT_FILLED, {"honeypot": False}, False, {}),
    (HONEYPOT_FILLED, {"email": "a@acme.com"}, False, {}),
    # too_fast_form_fill
    (TOO_FAST_FORM_FILL, {"form_fill_seconds": 0.4}, True, {}),
    (TOO_FAST_FORM_FILL, {"form_fill_seconds": 0.0}, True, {}),
    (TOO_FAST_FORM_FILL, {"form_fill_seconds": 1.99}, True, {}),
    (TOO_FAST_FORM_FILL, {"form_fill_seconds": "1.5"}, True, {}),
    (TOO_FAST_FORM_FILL, {"form_fill_seconds": 2.0}, False, {}),
    (TOO_FAST_FORM_FILL, {"form_fill_seconds": 45.0}, False, {}),
    (TOO_FAST_FORM_FILL, {"form_fill_seconds": None}, False, {}),
    (TOO_FAST_FORM_FILL, {"form_fill_seconds": pd.NA}, False, {}),
    (TOO_FAST_FORM_FILL, {"form_fill_seconds": -3.0}, False, {}),
    (TOO_FAST_FORM_FILL, {"form_fill_seconds": "fast"}, False, {}),
    (TOO_FAST_FORM_FILL, {"form_fill_seconds": 0.4}, False, {"min_form_fill_seconds": 0}),
    # markup_in_name
    (MARKUP_IN_NAME, {"first_name": "<a href='http://x.example'>Bob</a>"}, True, {}),
    (MARKUP_IN_NAME, {"first_name": "<b>Bob</b>"}, True, {}),
    (MARKUP_IN_NAME, {"last_name": "Smith<script>alert(1)</script>"}, True, {}),
    (MARKUP_IN_NAME, {"last_name": "[url=http://x.example]cheap[/url]"}, True, {}),
    (MARKUP_IN_NAME, {"first_name": "Bob"}, False, {}),
    (MARKUP_IN_NAME, {"first_name": "<none>"}, False, {}),
    (MARKUP_IN_NAME, {"last_name": "Smith & Jones"}, False, {}),
    (MARKUP_IN_NAME, {"last_name": "O'Neill"}, False, {}),
    # link_in_name
    (LINK_IN_NAME, {"first_name": "http://spam.example"}, True, {}),
    (LINK_IN_NAME, {"first_name": "<a href=\"x\">Bob</a>"}, True, {}),
    (LINK_IN_NAME, {"first_name": "Bob www.cheap-pills.net"}, True, {}),
    (LINK_IN_NAME, {"last_name": "cheap-seo.com"}, True, {}),
    (LINK_IN_NAME, {"last_name": "bit.ly/3xYz"}, True, {}),
    (LINK_IN_NAME, {"first_name": "St. John"}, False, {}),
    (LINK_IN_NAME, {"first_name": "J.R.R."}, False, {}),
    (LINK_IN_NAME, {"first_name": "Mary.Ann"}, False, {}),
    (LINK_IN_NAME, {"last_name": "Smith Jr."}, False, {}),
    (LINK_IN_NAME, {"first_name": "Bob", "company": "Booking.com"}, False, {}),
    # gibberish_name
    (GIBBERISH_NAME, {"first_name": "xKqWzP"}, True, {}),
    (GIBBERISH_NAME, {"first_name": "asdfgh"}, True, {}),
    (GIBBERISH_NAME, {"last_name": "qwerty"}, True, {}),
    (GIBBERISH_NAME, {"first_name": "sdfghjkl"}, True, {}),
    (GIBBERISH_NAME, {"first_name": "bcdfgk"}, True, {}),
    (GIBBERISH_NAME, {"first_name": "John3"}, True, {}),
    (GIBBERISH_NAME, {"last_name": "zzzz"}, True, {}),
    (GIBBERISH_NAME, {"first_name": "JoHnSoN"}, True, {}),
    (GIBBERISH_NAME, {"first_name": "Test"}, False, {}),
    (GIBBERISH_NAME, {"first_name": "Smith 3rd"}, False, {}),
    (GIBBERISH_NAME, {"first_name": "Henry VIII"}, False, {}),
    (GIBBERISH_NAME, {"first_name": None}, False, {}),
    (GIBBERISH_NAME, {"first_name": "John3"}, False, {"gibberish": {**POLICY.gibberish.model_dump(),
                                                                   "flag_digits": False}}),
    # spam_message
    (SPAM_MESSAGE, {"message": "Best SEO services for your site!"}, True, {}),
    (SPAM_MESSAGE, {"message": "We sell quality backlinks."}, True, {}),
    (SPAM_MESSAGE, {"message": "Do you accept guest posts?"}, True, {}),
    (SPAM_MESSAGE, {"message": "CASINO bonus!!!"}, True, {}),
    (SPAM_MESSAGE, {"message": "huge crypto\ngiveaway today"}, True, {}),
    (SPAM_MESSAGE, {"message": "Loan offers at 2%"}, True, {}),
    (SPAM_MESSAGE, {"message": "Please send pricing for 40 seats."}, False, {}),
    (SPAM_MESSAGE, {"message": "Our SEO team needs a CRM."}, False, {}),
    (SPAM_MESSAGE, {"message": "We run a guest house; please post the brochure."}, False, {}),
    (SPAM_MESSAGE, {"message": "Occasionally we need more seats"}, False, {}),
    (SPAM_MESSAGE, {"message": None}, False, {}),
    (SPAM_MESSAGE, {"message": "casino"}, False, {"spam_keywords": ["viagra"]}),
    # links_in_message (policy allows 2)
    (LINKS_IN_MESSAGE, {"message": "http://a.example http://b.example https://c.example"}, True, {}),
    (LINKS_IN_MESSAGE, {"message": "www.a.example, www.b.example and HTTP://C.EXAMPLE"}, True, {}),
    (LINKS_IN_MESSAGE, {"message": "see https://www.acme.example and http://docs.acme.example"}, False, {}),
    (LINKS_IN_MESSAGE, {"message": "no links at all"}, False, {}),
    (LINKS_IN_MESSAGE, {"message": None}, False, {}),
    (LINKS_IN_MESSAGE, {"message": "our site: https://acme.example"}, True, {"max_links_in_message": 0}),
]


@pytest.mark.parametrize(("code", "row", "expected", "changes"), RULE_CASES)
def test_rule_table(code: str, row: dict[str, Any], expected: bool, changes: dict[str, Any]):
    result = judge([row], policy(**changes) if changes else POLICY)
    assert bool(result[f"rule_{code}"].iloc[0]) is expected
    assert bool(result["is_spam"].iloc[0]) is (not result["spam_reasons"].isna().iloc[0])


def test_switched_off_rule_never_fires():
    rules = {**POLICY.rules.model_dump(), HONEYPOT_FILLED: False}
    result = judge([{"honeypot": "bot", "email": "x@mailinator.com"}], policy(rules=rules))
    assert not result[f"rule_{HONEYPOT_FILLED}"].iloc[0]
    assert result["spam_reasons"].iloc[0] == DISPOSABLE_DOMAIN


# --- real names are never gibberish -------------------------------------------------------------------------------

REAL_NAMES = [
    "Nguyen", "Ng", "Srinivasan", "Łukasz", "Brzęczyszczykiewicz", "Ngozi", "Tschüss", "Mkhize", "Llwyd",
    "O'Neill", "Björk", "山田", "Ødegaard", "Xu", "Yvonne", "Rhys", "Glynn", "Wynn", "Test", "John", "Mary-Jane",
    "Jean-Luc", "D'Angelo", "McDonald", "MacArthur", "DeShawn", "LaToya", "DiCaprio", "VanDerBerg", "DeLaCruz",
    "McKenzie", "FitzGerald", "Szczepański", "Chrzanowski", "Przybylski", "Krzysztof", "Wojciech", "Grzegorz",
    "Pszczółkowski", "Strzelczyk", "Skrzypczyk", "Chrząszcz", "Chrzczonowicz", "Mkrtchyan", "Tchkhikvadze",
    "Mtskhvetadze", "Tsqvitinidze", "Mchedlishvili", "Hirschsprung", "Nietzsche", "Mietzschke", "Angstmann",
    "Schwarzenegger", "Knightley", "Nxumalo", "Ndlovu", "Tshabalala", "Dlamini", "Oyelaran-Oyeyinka", "Chukwuemeka",
    "Nnamdi", "Nkechi", "Mbappé", "Mbeki", "Sjöberg", "Åsa", "Løkke", "Þórsdóttir", "Sigurðsson", "Guðmundsdóttir",
    "Jóhannsdóttir", "Kristjánsdóttir", "Hallgrímsdóttir", "Einarsdóttir", "Mhairi", "Niamh", "Siobhán", "Caoimhe",
    "Dearbhla", "Ruaidhrí", "Llywelyn", "Gruffydd", "Angharad", "Cerys", "Bryn", "Glyn", "Wyn", "Dafydd", "Gwynn",
    "Rhydderch", "Bakhuizen", "van 't Hof", "Szőke", "Gyöngyi", "Zsófia", "Csizmadia", "Çağlar", "Şükrü", "Ilıcalı",
    "Nguyễn Thị Minh Khai", "Phạm", "Trần", "Zhuang", "Xiang", "Qiu", "Lü", "Tingting", "Fangfang", "Jingjing",
    "Venkataraghavan", "Chakrabarti", "Bhattacharya", "Krishnamurthy", "Subrahmanyam", "Abdulrahman",
    "Al-Khwarizmi", "Vlk", "Trnka", "Smrčka", "Zmrzlík", "Čtvrtník", "Štvrtecký", "Vrchlický", "Prchal", "Krč",
    "Иванов", "Щербаков", "محمد", "عبد الله", "राजेश", "Σωκράτης", "Παπαδόπουλος", "김민준", "ひろし", "Đorđević",
    "Ђорђевић", "שלום", "Nakamura", "Watanabe", "Kowalczyk", "Wiśniewski", "Dąbrowski", "Kaczmarczyk", "Müller",
    "Schröder", "Weiß", "Strauß", "Pfeiffer", "Pflüger", "Dvořák", "Hrbek", "Smrt", "Tkachenko", "Shevchenko",
    "Khrushchev", "Zhdanov", "Przemysław", "Zbigniew", "Mieczysław", "Nkosazana", "Mthembu", "Hlongwane", "Nghiem",
    "Mgebrishvili", "Ó Briain", "Mac Giolla Phádraig", "St. John", "J.R.R.", "Smith 3rd", "Henry VIII", "Louis XIV",
    "María José", "Núñez", "Ibáñez", "Gonçalves", "Conceição", "Lefèvre", "Chloë", "Noël", "Aaron", "Aaliyah",
    "Tsetsegmaa", "Oyuunchimeg", "Enkhtuvshin", "Lkhagvasuren", "Dzhambulat", "Dzhugashvili", "Brzozowski",
    "Szczygieł", "Kszczot", "Chmielewski", "Krstić", "Mladenović", "Schwarzkopf", "Kirchschläger", "Deutschmann",
    "Tschirschky", "Wolfeschlegelsteinhausenbergerdorff", "Yngwie", "Ylva", "Øystein", "Kääriäinen", "Väänänen",
    "Laaksonen", "Ng Chee Meng", "Hwang", "Kwon", "Pyo", "Cyrus", "Lynn", "Flynn", "Xiomara", "Xóchitl",
    "Quetzalcoatl", "Nezahualcóyotl", "Cuauhtémoc", "Mpho", "Thabo", "Sipho", "Mthunzi", "Bhekisisa", "Gqozo",
    "Qhubeka", "Dlodlo", "Mngxitama", "Mxolisi", "Tshwete", "Xhanti", "ALL CAPS SMITH", "lowercase jones",
]


def test_real_names_of_many_cultures_are_never_flagged():
    assert len(REAL_NAMES) > 100
    leads = pd.DataFrame({"first_name": REAL_NAMES, "last_name": list(reversed(REAL_NAMES)),
                          "company": "Acme GmbH", "email": "someone@acme.example"})
    result = detect_spam(leads, POLICY)
    flagged = [name for name, spam in zip(REAL_NAMES, result["is_spam"], strict=True) if spam]
    assert flagged == [], result.loc[result["is_spam"], "spam_reasons"].tolist()


def test_a_person_named_test_at_a_real_company_is_not_spam():
    result = judge([{"first_name": "Test", "last_name": "Test", "company": "Acme GmbH", "email": "test@acme.example",
                     "message": "Testing whether your API fits us", "form_fill_seconds": 40.0}])
    assert not result["is_spam"].iloc[0]
    assert pd.isna(result["spam_reasons"].iloc[0])


# --- bursts -----------------------------------------------------------------------------------------------------


def burst_rows(minutes: list[float], **fields: Any) -> list[dict[str, Any]]:
    return [{"submitted_at": T0 + pd.Timedelta(minutes=m), **fields} for m in minutes]


def test_six_rows_from_one_ip_within_ten_minutes_are_all_flagged():
    result = judge(burst_rows([0, 1, 2, 3, 4, 9.5], ip_address="203.0.113.7"))
    assert result[f"rule_{IP_BURST}"].tolist() == [True] * 6


def test_six_rows_from_one_ip_spread_across_a_day_are_not():
    result = judge(burst_rows([0, 240, 480, 720, 960, 1200], ip_address="203.0.113.7"))
    assert not result[f"rule_{IP_BURST}"].any()


def test_five_rows_are_not_a_burst_and_the_window_is_shorter_than_ten_minutes():
    assert not judge(burst_rows([0, 1, 2, 3, 4], ip_address="203.0.113.7"))[f"rule_{IP_BURST}"].any()
    # Six rows spanning exactly ten minutes never share a window (t - 10 min, t].
    assert not judge(burst_rows([0, 2, 4, 6, 8, 10], ip_address="203.0.113.7"))[f"rule_{IP_BURST}"].any()


def test_only_rows_inside_the_burst_are_flagged_and_ips_are_kept_apart():
    rows = burst_rows([0, 1, 2, 3, 4, 5, 120], ip_address="203.0.113.7")
    rows += burst_rows([0, 1, 2], ip_address="198.51.100.1") + burst_rows([0, 1, 2], ip_address=None)
    rows += burst_rows([2.5], ip_address="::FFFF:203.0.113.7")
    flags = judge(rows)[f"rule_{IP_BURST}"].tolist()
    assert flags == [True] * 6 + [False] + [False] * 6 + [True]


def test_unordered_rows_and_missing_times_are_handled():
    rows = [*burst_rows([9, 0, 3, 1, 2, 4], ip_address="203.0.113.7"), {"ip_address": "203.0.113.7"}]
    rows[2]["submitted_at"] = rows[2]["submitted_at"].isoformat()
    flags = judge(rows)[f"rule_{IP_BURST}"].tolist()
    assert flags == [True] * 6 + [False]


def test_submission_times_may_be_naive_text_or_in_another_time_zone():
    leads = pd.DataFrame(burst_rows([0, 1, 2, 3, 4, 5], ip_address="203.0.113.7"))
    berlin = leads.assign(submitted_at=leads["submitted_at"].dt.tz_convert("Europe/Berlin"))
    naive = leads.assign(submitted_at=leads["submitted_at"].dt.tz_localize(None))
    text = leads.assign(submitted_at=leads["submitted_at"].map(pd.Timestamp.isoformat).astype("string"))
    for frame in (berlin, naive, text):
        assert detect_spam(frame, POLICY)[f"rule_{IP_BURST}"].all()


def test_exempt_sources_do_not_count_towards_ip_bursts():
    rows = burst_rows([0, 1, 2, 3, 4, 5], ip_address="203.0.113.7", source="Event")
    assert not judge(rows)[f"rule_{IP_BURST}"].any()
    assert judge(rows, policy(ip_burst_exempt_sources=[]))[f"rule_{IP_BURST}"].all()


def test_email_bursts_use_the_normalized_email():
    emails = ["bob@acme.example", " BOB@acme.example", "Bob@Acme.example ", "bob@acme.example"]
    rows = [{**row, "email": email} for row, email in zip(burst_rows([0, 1, 2, 3]), emails, strict=True)]
    assert judge(rows)[f"rule_{EMAIL_BURST}"].all()
    assert not judge(rows[:3])[f"rule_{EMAIL_BURST}"].any()
    with_hash = pd.DataFrame([*rows[:3], {**rows[3], "email": None}])
    with_hash["email_hash"] = [sha("bob@acme.example")] * 4
    assert detect_spam(with_hash, POLICY)[f"rule_{EMAIL_BURST}"].all()


def brute_force_bursts(keys: list[Any], minutes: list[float], window: float, limit: int) -> list[bool]:
    """Reference: row i is flagged when a window (t_j - window, t_j] holding it has more than `limit` rows."""
    flagged = [False] * len(keys)
    for key_j, t_j in zip(keys, minutes, strict=True):
        if key_j is None:
            continue
        inside = [i for i, (k, t) in enumerate(zip(keys, minutes, strict=True))
                  if k == key_j and t_j - window < t <= t_j]
        if len(inside) > limit:
            for i in inside:
                flagged[i] = True
    return flagged


@pytest.mark.parametrize("seed", range(5))
def test_bursts_match_a_brute_force_reference(seed: int):
    rng = np.random.default_rng(seed)
    n = 300
    keys = [None if k == 9 else f"10.0.0.{k}" for k in rng.integers(0, 10, n).tolist()]
    minutes = np.round(rng.uniform(0, 180, n), 1).tolist()
    rows = [{"ip_address": k, "submitted_at": T0 + pd.Timedelta(minutes=m)} for k, m in zip(keys, minutes, strict=True)]
    result = judge(rows, policy(max_submissions_per_ip=3, ip_burst_exempt_sources=[]))
    assert result[f"rule_{IP_BURST}"].tolist() == brute_force_bursts(keys, minutes, 10, 3)


# --- known bad addresses ----------------------------------------------------------------------------------------


def test_known_bad_hashes_flag_the_same_address_however_it_is_typed():
    bad = {sha("spam@acme.example").upper()}
    result = judge([{"email": " SPAM@acme.example "}, {"email": "ham@acme.example"}, {"email": None}], known_bad=bad)
    assert result[f"rule_{KNOWN_BAD_ADDRESS}"].tolist() == [True, False, False]
    assert result["is_spam"].tolist() == [True, False, False]
    assert not judge([{"email": "spam@acme.example"}], known_bad=None)[f"rule_{KNOWN_BAD_ADDRESS}"].any()


def test_known_bad_uses_a_given_email_hash_column_even_when_it_is_not_sha256():
    leads = pd.DataFrame({"email_hash": ["tombstone-1", "tombstone-2", None], "email": [None, None, "x@acme.example"]})
    result = detect_spam(leads, POLICY, {"tombstone-2", sha("x@acme.example")})
    assert result[f"rule_{KNOWN_BAD_ADDRESS}"].tolist() == [False, True, True]


# --- reasons and output shape ----------------------------------------------------------------------------------


def test_reasons_are_sorted_and_comma_joined_and_na_when_clean():
    result = judge([
        {"email": "x@mailinator.com", "honeypot": "bot", "form_fill_seconds": 0.3, "first_name": "xKqWzP"},
        {"email": "jane@acme.example", "first_name": "Jane", "form_fill_seconds": 31.0},
    ])
    assert result["spam_reasons"].iloc[0] == "disposable_domain,gibberish_name,honeypot_filled,too_fast_form_fill"
    assert pd.isna(result["spam_reasons"].iloc[1])
    assert result["is_spam"].tolist() == [True, False]


def test_output_keeps_the_index_and_has_every_rule_column():
    leads = pd.DataFrame({"email": ["a@mailinator.com", "b@acme.example"]}, index=pd.Index([10, 10], name="row"))
    result = detect_spam(leads, POLICY)
    assert tuple(result.columns) == OUTPUT_COLUMNS
    assert len(OUTPUT_COLUMNS) == 2 + len(REASON_CODES)
    assert result.index.equals(leads.index)
    assert result["is_spam"].dtype == bool
    assert isinstance(result["spam_reasons"].dtype, pd.StringDtype)
    assert all(result[f"rule_{code}"].dtype == bool for code in REASON_CODES)


def test_empty_batches_and_batches_without_any_known_column():
    empty = detect_spam(pd.DataFrame({"email": pd.Series([], dtype="string")}), POLICY, {"x"})
    assert tuple(empty.columns) == OUTPUT_COLUMNS and empty.empty
    bare = detect_spam(pd.DataFrame({"unrelated": [1, 2]}), POLICY, {"x"})
    assert not bare["is_spam"].any() and bare["spam_reasons"].isna().all()


def test_min_reasons_to_flag_and_decisive_reasons():
    rules = policy(min_reasons_to_flag=2, decisive_reasons=[HONEYPOT_FILLED])
    result = judge([
        {"email": "x@mailinator.com"},
        {"email": "x@mailinator.com", "form_fill_seconds": 0.5},
        {"email": "jane@acme.example", "honeypot": "bot"},
    ], rules)
    assert result["is_spam"].tolist() == [False, True, True]
    # Reasons are listed even below the threshold, so a reviewer sees what almost flagged the lead.
    assert result["spam_reasons"].iloc[0] == DISPOSABLE_DOMAIN


# --- policy -----------------------------------------------------------------------------------------------------


def test_bundled_policy_loads():
    loaded = load_policy(SpamPolicy, "spam")
    assert loaded.version == "2026.11-1"
    assert loaded.retention_days == 30
    assert loaded.min_reasons_to_flag == 1
    assert loaded.min_form_fill_seconds == 2.0
    assert all(getattr(loaded.rules, code) for code in REASON_CODES)
    assert {"casino", "viagra", "backlink", "guest post", "seo services"} <= set(loaded.spam_keywords)


def test_policy_fields_are_described():
    for model in (SpamPolicy, type(POLICY.rules), type(POLICY.gibberish)):
        undescribed = [name for name, field in model.model_fields.items() if not field.description]
        assert undescribed == [], model.__name__


def test_domains_are_normalized():
    rules = policy(allow_domains=[" Acme.Example. ", "acme.example"])
    assert rules.allow_domains == ["acme.example"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"allow_domains": ["x.example"], "deny_domains": ["X.example"]}, "both allowed and denied"),
        ({"deny_domains": ["not a domain"]}, "not domain names"),
        ({"spam_keywords": ["SEO services", "seo-services"]}, "repeat"),
        ({"spam_keywords": ["!!!"]}, "without letters"),
        ({"min_form_fill_seconds": -1}, "greater than or equal"),
        ({"max_submissions_per_ip": 0}, "greater than or equal"),
        ({"burst_window_minutes": 0}, "greater than 0"),
        ({"retention_days": 0}, "greater than or equal"),
        ({"min_reasons_to_flag": 0}, "greater than or equal"),
        ({"decisive_reasons": ["made_up"]}, "decisive_reasons"),
        ({"surprise": 1}, "Extra inputs"),
        ({"rules": {**POLICY.rules.model_dump(), "ip_burst": False, "email_burst": False}, "min_reasons_to_flag": 11},
         "only 10 rules"),
        ({"gibberish": {**POLICY.gibberish.model_dump(), "keyboard_runs": ["QWER"]}}, "keyboard_runs"),
    ],
)
def test_policy_validation_errors(changes: dict[str, Any], message: str):
    with pytest.raises(ValueError, match=message):
        policy(**changes)


def test_an_invalid_policy_file_is_a_policy_error(tmp_path):
    path = tmp_path / "spam.json"
    path.write_text(json.dumps({**POLICY.model_dump(), "retention_days": -5}), encoding="utf-8")
    with pytest.raises(PolicyError, match="retention_days"):
        load_policy(SpamPolicy, path)


# --- hashes and masks -------------------------------------------------------------------------------------------


def test_email_hash_is_the_keyed_hmac_sha256_of_the_trimmed_lower_cased_email():
    emails = pd.Series([" Bob@Acme.example ", "bob@acme.example", None, "   "], index=[5, 6, 7, 8])
    hashes = email_hash(emails)
    assert hashes.index.tolist() == [5, 6, 7, 8]
    assert hashes.iloc[0] == hashes.iloc[1] == sha("bob@acme.example")
    assert hashes.iloc[2:].isna().all()
    assert hashes.iloc[0] != hashlib.sha256(b"bob@acme.example").hexdigest(), "never the bare, reversible hash"


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("jane.doe@example.com", "j***@e***.com"),
        ("  Jane@Example.COM ", "j***@e***.com"),
        ("jd@mail.example.co.uk", "j***@m***.uk"),
        ("a@b.co", "***@***.co"),
        ("x@localhost", "***@l***"),
        ("a@b@evil.example", "a***@e***.example"),
        ("bob@", "b***@***"),
        ("@example.com", "***@e***.com"),
        ("not an email", "***"),
        ("", "<missing>"),
        (None, "<missing>"),
        (pd.NA, "<missing>"),
    ],
)
def test_mask_email(email: Any, masked: str):
    assert mask_email(email) == masked


def test_masks_never_reveal_a_whole_local_part_or_domain():
    emails = ["jane.doe@example.com", "ab@cd.org", "a@b.co", "bob@mailinator.com", "x@y", "zz@example.org"]
    for email, masked in zip(emails, mask_emails(pd.Series(emails)), strict=True):
        local, domain = email.split("@")
        assert f"{local}@" not in masked
        assert f"@{domain}" not in masked


def test_mask_emails_is_vectorized_keeps_the_index_and_agrees_with_mask_email():
    emails = pd.Series(["jane@example.com", None, "nope", "a@b.co"], index=list("wxyz"))
    masked = mask_emails(emails)
    assert masked.index.tolist() == list("wxyz")
    assert pd.isna(masked["x"])
    assert [mask_email(e) for e in emails] == [("<missing>" if pd.isna(m) else m) for m in masked]
