"""People's fields in real exports: names, phones, countries, dates and email validity, each rule beside its failure."""

from __future__ import annotations

import random
import string
from typing import Any

import pandas as pd
import pytest
from email_validator import EmailNotValidError, validate_email
from nameparser import HumanName

from leadflow.domain import normalize as nz
from leadflow.domain.contract import FieldWarning, resolve_columns
from leadflow.domain.normalize import (
    DateEvidence,
    FieldOptions,
    FieldOptionsError,
    country_checks,
    date_evidence,
    email_checks,
    first_phone,
    normalize_phone,
    parse_timestamps,
    split_full_name,
)
from leadflow.domain.submissions import field_warnings, normalize_batch, prepare_batch
from leadflow.domain.summary import IntakeSummary
from leadflow.io.sources import MALFORMED_COLUMN, ROW_COLUMN

NA = pd.NA


def text(*values: Any) -> pd.Series:
    return pd.Series(list(values), dtype=object)


def value(v: Any) -> Any:
    return NA if pd.isna(v) else v


def values(s: pd.Series) -> list[Any]:
    return [None if pd.isna(v) else v for v in s]


# ------------------------------------------------------------------------------------------------ names

@pytest.mark.parametrize(
    ("full", "first", "last"),
    [
        ("Ann Lee", "Ann", "Lee"),
        ("  ann   lee ", "ann", "lee"),
        ("Lee, Ann", "Ann", "Lee"),
        ("Dr. Juan Q. Xavier de la Vega III", "Juan", "de la Vega"),
        ("Prof Sarah Connor PhD", "Sarah", "Connor"),
        ("John Smith Jr.", "John", "Smith"),
        ("Anna-Lena von der Heide", "Anna-Lena", "von der Heide"),
        ("Maria dos Santos", "Maria", "dos Santos"),
        ("José Müller", "José", "Müller"),
        ("Mary Ann Smith-Jones", "Mary", "Smith-Jones"),
        ("Madonna", "Madonna", NA),
        ("Mr Smith", NA, "Smith"),
        # failures: nothing that is a name
        ("Mr.", NA, NA),
        ("???", NA, NA),
        ("", NA, NA),
        (None, NA, NA),
    ],
)
def test_split_full_name(full: Any, first: Any, last: Any) -> None:
    got = split_full_name(text(full)).iloc[0]
    assert (value(got["first"]), value(got["last"])) == (first, last)


def test_plain_two_word_names_split_without_nameparser_as_nameparser_would() -> None:
    rng = random.Random(7)
    words = ["Ann", "Lee", "Jean-Luc", "O'Neil", "Zoë", "Van", "Bin", "Mac", "Dr", "Jr", "Sir", "Del", "Ng", "Li"]
    names = [f"{rng.choice(words)} {rng.choice(words)}" for _ in range(300)]
    names += ["".join(rng.choice(string.ascii_letters) for _ in range(5)) + " Smith" for _ in range(50)]
    nz._parse_name.cache_clear()
    got = split_full_name(text(*names))
    for name, (first, last) in zip(names, got.itertuples(index=False), strict=True):
        parsed = HumanName(name)
        assert (value(first), value(last)) == (parsed.first or NA, parsed.last or NA), name


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).astype("string")
    frame[ROW_COLUMN] = range(1, len(frame) + 1)
    frame[MALFORMED_COLUMN] = pd.Series(NA, index=frame.index, dtype="string")
    return frame


def normalized(rows: list[dict], fields: FieldOptions | None = None) -> pd.DataFrame:
    raw = rows_frame([{"email": f"p{i}@example.com", "submitted_at": "2025-01-02", "source": "web", **row}
                      for i, row in enumerate(rows)])
    return normalize_batch(prepare_batch(raw, resolve_columns([c for c in raw.columns if not c.startswith("_")]),
                                         fields=fields))


def test_full_name_fills_only_missing_first_and_last_names() -> None:
    subs = normalized([
        {"full_name": "ANN LEE"},
        {"full_name": "Ann Lee", "first_name": "Annie"},
        {"full_name": "Ann Lee", "first_name": "Annie", "last_name": "Li"},
        {"full_name": "???"},
        {"full_name": "???", "first_name": "Bo"},
    ])
    assert values(subs["first_name"]) == ["Ann", "Annie", "Annie", None, "Bo"]
    assert values(subs["last_name"]) == ["Lee", "Lee", "Li", None, None]
    assert subs["_name_unparsed"].tolist() == [False, False, False, True, True]


# ----------------------------------------------------------------------------------------------- phones

@pytest.mark.parametrize(
    ("phone", "country", "default", "expected"),
    [
        # the bug: a missing country was taken for GB (918-730-3911 became +449187303911)
        ("918-730-3911", None, None, NA),
        ("918-730-3911", None, "US", "+19187303911"),
        ("918-730-3911", "US", "GB", "+19187303911"),
        ("020 7946 0958", "GB", "US", "+442079460958"),
        ("020 7946 0958", "UK", None, "+442079460958"),
        ("020 7946 0958", None, "UK", "+442079460958"),
        ("+44 20 7946 0958", None, None, "+442079460958"),
        ("0049 30 1234567", None, None, "+49301234567"),
        ("tel. 030 1234567", "DE", None, "+49301234567"),
        ("030 1234567", None, "DE", "+49301234567"),
        # failures: no region at all, a default that is no region, numbers that are not valid anywhere
        ("030 1234567", None, None, NA),
        ("030 1234567", None, "Germany", NA),
        ("030 1234567", "XX", None, NA),
        ("+1 555 555 5555", None, "US", NA),
        ("call me", "US", None, NA),
    ],
)
def test_phone_region_comes_from_country_then_default_then_prefix(phone: str, country: Any, default: Any,
                                                                  expected: Any) -> None:
    got = value(normalize_phone(text(phone), text(country), default).iloc[0])
    assert got == expected if expected is not NA else got is NA


@pytest.mark.parametrize(
    ("phone", "mobile", "expected", "unparsed"),
    [
        ("(415) 555-2671", "+44 20 7946 0958", "+14155552671", False),
        (None, "415 555 2671", "+14155552671", False),
        ("ask reception", "415.555.2671", "+14155552671", False),
        # failures: a value that no column turns into a number is counted, an empty row is not
        ("ask reception", None, NA, True),
        ("12", "n/a", NA, True),
        (None, None, NA, False),
    ],
)
def test_phone_columns_are_tried_in_order(phone: Any, mobile: Any, expected: Any, unparsed: bool) -> None:
    got = first_phone([text(phone), text(mobile)], "US").iloc[0]
    assert value(got["phone"]) == expected if expected is not NA else value(got["phone"]) is NA
    assert bool(got["unparsed"]) is unparsed


def test_intake_uses_mobile_phone_and_the_default_country() -> None:
    subs = normalized([
        {"mobile_phone": "918-730-3911"},
        {"phone": "(415) 555-2671", "country": "France"},
        {"phone": "030 1234567", "country": "de"},
        {"phone": "not a number"},
    ], FieldOptions(default_country="US"))
    assert values(subs["phone"]) == ["+19187303911", None, "+49301234567", None]
    assert subs["_phone_unparsed"].tolist() == [False, True, False, True]


# -------------------------------------------------------------------------------------------- countries

@pytest.mark.parametrize(
    ("raw", "code", "unknown"),
    [
        ("usa", "US", False),
        ("USA", "US", False),
        ("U.S.A.", "US", False),
        ("uk", "GB", False),
        ("United Kingdom", "GB", False),
        ("DEUTSCHLAND", "DE", False),
        ("de", "DE", False),
        ("deu", "DE", False),
        ("Slovakia (Slovak Republic)", "SK", False),
        ("Libyan Arab Jamahiriya", "LY", False),
        ("Korea, Republic of", "KR", False),
        ("Congo, Dem. Rep.", "CD", False),
        ("Macedonia, the former Yugoslav Republic of", "MK", False),
        ("Hong Kong SAR", "HK", False),
        ("Untied States", "US", False),
        ("Germanyy", "DE", False),
        ("Niger", "NE", False),
        ("Nigeria", "NG", False),
        # failures: no country, or one that no longer has one code; placeholders are missing, not unknown
        ("Narnia", NA, True),
        ("Americas", NA, True),
        ("California", NA, True),
        ("Netherlands Antilles", NA, True),
        ("Europe", NA, True),
        ("N/A", NA, False),
        ("Unknown", NA, False),
        ("-", NA, False),
        (None, NA, False),
    ],
)
def test_country_checks(raw: Any, code: Any, unknown: bool) -> None:
    got = country_checks(text(raw)).iloc[0]
    assert value(got["country"]) == code if code is not NA else value(got["country"]) is NA
    assert bool(got["unknown"]) is unknown


def test_country_fallback_runs_once_per_distinct_value() -> None:
    nz._country_fallback.cache_clear()
    result = country_checks(text(*(["Slovakia (Slovak Republic)", "Narnia", "France"] * 200)))
    assert values(result["country"])[:3] == ["SK", None, "FR"]
    assert nz._country_fallback.cache_info().misses == 2


# ------------------------------------------------------------------------------------------------ dates

def ts(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


@pytest.mark.parametrize(
    ("values", "evidence", "decision"),
    [
        (["07/05/19", "13/05/19"], DateEvidence(True, True, False), ("dmy", "column")),
        (["07/05/19", "05/13/19"], DateEvidence(True, False, True), ("mdy", "column")),
        (["31.12.2023 23:59", "01.02.2024"], DateEvidence(True, True, False), ("dmy", "column")),
        (["07/05/19", "01/02/2020"], DateEvidence(True, False, False), ("mdy", "fallback")),
        (["2024-01-15", "Jan 5, 2024", "1700000000"], DateEvidence(), ("mdy", "no_dates")),
        # failure: a column holding both orders follows the fallback
        (["13/05/19", "05/13/19"], DateEvidence(True, True, True), ("mdy", "conflict")),
    ],
)
def test_date_order_is_decided_by_the_column(values: list[str], evidence: DateEvidence,
                                             decision: tuple[str, str]) -> None:
    found = date_evidence(pd.Series(values, dtype="string"))
    assert found == evidence
    assert found.decide("mdy") == decision
    assert DateEvidence(True).decide("dmy") == ("dmy", "fallback")
    with pytest.raises(ValueError, match="date order"):
        found.decide("ymd")


@pytest.mark.parametrize(
    ("values", "order", "expected"),
    [
        # the bug: in one column 07/05/19 became 5 July and 13/05/19 13 May
        (["07/05/19", "13/05/19"], None, [ts("2019-05-07"), ts("2019-05-13")]),
        (["07/05/19", "05/13/19"], None, [ts("2019-07-05"), ts("2019-05-13")]),
        (["07/05/19", "01/02/2020"], None, [ts("2019-07-05"), ts("2020-01-02")]),
        (["07/05/19", "01/02/2020"], "dmy", [ts("2019-05-07"), ts("2020-02-01")]),
        (["7.5.2019 10:30", "07-05-2019 3:45 PM"], "dmy", [ts("2019-05-07 10:30"), ts("2019-05-07 15:45")]),
        (["07/05/2019 10:00:00 +0200", "2019-05-07T08:00:00Z"], "dmy", [ts("2019-05-07 08:00")] * 2),
        # failures: a value that does not fit the column's order is invalid, never read the other way round
        (["13/05/19"], "mdy", [pd.NaT]),
        (["05/13/19"], "dmy", [pd.NaT]),
        (["13/05/19", "05/13/19"], None, [pd.NaT, ts("2019-05-13")]),
        (["32/01/2019", "00/01/2019"], "dmy", [pd.NaT, pd.NaT]),
    ],
)
def test_parse_timestamps_reads_day_month_dates_in_one_order(values: list[str], order: str | None,
                                                              expected: list[Any]) -> None:
    got = parse_timestamps(pd.Series(values, dtype="string"), order).tolist()
    assert got == expected


# ----------------------------------------------------------------------------------------------- emails

@pytest.mark.parametrize(
    ("address", "valid", "smtputf8"),
    [
        ("jane@example.com", True, False),
        ("josé.müller@example.de", True, True),
        ("李.雷@example.io", True, True),
        ("jane@bücher.de", True, False),
        ("jane@xn--bcher-kva.de", True, False),
        ("a" * 64 + "@example.com", True, False),
        ("é" * 32 + "@example.de", True, True),
        # failures: RFC 5321 lengths in octets, special-use names, broken IDNA, plain junk
        ("a" * 65 + "@example.com", False, False),
        ("a" * 300 + "@example.com", False, False),
        ("é" * 33 + "@example.de", False, False),
        ("x@" + ("a" * 60 + ".") * 5 + "com", False, False),
        ("jane@example.test", False, False),
        ("jane@printer.local", False, False),
        ("jane@xn--zz.de", False, False),
        ("josé@@example.de", False, False),
        ("josé@example", False, False),
        (None, False, False),
    ],
)
def test_email_checks(address: Any, valid: bool, smtputf8: bool) -> None:
    got = email_checks(text(address)).iloc[0]
    assert (bool(got["valid"]), bool(got["smtputf8"])) == (valid, smtputf8)


ASCII_ADDRESSES = [
    "jane@example.com", "o'brien@example.ie", "user+tag@sub.example.co.uk", "a.b-c_d@x-y.io", "1234@123.example.com",
    "x@a.b", "x@example.c", "x@example.123", "x@-example.com", "x@example-.com", "x.@example.com", ".x@example.com",
    "x..y@example.com", "x@exa_mple.com", "x@localhost", "x@mail.invalid", "x@foo.onion", "x@in-addr.arpa",
    "x@example.local", "x@example.test", "\"x y\"@example.com", "x@[127.0.0.1]", "x@example..com", "x y@example.com",
    "x@" + "a" * 63 + ".com", "x@" + "a" * 64 + ".com", "a" * 64 + "@example.com", "a" * 65 + "@example.com",
]


@pytest.mark.parametrize("address", ASCII_ADDRESSES)
def test_ascii_fast_path_never_accepts_what_email_validator_refuses(address: str) -> None:
    try:
        validate_email(address, check_deliverability=False, strict=True)
        standard = True
    except EmailNotValidError:
        standard = False
    fast = bool(email_checks(text(address))["valid"].iloc[0])
    assert not fast or standard


def test_internationalized_addresses_pass_intake_checks_and_are_counted() -> None:
    raw = rows_frame([{"email": "José.Müller@Example.de", "submitted_at": "2025-01-02", "source": "web"},
                      {"email": "x" * 300 + "@example.com", "submitted_at": "2025-01-02", "source": "web"},
                      {"email": None, "submitted_at": "2025-01-02", "source": "web"}])
    prepared = prepare_batch(raw, {c: c for c in ("email", "submitted_at", "source")})
    assert prepared["_email_valid"].tolist()[:2] == [1.0, 0.0]
    assert pd.isna(prepared["_email_valid"].iloc[2])
    subs = normalize_batch(prepared.iloc[:1])
    assert subs["email"].tolist() == ["josé.müller@example.de"]
    assert subs["email_smtputf8"].tolist() == [True]


# ------------------------------------------------------------------------------- warnings and the summary

def test_unparsed_values_are_counted_by_reason_and_kept_in_the_payload() -> None:
    subs = normalized([
        {"phone": "ask for Bob", "country": "Narnia", "full_name": "???"},
        {"phone": "415 555 2671", "country": "USA", "full_name": "Ann Lee"},
        {"phone": "n/a", "country": "N/A"},
    ])
    assert field_warnings(subs) == {FieldWarning.PHONE_UNPARSED: 2, FieldWarning.COUNTRY_UNKNOWN: 1,
                                    FieldWarning.NAME_UNPARSED: 1}
    assert '"phone":"ask for Bob"' in subs["_payload"].iloc[0]
    assert '"country":"Narnia"' in subs["_payload"].iloc[0]
    assert field_warnings(subs.iloc[1:2]) == {}


def test_summary_reports_warnings_date_order_and_smtputf8() -> None:
    summary = IntakeSummary(batch_id="b", origin="f.csv")
    summary.add_counts("field_warnings", {"phone_unparsed": 2})
    summary.add_counts("field_warnings", {"phone_unparsed": 1, "country_unknown": 3})
    summary.emails_smtputf8 = 2
    summary.date_order = {"column": "submitted_at", "order": "dmy", "basis": "column"}
    again = IntakeSummary.from_dict(summary.as_dict())
    assert again.field_warnings == {"country_unknown": 3, "phone_unparsed": 3}
    assert "phone_unparsed" in again.to_text() and "dmy (decided by the column's values)" in again.to_text()
    assert "| country_unknown | 3 |" in again.to_markdown() and "SMTPUTF8: 2" in again.to_markdown()


def test_field_options_take_the_settings_and_refuse_unknown_values(monkeypatch) -> None:
    from leadflow.config.settings import get_settings
    from leadflow.steps.intake import field_options

    monkeypatch.setenv("LEADFLOW_DEFAULT_COUNTRY", "Germany")
    monkeypatch.setenv("LEADFLOW_DATE_ORDER", "dmy")
    get_settings.cache_clear()
    try:
        assert field_options() == FieldOptions(default_country="DE", date_order="dmy")
        assert field_options("usa", "MDY") == FieldOptions(default_country="US", date_order="mdy")
        with pytest.raises(FieldOptionsError, match="unknown default country 'Narnia'"):
            field_options("Narnia")
        with pytest.raises(FieldOptionsError, match="unknown date order 'ymd'"):
            field_options(None, "ymd")
    finally:
        get_settings.cache_clear()


# ---------------------------------------------------------------------- the date order of a chunked file

def dated_rows(dates: list[str]) -> list[dict]:
    return [{"email": f"p{i}@example.com", "submitted_at": d, "source": "web_form"} for i, d in enumerate(dates)]


@pytest.mark.parametrize(
    ("dates", "fallback", "order", "basis", "scanned"),
    [
        # the first chunk leaves it open, a later one decides: the column is read once more before any parse
        (["07/05/19"] * 150 + ["13/05/19"], "mdy", "dmy", "column", True),
        (["13/05/19"] + ["07/05/19"] * 150, "mdy", "dmy", "column", False),
        (["07/05/19"] * 80, "dmy", "dmy", "fallback", False),
        (["07/05/19"] * 150, "mdy", "mdy", "fallback", True),
        (["2019-05-07T10:00:00Z"] * 150 + ["13/05/19"], "mdy", "mdy", "no_dates", False),
        # failures: both orders in one chunk; a later chunk that contradicts the first one's decision (its
        # values that do not fit are invalid dates, quarantined)
        (["13/05/19", "05/13/19"] + ["07/05/19"] * 150, "mdy", "mdy", "conflict", False),
        (["13/05/19"] * 150 + ["05/13/19"], "mdy", "dmy", "column", False),
    ],
)
def test_date_order_is_settled_over_the_whole_file_before_parsing(tmp_path, monkeypatch, dates, fallback, order,
                                                                   basis, scanned) -> None:
    from leadflow.io import sources
    from leadflow.steps import intake as steps
    from tests.helpers import write_csv

    calls = []
    real = sources.scan_date_evidence
    monkeypatch.setattr(steps, "scan_date_evidence", lambda *a: calls.append(a) or real(*a))
    path = write_csv(tmp_path / "dates.csv", dated_rows(dates))
    plan = steps.plan_intake(path, None, None, check_columns=False, fields=FieldOptions(date_order=fallback))
    chunks, settled = steps.settle_date_order(sources.iter_lead_chunks(plan.lead_file, 100), plan)
    assert (settled.fields.date_order, settled.fields.date_basis) == (order, basis)
    assert bool(calls) is scanned
    rows = pd.concat(list(chunks))
    assert rows[ROW_COLUMN].tolist() == list(range(1, len(dates) + 1))


def test_chunked_intake_reads_every_chunk_in_the_columns_order(crm, tmp_path, monkeypatch) -> None:
    from leadflow.config.settings import get_settings
    from leadflow.crm.schema import LeadSubmission
    from tests.helpers import run_intake, write_csv

    # no check worker: spawning one costs seconds and decides nothing here
    monkeypatch.setenv("LEADFLOW_CHECK_WORKER", "false")
    get_settings.cache_clear()

    rows = dated_rows(["07/05/19"] * 120 + ["13/05/19"])
    rows[0].update(phone="918-730-3911", country="Libyan Arab Jamahiriya", first_name="Ann")
    rows[1].update(phone="918-730-3911", full_name="Lee, Ann")
    summary = run_intake(crm, write_csv(tmp_path / "dmy.csv", rows), chunk_size=100)
    assert summary["date_order"] == {"column": "submitted_at", "order": "dmy", "basis": "column"}
    assert summary["field_warnings"] == {"phone_unparsed": 2}
    with crm.engine.connect() as conn:
        stamps = {pd.Timestamp(t).strftime("%Y-%m-%d") for t in
                  conn.execute(LeadSubmission.__table__.select().with_only_columns(
                      LeadSubmission.__table__.c.submitted_at)).scalars()}
        leads = pd.read_sql("SELECT email, phone, country, first_name, last_name FROM leads ORDER BY email", conn)
    assert stamps == {"2019-05-07", "2019-05-13"}
    assert values(leads.loc[leads.email == "p0@example.com", "country"]) == ["LY"]
    # a Libyan number cannot be +1 918...: the lead's country wins and nothing is guessed
    assert values(leads.loc[leads.email.isin(["p0@example.com", "p1@example.com"]), "phone"]) == [None, None]
    assert values(leads.loc[leads.email == "p1@example.com", "first_name"]) == ["Ann"]
    assert values(leads.loc[leads.email == "p1@example.com", "last_name"]) == ["Lee"]


def test_backfill_split_reads_each_file_in_its_columns_order(tmp_path) -> None:
    from datetime import date

    from leadflow.domain.backfill import make_windows
    from leadflow.io.backfill_files import split_by_window
    from tests.helpers import write_csv

    path = write_csv(tmp_path / "dmy.csv", dated_rows(["07/05/19"] * 120 + ["13/05/19"]))
    manifest = split_by_window([tmp_path / "dmy.csv"], make_windows(date(2019, 5, 1), date(2019, 7, 31), "month"),
                               tmp_path / "work", key="k", chunk_size=100)
    assert manifest.windows == {"2019-05-01_2019-06-01": 121}
    assert manifest.date_orders == {path: "dmy (column)"}
    part = pd.read_json(manifest.parts["2019-05-01_2019-06-01"], lines=True, dtype=False)
    assert set(part["submitted_at"]) == {"2019-05-07T00:00:00.000000Z", "2019-05-13T00:00:00.000000Z"}
