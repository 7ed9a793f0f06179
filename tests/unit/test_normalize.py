"""Tables of messy real-world values for leadflow.domain.normalize; each holds good and bad input side by side."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from leadflow.domain import normalize as nz
from leadflow.domain.normalize import (
    COUNT_CAP,
    EMAIL_PATTERN,
    FREE_MAIL_DOMAINS,
    clean_company_name,
    company_domain,
    email_domain,
    is_free_mail,
    is_valid_email,
    normalize_country,
    normalize_email,
    normalize_phone,
    normalize_source,
    parse_bool,
    parse_count,
    parse_timestamps,
    tidy_name,
    website_to_domain,
)

NA = pd.NA
# NA spellings that real frames carry; every table below also feeds them through
MISSING = [None, np.nan, pd.NA]


def obj(*values: Any) -> pd.Series:
    return pd.Series(list(values), dtype=object)


def first(result: pd.Series) -> Any:
    value = result.iloc[0]
    return NA if pd.isna(value) else value


def check_one(fn: Callable[[pd.Series], pd.Series], raw: Any, expected: Any) -> None:
    got = first(fn(obj(raw)))
    if expected is NA:
        assert got is NA, f"{raw!r} -> {got!r}, expected NA"
    else:
        assert got == expected, f"{raw!r} -> {got!r}, expected {expected!r}"


# ------------------------------------------------------------------------------------------------ email

EMAILS = [
    ("Jane@Example.COM", "jane@example.com"),
    ("  jane@example.com  ", "jane@example.com"),
    ("mailto:jane@example.com", "jane@example.com"),
    ("MAILTO:Jane@Example.com?subject=Hi%20there", "jane@example.com"),
    ("<jane@example.com>", "jane@example.com"),
    ("<mailto:jane@example.com>", "jane@example.com"),
    ('"Jane Doe" <Jane@Example.com>', "jane@example.com"),
    ("Jane Doe <Jane@X.com>", "jane@x.com"),
    ("'jane@example.com'", "jane@example.com"),
    ('"jane@example.com"', "jane@example.com"),
    ("\u200bjane@example.com\u00a0", "jane@example.com"),
    ("\ufeffjane@example.com\u200d", "jane@example.com"),
    ("jane@example.com;", "jane@example.com"),
    ("jane@example.com,", "jane@example.com"),
    ("Jane.Doe+Leads@Sub.Example.co.uk", "jane.doe+leads@sub.example.co.uk"),
    ("JÖRG@Bücher.de", "jörg@bücher.de"),
    # no validation: garbage is only tidied
    ("not an email", "not an email"),
    ("Jane At Example Dot Com", "jane at example dot com"),
    ("", NA),
    ("   ", NA),
    ("\u00a0\u200b", NA),
    ("<>", NA),
    ('""', NA),
    ("mailto:", NA),
    *[(m, NA) for m in MISSING],
]


@pytest.mark.parametrize(("raw", "expected"), EMAILS)
def test_normalize_email(raw: Any, expected: Any) -> None:
    check_one(normalize_email, raw, expected)


VALID_EMAILS = [
    "jane@example.com",
    "jane.doe+tag@mail.example.co.uk",
    "j_d-1@sub-domain.example.io",
    "user@xn--bcher-kva.ch",
    "user@example.xn--p1ai",
    "a@b.technology",
    "o'brien@example.ie",
    "first.middle.last@example.museum",
    "1234@123.example.com",
    "JANE@EXAMPLE.COM",
    "x@" + "a" * 63 + ".com",
]
INVALID_EMAILS = [
    "janeexample.com",
    "jane@@example.com",
    "jane@ex@ample.com",
    "jane doe@example.com",
    "jane@exa mple.com",
    "jane@example",
    "jane@localhost",
    ".jane@example.com",
    "jane.@example.com",
    "ja..ne@example.com",
    "jane@.example.com",
    "jane@example.com.",
    "jane@example..com",
    "jane@-example.com",
    "jane@example-.com",
    "jane@example.c",
    "jane@example.123",
    "jane@exam_ple.com",
    "@example.com",
    "jane@",
    " jane@example.com",
    "jane@example.com\n",
    "<jane@example.com>",
    "a" * 65 + "@example.com",
    "x@" + "a" * 64 + ".com",
    "x@" + ("a" * 60 + ".") * 5 + "com",
    "",
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(v, True) for v in VALID_EMAILS] + [(v, False) for v in INVALID_EMAILS] + [(m, False) for m in MISSING],
)
def test_is_valid_email(value: Any, expected: bool) -> None:
    result = is_valid_email(obj(value))
    assert result.dtype == bool
    assert bool(result.iloc[0]) is expected


@pytest.mark.parametrize(
    ("value", "expected"), [(v, True) for v in VALID_EMAILS] + [(v, False) for v in INVALID_EMAILS]
)
def test_email_pattern_alone_in_python_re(value: str, expected: bool) -> None:
    """Others use EMAIL_PATTERN with Python re (and GX); only the length limits live outside it."""
    within_limits = len(value) <= 254 and value.find("@") <= 64
    assert (re.fullmatch(EMAIL_PATTERN, value) is not None) == (expected or not within_limits)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jane@example.com", "example.com"),
        ("Jane@Example.COM ", "example.com"),
        ("jane@sub.example.co.uk", "sub.example.co.uk"),
        ("a@b@c.org", "c.org"),
        ("@example.com", "example.com"),
        ("no-at-sign.com", NA),
        ("jane@", NA),
        ("", NA),
        *[(m, NA) for m in MISSING],
    ],
)
def test_email_domain(raw: Any, expected: Any) -> None:
    check_one(email_domain, raw, expected)


# ------------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  jane   doe ", "Jane Doe"),
        ("JANE", "Jane"),
        ("jane", "Jane"),
        ("JEAN-LUC", "Jean-Luc"),
        ("o'brien", "O'Brien"),
        ("O'BRIEN", "O'Brien"),
        ("d'angelo", "D'Angelo"),
        ("JOHN'S", "John's"),
        ("mcdonald", "Mcdonald"),
        ("McDonald", "McDonald"),
        ("van der Berg", "van der Berg"),
        ("VAN DER BERG", "Van der Berg"),
        ("LUDWIG VAN BEETHOVEN", "Ludwig van Beethoven"),
        ("maria de la cruz", "Maria de la Cruz"),
        ("JOHN SMITH III", "John Smith III"),
        ("ÉLODIE", "Élodie"),
        ("josé", "José"),
        ("ZOË O’NEILL", "Zoë O’Neill"),
        ("eBay", "eBay"),
        ("DeShawn", "DeShawn"),
        ("Jane\tDoe", "Jane Doe"),
        ("Jane\r\nDoe", "Jane Doe"),
        ("Jane\x00Doe", "JaneDoe"),
        ("\u200bAnna\u00a0Lee\ufeff", "Anna Lee"),
        ("李小龙", "李小龙"),
        ("J.", "J."),
        ("123", "123"),
        ("", NA),
        ("   ", NA),
        ("\x00\x07", NA),
        *[(m, NA) for m in MISSING],
    ],
)
def test_tidy_name(raw: Any, expected: Any) -> None:
    check_one(tidy_name, raw, expected)


# ----------------------------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    ("phone", "country", "expected"),
    [
        ("+1 (415) 555-2671", "US", "+14155552671"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("415.555.2671", "us", "+14155552671"),
        (" 415 555 2671 ", " US ", "+14155552671"),
        ("+1 415 555 2671 ext. 123", None, "+14155552671"),
        ("415-555-2671 x12", "US", "+14155552671"),
        ("tel:+1-415-555-2671", None, "+14155552671"),
        ("0044 20 7946 0958", None, "+442079460958"),
        ("00 49 30 1234567", "US", "+49301234567"),
        ("+49 (0)30 1234567", NA, "+49301234567"),
        ("030 1234567", "DE", "+49301234567"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("020 7946 0958", "UK", "+442079460958"),
        (4155552671, "US", "+14155552671"),
        (4155552671.0, "US", "+14155552671"),
        ("4155552671.0", "US", "+14155552671"),
        ("\u200b+1\u00a0415\u00a0555\u00a02671", None, "+14155552671"),
        # failures: no region for a national number, invalid numbers, junk
        ("415 555 2671", None, NA),
        ("415 555 2671", "United States", NA),
        ("0301234567", "XX", NA),
        ("+1 555 555 5555", None, NA),
        ("12345", "US", NA),
        ("+99 123", None, NA),
        ("not a phone", "US", NA),
        ("", "US", NA),
        ("   ", "US", NA),
        (None, "US", NA),
        (np.nan, "US", NA),
        (pd.NA, "DE", NA),
    ],
)
def test_normalize_phone(phone: Any, country: Any, expected: Any) -> None:
    got = first(normalize_phone(obj(phone), obj(country)))
    assert got is expected if expected is NA else got == expected


def test_normalize_phone_accepts_numeric_series_and_scalar_country() -> None:
    result = normalize_phone(pd.Series([4155552671.0, np.nan, 4155552671.0]), "US")
    assert result.tolist() == ["+14155552671", NA, "+14155552671"]
    assert result.dtype == "string"


def test_normalize_phone_settles_plain_shapes_without_parsing_each_number() -> None:
    nz._e164.cache_clear()
    phones = obj(*(["+1 415 555 2671", "(415) 555-2671", "0044 20 7946 0958"] * 500))
    result = normalize_phone(phones, obj(*(["US"] * 1500)))
    assert result.tolist() == ["+14155552671", "+14155552671", "+442079460958"] * 500
    assert nz._e164.cache_info().misses == 0


def test_normalize_phone_parses_each_distinct_odd_shape_once() -> None:
    nz._e164.cache_clear()
    phones = obj(*(["tel. +1 415 555 2671", "Mobile: 415-555-2671"] * 500))
    result = normalize_phone(phones, obj(*(["US"] * 1000)))
    assert nz._e164.cache_info().misses == 2
    assert (result == "+14155552671").all()


# ---------------------------------------------------------------------------------------------- domains


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://www.Acme.com/contact?x=1", "acme.com"),
        ("HTTPS://WWW.ACME.COM", "acme.com"),
        ("acme.com", "acme.com"),
        ("Acme.COM.", "acme.com"),
        ("www.acme.com", "acme.com"),
        ("www2.acme.de", "acme.de"),
        ("acme.com:443", "acme.com"),
        ("http://acme.com#about", "acme.com"),
        ("acme.com/about/team", "acme.com"),
        ("http://user:pw@www2.acme.co.uk:8080/x", "acme.co.uk"),
        ("https://www.acme.com/?q=a@b", "acme.com"),
        ("//cdn.acme.io/x.js", "cdn.acme.io"),
        ("ftp://files.acme.com", "files.acme.com"),
        ("  https://shop.acme.com  ", "shop.acme.com"),
        ("münchen.de", "münchen.de"),
        ("https://xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
        ("\u200bacme.com", "acme.com"),
        # failures
        ("jane@acme.com", NA),
        ("mailto:jane@acme.com", NA),
        ("localhost", NA),
        ("http://localhost:8080", NA),
        ("localhost.localdomain", NA),
        ("192.168.0.1", NA),
        ("http://10.0.0.1:8080/admin", NA),
        ("[::1]", NA),
        ("acme", NA),
        ("acme .com", NA),
        ("acme.com (main site)", NA),
        ("acme..com", NA),
        (".acme.com", NA),
        ("*.acme.com", NA),
        ("www.com", NA),
        ("n/a", NA),
        ("-", NA),
        ("http://", NA),
        ("", NA),
        ("   ", NA),
        *[(m, NA) for m in MISSING],
    ],
)
def test_website_to_domain(raw: Any, expected: Any) -> None:
    check_one(website_to_domain, raw, expected)


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("gmail.com", True),
        ("GMail.com ", True),
        ("gmail.com.", True),
        ("jane@yahoo.co.uk", True),
        ("hotmail.fr", True),
        ("web.de", True),
        ("qq.com", True),
        ("acme.com", False),
        ("mail.acme.com", False),
        ("gmail.acme.com", False),
        ("", False),
        *[(m, False) for m in MISSING],
    ],
)
def test_is_free_mail(domain: Any, expected: bool) -> None:
    result = is_free_mail(obj(domain))
    assert result.dtype == bool
    assert bool(result.iloc[0]) is expected


def test_free_mail_domains_are_clean_and_cover_the_big_providers() -> None:
    assert len(FREE_MAIL_DOMAINS) >= 80
    assert all(d == d.strip().lower() and "." in d and " " not in d for d in FREE_MAIL_DOMAINS)
    must = {"gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com",
            "ymail.com", "aol.com", "icloud.com", "me.com", "mac.com", "proton.me", "protonmail.com",
            "gmx.de", "web.de", "mail.ru", "yandex.ru", "qq.com", "163.com", "126.com", "zoho.com",
            "fastmail.com", "hey.com", "t-online.de", "orange.fr", "free.fr", "libero.it", "comcast.net"}
    assert must <= FREE_MAIL_DOMAINS


@pytest.mark.parametrize(
    ("website", "email", "expected"),
    [
        ("acme.com", "other.com", "acme.com"),
        ("acme.com", "gmail.com", "acme.com"),
        ("ACME.com ", None, "acme.com"),
        (None, "corp.io", "corp.io"),
        ("", "Corp.IO", "corp.io"),
        (np.nan, "gmail.com", NA),
        (None, "yahoo.co.uk", NA),
        (None, None, NA),
        (pd.NA, "", NA),
    ],
)
def test_company_domain(website: Any, email: Any, expected: Any) -> None:
    got = first(company_domain(obj(website), obj(email)))
    assert got is expected if expected is NA else got == expected


# -------------------------------------------------------------------------------------------- companies


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Acme, Inc.", "acme"),
        ("ACME INCORPORATED", "acme"),
        ("Acme Corporation", "acme"),
        ("Acme Corp.", "acme"),
        ("Acme Co.", "acme"),
        ("Acme Company", "acme"),
        ("Acme, L.L.C.", "acme"),
        ("Acme LLC", "acme"),
        ("Acme Ltd", "acme"),
        ("Acme Limited", "acme"),
        ("Acme PLC", "acme"),
        ("Acme GmbH", "acme"),
        ("ACME Holdings GmbH & Co. KG", "acme holdings"),
        ("Acme AG", "acme"),
        ("Société Générale S.A.", "societe generale"),
        ("Acme SAS", "acme"),
        ("Acme S.à r.l.", "acme"),
        ("Acme S.r.l.", "acme"),
        ("Acme S.p.A.", "acme"),
        ("Acme Holdings B.V.", "acme holdings"),
        ("Acme N.V.", "acme"),
        ("Nokia Oyj", "nokia"),
        ("Acme Oy", "acme"),
        ("Volvo AB", "volvo"),
        ("Maersk A/S", "maersk"),
        ("Acme ApS", "acme"),
        ("Toyota K.K.", "toyota"),
        ("Acme Pty Ltd", "acme"),
        ("Acme Pte. Ltd.", "acme"),
        ("Acme LP", "acme"),
        ("Acme LLP", "acme"),
        ("Acme SE", "acme"),
        ("Acme Inc. Ltd.", "acme"),
        ("Acme Group", "acme group"),
        ("The Acme Group", "acme group"),
        ("Smith & Co", "smith"),
        ("Procter & Gamble Co.", "procter and gamble"),
        ("J.P. Morgan Chase & Co.", "jp morgan chase"),
        ("The Coca-Cola Company", "coca cola"),
        ("Ben & Jerry's", "ben and jerrys"),
        ("AT&T Inc.", "at and t"),
        ("3M Company", "3m"),
        ("Acme™ Corp", "acme"),
        ("  ACME   Widgets,  Inc. ", "acme widgets"),
        ("Acme\u00a0Widgets\u200b Ltd", "acme widgets"),
        ("Nestlé S.A.", "nestle"),
        ("Яндекс", "яндекс"),
        ("株式会社トヨタ", "株式会社トヨタ"),
        # a name that is nothing but a legal word stays, it is all there is to match on
        ("Inc.", "inc"),
        ("Company", "company"),
        ("", NA),
        ("   ", NA),
        ("!!!", NA),
        ("®", NA),
        *[(m, NA) for m in MISSING],
    ],
)
def test_clean_company_name(raw: Any, expected: Any) -> None:
    check_one(clean_company_name, raw, expected)


# -------------------------------------------------------------------------------------------- countries


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("US", "US"),
        ("us", "US"),
        ("USA", "US"),
        ("U.S.", "US"),
        ("u.s.a.", "US"),
        ("United States", "US"),
        ("United States of America", "US"),
        ("the United States", "US"),
        ("America", "US"),
        ("  united   states ", "US"),
        ("UK", "GB"),
        ("U.K.", "GB"),
        ("England", "GB"),
        ("Scotland", "GB"),
        ("Wales", "GB"),
        ("Great Britain", "GB"),
        ("United Kingdom", "GB"),
        ("GBR", "GB"),
        ("Deutschland", "DE"),
        ("Germany", "DE"),
        ("deu", "DE"),
        ("de", "DE"),
        ("Holland", "NL"),
        ("The Netherlands", "NL"),
        ("Netherlands", "NL"),
        ("España", "ES"),
        ("Spain", "ES"),
        ("South Korea", "KR"),
        ("Korea", "KR"),
        ("Korea, Republic of", "KR"),
        ("North Korea", "KP"),
        ("Russia", "RU"),
        ("Russian Federation", "RU"),
        ("Czech Republic", "CZ"),
        ("Czechia", "CZ"),
        ("UAE", "AE"),
        ("United Arab Emirates", "AE"),
        ("Türkiye", "TR"),
        ("Turkey", "TR"),
        ("Viet Nam", "VN"),
        ("Vietnam", "VN"),
        ("Côte d'Ivoire", "CI"),
        ("Ivory Coast", "CI"),
        ("Bolivia", "BO"),
        ("Taiwan", "TW"),
        ("Iran", "IR"),
        ("Brasil", "BR"),
        ("México", "MX"),
        ("Schweiz", "CH"),
        ("Österreich", "AT"),
        ("NA", "NA"),
        ("Namibia", "NA"),
        ("\u200bFrance\u00a0", "FR"),
        # failures
        ("N/A", NA),
        ("n.a.", NA),
        ("Narnia", NA),
        ("Europe", NA),
        ("XX", NA),
        ("123", NA),
        ("", NA),
        ("   ", NA),
        *[(m, NA) for m in MISSING],
    ],
)
def test_normalize_country(raw: Any, expected: Any) -> None:
    check_one(normalize_country, raw, expected)


# -------------------------------------------------------------------------------------- scalars & enums


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[(v, True) for v in ["true", "TRUE", "t", "yes", "Y", "1", "on", "checked", "opt-in", "Opted In",
                              "x", " X ", True, 1, 1.0, np.True_]],
        *[(v, False) for v in ["false", "F", "no", "N", "0", "off", "unchecked", "opt-out", False, 0, 0.0,
                               np.False_]],
        *[(v, NA) for v in ["maybe", "2", "yes please", "", "   ", 2, -1, 0.5, *MISSING]],
    ],
)
def test_parse_bool(raw: Any, expected: Any) -> None:
    result = parse_bool(obj(raw))
    assert result.dtype == "boolean"
    check_one(parse_bool, raw, expected)


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        (pd.Series([True, False]), [True, False]),
        (pd.Series([True, None], dtype="boolean"), [True, NA]),
        (pd.Series([1, 0, 2]), [True, False, NA]),
        (pd.Series([1.0, 0.0, np.nan]), [True, False, NA]),
        (pd.Series(["yes", None, "no"], dtype="string"), [True, NA, False]),
        (pd.Series(["yes", None, "no"], dtype="str"), [True, NA, False]),
    ],
)
def test_parse_bool_typed_input(series: pd.Series, expected: list[Any]) -> None:
    assert parse_bool(series).tolist() == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12", 12),
        ("12.0", 12),
        (" 1,234 ", 1234),
        ("1 234", 1234),
        ("1_000", 1000),
        ("+5", 5),
        ("1e3", 1000),
        ("0", 0),
        (7, 7),
        (3.0, 3),
        ("5000000", COUNT_CAP),
        (5e9, COUNT_CAP),
        ("-3", NA),
        (-1, NA),
        (2.5, NA),
        ("abc", NA),
        ("12 visits", NA),
        ("inf", NA),
        (float("inf"), NA),
        ("nan", NA),
        (True, NA),
        ("", NA),
        ("   ", NA),
        *[(m, NA) for m in MISSING],
    ],
)
def test_parse_count(raw: Any, expected: Any) -> None:
    result = parse_count(obj(raw))
    assert result.dtype == "Int64"
    check_one(parse_count, raw, expected)


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        (pd.Series([1, 2, -3]), [1, 2, NA]),
        (pd.Series([1.0, np.nan, 1e12, -0.5]), [1, NA, COUNT_CAP, NA]),
        (pd.Series([1, None], dtype="Int64"), [1, NA]),
        (pd.Series(["4", None], dtype="string"), [4, NA]),
        (pd.Series([True, False]), [NA, NA]),
    ],
)
def test_parse_count_typed_input(series: pd.Series, expected: list[Any]) -> None:
    assert parse_count(series).tolist() == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[(v, "web_form") for v in ["Web Form", "web-form", "WEBSITE", "webform", "Contact Form", "form"]],
        *[(v, "live_chat") for v in ["Chat", "LiveChat", "live chat", "Intercom", "drift"]],
        *[(v, "event") for v in ["Trade Show", "tradeshow", "Conference", "event", "Booth"]],
        *[(v, "paid_social") for v in ["LinkedIn", "LinkedIn Ads", "li", "linkedin_ads"]],
        *[(v, "paid_search") for v in ["Google", "AdWords", "Google Ads", "PPC", "sem", "GoogleAds"]],
        *[(v, "organic_search") for v in ["SEO", "organic", "Organic Search"]],
        ("Webinar", "webinar"),
        *[(v, "referral") for v in ["Referral", "referred", "referal", "Customer Referral"]],
        *[(v, "email_campaign") for v in ["Email", "newsletter", "Email Campaign", "e-mail", "E-Mail Campaign"]],
        *[(v, "partner") for v in ["Partner", "Reseller", "Partner Referral"]],
        # unknown channels keep their slug
        ("Partner Portal", "partner_portal"),
        ("  Podcast--Ads!! ", "podcast_ads"),
        ("__x__", "x"),
        ("Événement", "evenement"),
        ("Q3 Promo 2024", "q3_promo_2024"),
        ("", NA),
        ("   ", NA),
        ("!!!", NA),
        # letters of any script are kept: a channel typed in Japanese is still a channel
        ("日本", "日本"),
        *[(m, NA) for m in MISSING],
    ],
)
def test_normalize_source(raw: Any, expected: Any) -> None:
    check_one(normalize_source, raw, expected)


# ------------------------------------------------------------------------------------------- timestamps


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-15T10:00:00Z", utc("2024-01-15 10:00")),
        ("2024-01-15T10:00:00.123456+05:30", utc("2024-01-15 04:30:00.123456")),
        ("2024-01-15 10:00:00+02:00", utc("2024-01-15 08:00")),
        ("2024-01-15 10:00:00", utc("2024-01-15 10:00")),
        ("2024-01-15", utc("2024-01-15")),
        (" 2024-01-15T10:00:00Z ", utc("2024-01-15 10:00")),
        ("1/2/2024", utc("2024-01-02")),
        ("01/15/24", utc("2024-01-15")),
        ("1/15/2024 3:45 PM", utc("2024-01-15 15:45")),
        ("2024/01/15", utc("2024-01-15")),
        ("15 Jan 2024", utc("2024-01-15")),
        ("Jan 15, 2024", utc("2024-01-15")),
        ("Jan 5, 2024 3pm", utc("2024-01-05 15:00")),
        ("Mon, 15 Jan 2024 10:00:00 +0000", utc("2024-01-15 10:00")),
        ("2024-01-15 10:00:00 UTC", utc("2024-01-15 10:00")),
        ("1700000000", utc("2023-11-14 22:13:20")),
        ("1700000000.5", utc("2023-11-14 22:13:20.5")),
        ("1700000000000", utc("2023-11-14 22:13:20")),
        (1700000000, utc("2023-11-14 22:13:20")),
        (1700000000123, utc("2023-11-14 22:13:20.123")),
        (pd.Timestamp("2024-01-01", tz="Europe/Berlin"), utc("2023-12-31 23:00")),
        (pd.Timestamp("2024-01-01 12:00"), utc("2024-01-01 12:00")),
        # failures: junk, numbers that are no epoch, out-of-window years
        ("12", pd.NaT),
        ("May", pd.NaT),
        ("yesterday", pd.NaT),
        ("garbage", pd.NaT),
        ("2024-13-45", pd.NaT),
        ("0000000000", pd.NaT),
        ("9999999999", pd.NaT),
        (12345, pd.NaT),
        ("1985-01-01", pd.NaT),
        ("2200-01-01", pd.NaT),
        ("9999-12-31", pd.NaT),
        ("", pd.NaT),
        ("   ", pd.NaT),
        *[(m, pd.NaT) for m in MISSING],
    ],
)
def test_parse_timestamps(raw: Any, expected: Any) -> None:
    result = parse_timestamps(obj(raw))
    assert result.dtype == "datetime64[ns, UTC]"
    got = result.iloc[0]
    assert got is pd.NaT if expected is pd.NaT else got == expected


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        (pd.Series(pd.to_datetime(["2024-01-01 10:00", "1980-01-01 00:00"])), [utc("2024-01-01 10"), pd.NaT]),
        (
            pd.Series(pd.to_datetime(["2024-01-01 10:00"]).tz_localize("America/New_York")),
            [utc("2024-01-01 15:00")],
        ),
        (pd.Series(pd.to_datetime(["2024-01-01"]).as_unit("s")), [utc("2024-01-01")]),
        (
            pd.Series([1.7e9, np.nan, 1.7e12, 5.0]),
            [utc("2023-11-14 22:13:20"), pd.NaT, utc("2023-11-14 22:13:20"), pd.NaT],
        ),
        (pd.Series([1700000000, None], dtype="Int64"), [utc("2023-11-14 22:13:20"), pd.NaT]),
        (pd.Series(["2024-01-15", None], dtype="string"), [utc("2024-01-15"), pd.NaT]),
        (pd.Series([True, False]), [pd.NaT, pd.NaT]),
    ],
)
def test_parse_timestamps_typed_input(series: pd.Series, expected: list[Any]) -> None:
    result = parse_timestamps(series)
    assert result.dtype == "datetime64[ns, UTC]"
    assert result.tolist() == expected


# --------------------------------------------------------------------------------- dtypes, index, length

MESSY = ["  Jane@Example.COM ", "", None, "JEAN-LUC", "https://www.Acme.com/x", "Acme, Inc.", "USA", "yes",
         "1,234", "Web Form", "2024-01-15T10:00:00Z", "\u200b", "Ünïcödé  text"]
ONE_ARG = [
    normalize_email, is_valid_email, email_domain, tidy_name, website_to_domain, is_free_mail,
    clean_company_name, normalize_country, parse_bool, parse_count, normalize_source, parse_timestamps,
]


def _both(fn: Callable[..., pd.Series]) -> Callable[[pd.Series], pd.Series]:
    if fn is normalize_phone:
        return lambda s: normalize_phone(s, pd.Series("US", index=s.index))
    if fn is company_domain:
        return lambda s: company_domain(s, s)
    return fn


ALL = [*ONE_ARG, normalize_phone, company_domain]


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_index_and_length_preserved(fn: Callable[..., pd.Series]) -> None:
    index = pd.Index([10, 10, 3, 7, 7, 7, -1, 0, 2, 2, 99, 5, 4])  # repeated labels on purpose
    s = pd.Series(MESSY, index=index, dtype=object, name="col")
    result = _both(fn)(s)
    assert len(result) == len(s)
    assert result.index.equals(index)


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_empty_series(fn: Callable[..., pd.Series]) -> None:
    result = _both(fn)(pd.Series([], dtype=object))
    assert len(result) == 0


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [object, "string", "str", "string[python]", "category"])
def test_same_result_for_any_text_dtype(fn: Callable[..., pd.Series], dtype: Any) -> None:
    base = _both(fn)(pd.Series(MESSY, dtype=object))
    other = _both(fn)(pd.Series(MESSY, dtype=dtype))
    pd.testing.assert_series_equal(base, other)


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_python_re_and_re2_agree(fn: Callable[..., pd.Series], monkeypatch: pytest.MonkeyPatch) -> None:
    """All regexes are written for both engines; running on python-backed strings uses Python re instead."""
    s = pd.Series(MESSY + [e for e, _ in EMAILS if isinstance(e, str)], dtype=object)
    arrow = _both(fn)(s)
    monkeypatch.setattr(nz, "_STR", pd.StringDtype("python"))
    python = _both(fn)(s)
    pd.testing.assert_series_equal(arrow, python, check_dtype=False)


@pytest.mark.parametrize(
    ("fn", "dtype"),
    [
        (normalize_email, "string"), (email_domain, "string"), (tidy_name, "string"),
        (website_to_domain, "string"), (clean_company_name, "string"), (normalize_country, "string"),
        (normalize_source, "string"), (is_valid_email, "bool"), (is_free_mail, "bool"),
        (parse_bool, "boolean"), (parse_count, "Int64"), (parse_timestamps, "datetime64[ns, UTC]"),
        (normalize_phone, "string"), (company_domain, "string"),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_result_dtype(fn: Callable[..., pd.Series], dtype: str) -> None:
    assert _both(fn)(pd.Series(MESSY, dtype=object)).dtype == dtype


def test_input_is_not_modified() -> None:
    s = pd.Series(["  Jane@Example.COM "], dtype=object)
    normalize_email(s)
    tidy_name(s)
    assert s.iloc[0] == "  Jane@Example.COM "


def test_module_never_imports_prefect() -> None:
    with open(nz.__file__, encoding="utf-8") as f:
        source = f.read()
    assert "import prefect" not in source and "from prefect" not in source


@pytest.mark.parametrize(
    ("title", "expected"),
    [("CEO", "CEO"), ("  VP   Sales ", "VP Sales"), ("head of\tgrowth", "head of growth"), ("", NA), (None, NA)],
)
def test_tidy_text_keeps_casing(title: Any, expected: Any) -> None:
    got = first(nz.tidy_text(obj(title)))
    assert got is expected if expected is NA else got == expected
