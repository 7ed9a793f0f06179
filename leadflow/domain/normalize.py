"""Vectorized normalization of messy lead fields (emails, names, phones, domains, companies, countries, ...).

Every public function takes a pandas Series of any dtype (object, string, numeric, possibly holding NA) and
returns a new Series with the same index and length. Strings come back as the nullable ``"string"`` dtype
with ``pd.NA`` for missing/empty values. Only pandas and well-kept parsers are used (``phonenumbers``,
``pycountry``, ``nameparser``, ``email-validator``, ``rapidfuzz``), each called once per distinct value where it
is slow: this module is pure logic and must never import Prefect.

Regexes are written so they behave the same under Python ``re`` and RE2 (pyarrow-backed strings): no
lookarounds, no backreferences in patterns, and non-Latin-1 characters are embedded literally because RE2
does not understand ``\\uXXXX`` escapes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import phonenumbers
import pycountry

__all__ = [
    "CONTROL_PATTERN",
    "COUNT_CAP",
    "DATE_ORDERS",
    "EMAIL_PATTERN",
    "FREE_MAIL_DOMAINS",
    "DateEvidence",
    "FieldOptions",
    "FieldOptionsError",
    "clean_company_name",
    "company_domain",
    "country_checks",
    "date_evidence",
    "email_checks",
    "email_domain",
    "first_phone",
    "is_free_mail",
    "is_valid_email",
    "normalize_country",
    "normalize_email",
    "normalize_phone",
    "normalize_source",
    "parse_bool",
    "parse_count",
    "parse_timestamps",
    "split_full_name",
    "strip_controls",
    "tidy_name",
    "website_to_domain",
]

try:  # pyarrow storage makes the .str ops run in C; fall back quietly where it is absent
    import pyarrow  # noqa: F401

    _STR = pd.StringDtype("pyarrow")
except ImportError:  # pragma: no cover
    _STR = pd.StringDtype("python")

FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    {
        # Google / Microsoft / Yahoo / Apple / AOL
        "gmail.com", "googlemail.com",
        "outlook.com", "outlook.de", "outlook.fr", "outlook.es", "outlook.it", "outlook.co.uk",
        "hotmail.com", "hotmail.co.uk", "hotmail.fr", "hotmail.de", "hotmail.it", "hotmail.es",
        "hotmail.nl", "hotmail.be", "hotmail.ca", "hotmail.com.br", "hotmail.com.au",
        "live.com", "live.co.uk", "live.fr", "live.de", "live.nl", "live.it", "live.ca", "live.com.au",
        "msn.com", "passport.com",
        "yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de", "yahoo.it", "yahoo.es", "yahoo.ca",
        "yahoo.co.in", "yahoo.co.jp", "yahoo.com.br", "yahoo.com.au", "yahoo.com.mx", "yahoo.com.ar",
        "yahoo.in", "ymail.com", "rocketmail.com",
        "aol.com", "aol.co.uk", "aim.com",
        "icloud.com", "me.com", "mac.com",
        # privacy / independent providers
        "proton.me", "protonmail.com", "protonmail.ch", "pm.me", "tutanota.com", "tutanota.de", "tuta.io",
        "zoho.com", "zohomail.com", "fastmail.com", "fastmail.fm", "hey.com", "hushmail.com",
        "mail.com", "email.com", "usa.com", "inbox.com", "gmx.com", "gmx.net", "gmx.de", "gmx.at",
        "gmx.ch", "gmx.fr", "gmx.us", "yandex.com", "yandex.ru", "ya.ru",
        # Europe
        "web.de", "t-online.de", "freenet.de", "arcor.de", "posteo.de", "mailbox.org",
        "orange.fr", "wanadoo.fr", "free.fr", "sfr.fr", "laposte.net", "neuf.fr",
        "libero.it", "virgilio.it", "tiscali.it", "alice.it",
        "btinternet.com", "sky.com", "virginmedia.com", "ntlworld.com", "talktalk.net",
        "telenet.be", "skynet.be", "ziggo.nl", "kpnmail.nl", "home.nl", "planet.nl",
        "bluewin.ch", "seznam.cz", "wp.pl", "o2.pl", "onet.pl", "interia.pl",
        "mail.ru", "inbox.ru", "list.ru", "bk.ru", "rambler.ru",
        # Asia / Americas / Oceania
        "qq.com", "163.com", "126.com", "sina.com", "sina.cn", "sohu.com", "aliyun.com", "foxmail.com",
        "naver.com", "daum.net", "hanmail.net", "rediffmail.com",
        "comcast.net", "verizon.net", "att.net", "sbcglobal.net", "bellsouth.net", "charter.net",
        "cox.net", "earthlink.net", "optonline.net", "frontier.com", "juno.com", "netzero.net",
        "shaw.ca", "rogers.com", "sympatico.ca", "videotron.ca",
        "bigpond.com", "optusnet.com.au", "xtra.co.nz",
        "uol.com.br", "bol.com.br", "terra.com.br",
    }
)

# parse_count clips here: larger values are typos or bots, and they would swamp sums and scores.
COUNT_CAP: int = 1_000_000

# Kept free of inline flags and lookarounds so the same string works in Python re, RE2, SQL and GX.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD = r"(?:[A-Za-z]{2,63}|[Xx][Nn]--[A-Za-z0-9-]{1,59})"
EMAIL_PATTERN: str = rf"^{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+{_TLD}$"

# Zero-width and C0/C1 control characters (tab/newlines/NEL excluded: they are whitespace, handled below).
_INVISIBLE = r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\xad" + "\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]"
_WS = r"\t\n\x0b\x0c\r\x85\xa0" + "\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# matches only runs that need rewriting (non-space whitespace or 2+ chars): most rows have none, which is fast
_SPACES = f"[{_WS}][ {_WS}]*| [ {_WS}]+"
_COMBINING = "[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
_PUNCT = (
    r"[!-/:-@\[-`{-~\xa1-\xbf\xd7\xf7"
    + "\u2010-\u205e\u2190-\u21ff\u2500-\u27bf\u3001-\u3003\u3008-\u3011\U0001f300-\U0001faff]"
)


# C0 control characters but tab, line feed and carriage return (CR LF is a newline too). PostgreSQL text cannot
# hold NUL at all, nor JSONB a \u0000 escape; the rest are never meant in a lead's field.
CONTROL_PATTERN: str = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"

class FieldOptionsError(ValueError):
    """A default country or date order that names none (a one-line message for the CLI)."""


@dataclass(frozen=True)
class FieldOptions:
    """How one intake reads people's fields: the region of national phone numbers and the day/month order of dates.

    `date_order` is what an ambiguous date column follows until the intake has looked at the column (then it is the
    order used, and `date_basis` says why: see DateEvidence.decide); None lets every chunk decide on its own.
    """

    default_country: str | None = None
    date_order: str | None = None
    date_basis: str = ""


# ---------------------------------------------------------------------------------------------- helpers


def _as_string(s: pd.Series) -> pd.Series:
    if s.dtype == _STR:
        return s
    return s.astype(_STR)


def _put(target: pd.Series, mask: np.ndarray, values: pd.Series) -> pd.Series:
    """Copy of `target` with the rows under boolean `mask` replaced, by position (indexes may repeat)."""
    out = target.copy()
    out.iloc[np.flatnonzero(mask)] = values.array
    return out


def _empty_to_na(s: pd.Series) -> pd.Series:
    return s.mask(s == "")


def _text(s: pd.Series) -> pd.Series:
    """String Series with invisible chars removed, all unicode whitespace collapsed to one space, trimmed."""
    t = _as_string(s)
    t = t.str.replace(_INVISIBLE, "", regex=True)
    t = t.str.replace(_SPACES, " ", regex=True)
    return t.str.strip()


def _strip_accents(t: pd.Series) -> pd.Series:
    return t.str.normalize("NFKD").str.replace(_COMBINING, "", regex=True)


def strip_controls(s: pd.Series) -> pd.Series:
    """Text with C0 control characters (all but tab and newlines) removed; a value left empty becomes NA.

    Most values have none: one vectorized scan finds the rows to rewrite, and only those are rewritten.
    """
    t = _as_string(s)
    hit = t.str.contains(CONTROL_PATTERN, regex=True).fillna(False).to_numpy(dtype=bool)
    if not hit.any():
        return t
    cleaned = t[hit].str.replace(CONTROL_PATTERN, "", regex=True)
    return _put(t, hit, _empty_to_na(cleaned))


def _aligned(other: pd.Series | str | None, index: pd.Index) -> pd.Series:
    """Second argument of a two-column function, lined up with the first one's index."""
    if not isinstance(other, pd.Series):
        return pd.Series(other, index=index, dtype=_STR)
    if other.index.equals(index):
        return other
    if len(other) != len(index):
        raise ValueError("both Series must have the same length")
    if other.index.is_unique and index.is_unique and other.index.sort_values().equals(index.sort_values()):
        return other.reindex(index)
    return other.set_axis(index)


def _map_unique(t: pd.Series, fn: Callable[[Any], object], dtype: object) -> pd.Series:
    """Apply a per-value Python function once per distinct value and broadcast the results back."""
    codes, uniques = pd.factorize(t, use_na_sentinel=True)
    results = np.array([fn(u) for u in uniques] + [None], dtype=object)
    # code -1 (NA) indexes the trailing None
    return pd.Series(results[codes], index=t.index).astype(dtype)


# ----------------------------------------------------------------------------------------------- emails


def normalize_email(s: pd.Series) -> pd.Series:
    """Lower-case email from raw input (mailto:, <...>, display names, quotes stripped); no validation."""
    t = _text(s).str.lower()
    # "Jane Doe <jane@x.com>" -> "jane@x.com"
    t = t.str.replace(r"^[^<>]*<([^<>]*)>[^<>]*$", r"\1", regex=True)
    t = t.str.strip(" <>\"'`")
    t = t.str.replace(r"^mailto:([^?]*)(?:\?.*)?$", r"\1", regex=True)
    # pasted address lists leave separators behind
    t = t.str.strip(" <>\"'`,;")
    return _empty_to_na(t)


# Special-use names (RFC 6761/6762/7686) that email-validator refuses as never globally deliverable.
_SPECIAL_USE = r"[@.](?:arpa|invalid|local|localhost|onion|test)$"
_VALID, _VALID_SMTPUTF8 = 1, 2


@functools.lru_cache(maxsize=65_536)
def _check_email(value: str) -> int:
    """email-validator's verdict on one address (no DNS): 0 invalid, 1 valid, 2 valid but needs SMTPUTF8."""
    from email_validator import EmailNotValidError, validate_email

    local = value.rpartition("@")[0]
    # RFC 5321 counts octets; email-validator counts the local part's characters (the whole address in octets).
    if len(local.encode("utf-8")) > 64:
        return 0
    try:
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=True, strict=True)
    except EmailNotValidError:
        return 0
    return _VALID_SMTPUTF8 if checked.smtputf8 else _VALID


def email_checks(s: pd.Series) -> pd.DataFrame:
    """Per normalized address: `valid` by RFC 5321/6531 (email-validator, no DNS) and `smtputf8` (needs SMTPUTF8).

    Plain ASCII addresses take a vectorized path: EMAIL_PATTERN, RFC 5321 lengths and special-use domains, never
    more lenient than email-validator (tests hold them to it) and some 50x faster. Internationalized addresses and
    IDNA (xn--) domains go through email-validator, once per distinct value. NA is neither.
    """
    t = _as_string(s)
    present = t.notna().to_numpy(dtype=bool)
    # EMAIL_PATTERN refuses spaces and controls: ASCII alone decides which path a value takes
    plain = t.str.isascii().fillna(False).to_numpy(dtype=bool) & ~t.str.lower().str.contains(
        "xn--", regex=False).fillna(False).to_numpy(dtype=bool)
    fast = (t.str.fullmatch(EMAIL_PATTERN) & (t.str.len() <= 254) & (t.str.find("@") <= 64)
            & ~t.str.contains(_SPECIAL_USE, regex=True)).fillna(False).to_numpy(dtype=bool)
    valid = fast & plain
    smtputf8 = np.zeros(len(t), dtype=bool)
    slow = present & ~plain
    if slow.any():
        verdicts = _map_unique(t[slow], _check_email, "int64").to_numpy()
        valid[slow] = verdicts > 0
        smtputf8[slow] = verdicts == _VALID_SMTPUTF8
    return pd.DataFrame({"valid": valid, "smtputf8": smtputf8}, index=s.index)


def is_valid_email(s: pd.Series) -> pd.Series:
    """True where an already normalized value is a valid address by RFC 5321/6531 (see email_checks); NA is False."""
    return email_checks(s)["valid"]


def normalize_email_one(value: str) -> str | None:
    """normalize_email for one value in plain Python: a single live lead skips pandas' per-call cost (tested equal)."""
    # pandas lowers with simple (one-to-one) case mapping; Python's full mapping makes U+0130 two characters.
    t = re.sub(_SPACES, " ", re.sub(_INVISIBLE, "", value)).strip().replace("\u0130", "i").lower()
    t = re.sub(r"^[^<>]*<([^<>]*)>[^<>]*$", r"\1", t)
    t = t.strip(" <>\"'`")
    t = re.sub(r"^mailto:([^?]*)(?:\?.*)?$", r"\1", t)
    t = t.strip(" <>\"'`,;")
    return t or None


def is_valid_email_one(value: str | None) -> bool:
    """is_valid_email for one already normalized value in plain Python (the same rules, tested equal)."""
    if not value:
        return False
    if value.isascii() and "xn--" not in value.lower():
        return (re.fullmatch(EMAIL_PATTERN, value) is not None and len(value) <= 254 and value.find("@") <= 64
                and re.search(_SPECIAL_USE, value) is None)
    return _check_email(value) > 0


def email_domain(s: pd.Series) -> pd.Series:
    """Lower-case domain after the last '@' of a normalized email; NA when there is none."""
    t = _as_string(s).str.strip().str.lower()
    dom = t.str.replace(r"^.*@", "", regex=True)
    dom = dom.mask(~t.str.contains("@", regex=False).fillna(False))
    return _empty_to_na(dom)


# ------------------------------------------------------------------------------------------------ names

_PARTICLES = ("van", "von", "der", "den", "de", "del", "della", "dei", "di", "da", "du", "la", "le", "dos",
              "das", "do", "ten", "ter", "y")
_ROMAN = ("Ii", "Iii", "Iv", "Vi")


def _fix_roman(t: pd.Series) -> pd.Series:
    for r in _ROMAN:
        t = t.str.replace(f" {r}$", f" {r.upper()}", regex=True)
    return t


def tidy_text(s: pd.Series) -> pd.Series:
    """Free text such as job titles: trimmed and single-spaced, casing kept (`VP Sales` stays, `CEO` stays)."""
    return _empty_to_na(_text(s))


def tidy_name(s: pd.Series) -> pd.Series:
    """Person-name display form: trimmed, single-spaced, and title-cased only if typed ALL UPPER/all lower."""
    t = _empty_to_na(_text(s))
    upper, lower = t.str.upper(), t.str.lower()
    one_case = ((upper != lower) & ((t == upper) | (t == lower))).fillna(False).to_numpy(dtype=bool)
    if not one_case.any():
        return t
    titled = t[one_case].str.title()
    # title() also capitalises after apostrophes: right for O'Brien/D'Angelo, wrong for possessive 's
    titled = titled.str.replace("'S($|[^A-Za-z])", r"'s\1", regex=True)
    spaced = titled.str.contains(" ", regex=False).fillna(False).to_numpy(dtype=bool)
    if spaced.any():
        multi = titled[spaced]
        for p in _PARTICLES:
            # only between words: a leading particle ("Van Halen" as a surname field) stays capitalised
            multi = multi.str.replace(f" {p.title()} ", f" {p} ", regex=False)
        multi = _fix_roman(multi)
        titled = _put(titled, spaced, multi)
    return _put(t, one_case, titled)


@functools.cache
def _name_words() -> frozenset[str]:
    """Words that make nameparser do more than split at the space: titles, suffixes, particles, conjunctions."""
    from nameparser.config import CONSTANTS

    words: set[str] = set()
    for group in (CONSTANTS.titles, CONSTANTS.suffix_acronyms, CONSTANTS.suffix_not_acronyms, CONSTANTS.prefixes,
                  CONSTANTS.conjunctions):
        words.update(str(w).lower() for w in group)
    return frozenset(words)


@functools.lru_cache(maxsize=65_536)  # nameparser costs ~90 us a name
def _parse_name(value: str) -> tuple[str | None, str | None]:
    from nameparser import HumanName

    if not any(ch.isalpha() for ch in value):
        # "???" or "--" is no name, whatever a parser version makes of it.
        return None, None
    name = HumanName(value)
    return (name.first or None), (name.last or None)


def split_full_name(full: pd.Series) -> pd.DataFrame:
    """First and last name (`first`, `last`) from a name in one field, by nameparser; both NA when it finds neither.

    "Dr. Ann Lee-Park PhD", "Lee, Ann" and "Anna von der Heide" come apart as people write them. The common plain
    "Ann Lee" is split vectorized (tests hold it to nameparser); anything else is parsed once per distinct value.
    """
    t = _empty_to_na(_text(full))
    first = pd.Series(pd.NA, index=t.index, dtype=_STR)
    last = pd.Series(pd.NA, index=t.index, dtype=_STR)
    parts = t.str.extract(r"^([^\s,.()\[\]\d]+) ([^\s,.()\[\]\d]+)$")
    words = _name_words()
    plain = (parts[0].notna() & ~parts[0].str.lower().isin(words) & ~parts[1].str.lower().isin(words)
             ).fillna(False).to_numpy(dtype=bool)
    first = _put(first, plain, parts[0][plain].astype(_STR))
    last = _put(last, plain, parts[1][plain].astype(_STR))
    rest = t.notna().to_numpy(dtype=bool) & ~plain
    if rest.any():
        codes, uniques = pd.factorize(t[rest])
        parsed = [_parse_name(u) for u in uniques]
        first = _put(first, rest, pd.Series([parsed[c][0] for c in codes], dtype=_STR))
        last = _put(last, rest, pd.Series([parsed[c][1] for c in codes], dtype=_STR))
    return pd.DataFrame({"first": first, "last": last}, index=full.index)


# ----------------------------------------------------------------------------------------------- phones

_E164 = phonenumbers.PhoneNumberFormat.E164


@functools.lru_cache(maxsize=65_536)  # phonenumbers costs ~40 us a value; repeats across chunks are common
def _e164(key: str) -> str | None:
    raw, _, region = key.partition("\x1f")
    digits = sum(ch.isdigit() for ch in raw)
    if digits < 5 or digits > 25:
        return None
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        num = phonenumbers.parse(raw, region or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return phonenumbers.format_number(num, _E164)


def _phone_text(phone: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(phone.dtype):
        return pd.Series(pd.NA, index=phone.index, dtype=_STR)
    if pd.api.types.is_numeric_dtype(phone.dtype):
        # numbers stored as floats would otherwise render as "4155552671.0"
        v = phone.astype("Float64")
        return v.where(v.round() == v).astype("Int64").astype(_STR)
    t = _text(phone)
    return t.str.replace(r"^(\+?[0-9]+)\.0+$", r"\1", regex=True)


_NUMBER_TYPES = ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "personal_number", "voip",
                 "pager", "uan", "voicemail")


@functools.cache
def _phone_tables() -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Per calling code, one regex of every valid national number; per region, its calling code and trunk prefix."""
    from phonenumbers import PhoneMetadata

    patterns: dict[str, str] = {}
    national: dict[str, tuple[str, str]] = {}
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        parts = []
        for region in regions:
            meta = (PhoneMetadata.metadata_for_nongeo_region(code) if region == "001"
                    else PhoneMetadata.metadata_for_region(region))
            if meta is None:
                continue
            for kind in _NUMBER_TYPES:
                desc = getattr(meta, kind, None)
                if desc is not None and desc.national_number_pattern:
                    parts.append(f"(?:{desc.national_number_pattern})")
            prefix = meta.national_prefix or ""
            # Regions whose trunk handling is more than "drop this prefix" (carrier codes...) take the slow path.
            parsing = meta.national_prefix_for_parsing
            if region != "001" and not meta.national_prefix_transform_rule and (
                parsing in (None, prefix) or (prefix and parsing.split("|")[0] == prefix)
            ):
                national[region] = (str(code), prefix)
        if parts:
            patterns[str(code)] = "(?:" + "|".join(parts) + ")"
    return patterns, national


def _fast_e164(text: pd.Series, region: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Vectorized E.164 for the common shapes; returns the numbers and which rows were decided here."""
    patterns, national = _phone_tables()
    clean = text.str.replace(r"\(0\)", "", regex=True).str.replace(r"^(?:tel|TEL|Tel):", "", regex=True)
    clean = clean.str.replace(r"[ ]*(?:[Ee][Xx][Tt]\.?|[Xx]|#)[ ]*[0-9]{1,6}$", "", regex=True).str.strip()
    simple = clean.str.fullmatch(r"(?:\+|00)?[ (]*[0-9][0-9 ().\-/]*").fillna(False).astype(bool)
    digits = clean.str.replace(r"[^0-9]", "", regex=True)
    starts_00 = clean.str.startswith("00").fillna(False).astype(bool)
    digits = digits.mask(starts_00, digits.str.slice(2))
    international = (clean.str.startswith("+").fillna(False).astype(bool) | starts_00) & simple
    code = pd.Series(pd.NA, index=text.index, dtype=_STR)
    nsn = pd.Series(pd.NA, index=text.index, dtype=_STR)
    # Calling codes are prefix-free, so at most one of the 1-, 2- and 3-digit prefixes is a code.
    for width in (1, 2, 3):
        head = digits.str.slice(0, width)
        hit = international & code.isna() & head.isin(list(patterns)).fillna(False).astype(bool)
        code = code.mask(hit, head)
        nsn = nsn.mask(hit, digits.str.slice(width))
    domestic = simple & ~international & region.isin(list(national)).fillna(False).astype(bool)
    regional = region.where(domestic)
    code = code.mask(domestic, regional.map({r: c for r, (c, _) in national.items()}))
    trunk = regional.map({r: p for r, (_, p) in national.items()}).fillna("")
    for prefix in sorted(set(trunk.dropna()) - {""}):
        strip = domestic & (trunk == prefix) & digits.str.startswith(prefix).fillna(False).astype(bool)
        nsn = nsn.mask(strip, digits.str.slice(len(prefix)))
    nsn = nsn.mask(domestic & nsn.isna(), digits)
    valid = np.zeros(len(text), dtype=bool)
    codes, uniques = pd.factorize(code)
    for position, calling_code in enumerate(uniques):
        rows = np.flatnonzero(codes == position)
        valid[rows] = nsn.iloc[rows].str.fullmatch(patterns[calling_code]).fillna(False).to_numpy(dtype=bool)
    valid = pd.Series(valid, index=text.index)
    # A national number without a known region cannot be placed by any parser: settled as NA here too.
    unplaceable = simple & ~international & (region.fillna("") == "")
    decided = (simple & code.notna()) | unplaceable
    return ("+" + code + nsn).where(valid), decided


def _regions(country: pd.Series | str | None, index: pd.Index, default_region: str | None) -> pd.Series:
    """Each row's dialling region: its ISO alpha-2 country, else `default_region`, else "" (no region)."""
    region = _as_string(_aligned(country, index)).str.strip().str.upper()
    # A comparison with NA is NA, and mask() treats NA as True: a missing country once became GB.
    region = region.mask((region == "UK").fillna(False), "GB")
    fallback = (default_region or "").strip().upper()
    fallback = "GB" if fallback == "UK" else fallback
    if not re.fullmatch(r"[A-Z]{2}", fallback):
        fallback = ""
    return region.where(region.str.fullmatch(r"[A-Z]{2}").fillna(False), fallback)


def normalize_phone(phone: pd.Series, country: pd.Series | str | None, default_region: str | None = None
                    ) -> pd.Series:
    """E.164 phone number (extension dropped); NA if invalid.

    A national number is read in the row's `country` (ISO alpha-2), else in `default_region`; with neither it must
    carry its own `+`/`00` prefix, or it is NA (never guessed).
    """
    p = _phone_text(phone)
    region = _regions(country, phone.index, default_region)
    # Most numbers have plain shapes that libphonenumber's own patterns settle vectorized; parsing each distinct
    # number (about 60 us) would dominate intake time on real exports where nearly every phone is distinct.
    fast, decided = _fast_e164(p, region)
    rest = p.notna() & ~decided
    if not rest.any():
        return fast.astype(_STR)
    # an international prefix makes the region irrelevant; dropping it lets more rows share one parse
    region = region.mask(p.str.contains(r"^(?:\+|00)", regex=True).fillna(False), "")
    key = p.fillna("").str.cat(region.fillna(""), sep="\x1f")
    key = key.where(rest)
    slow = _map_unique(key, _e164, _STR)
    return fast.where(decided, slow).astype(_STR)


def first_phone(phones: list[pd.Series], country: pd.Series | str | None, default_region: str | None = None
                ) -> pd.DataFrame:
    """The first of several phone columns (phone, mobile, ...) that holds a valid number, per row.

    `phone` is its E.164 form (NA when none is valid); `unparsed` is True where some column had a value but none
    gave a valid number: the raw text stays in the submission's payload and the row counts as a warning.
    """
    if not phones:
        raise ValueError("first_phone needs at least one phone column")
    index = phones[0].index
    out = pd.Series(pd.NA, index=index, dtype=_STR)
    typed = np.zeros(len(index), dtype=bool)
    region = _aligned(country, index)
    for column in phones:
        column = _aligned(column, index)
        typed |= _phone_text(column).notna().to_numpy(dtype=bool)
        todo = out.isna().to_numpy(dtype=bool) & column.notna().to_numpy(dtype=bool)
        if todo.any():
            out = _put(out, todo, normalize_phone(column[todo], region[todo], default_region))
    return pd.DataFrame({"phone": out, "unparsed": typed & out.isna().to_numpy(dtype=bool)}, index=index)


# ---------------------------------------------------------------------------------------------- domains


def website_to_domain(s: pd.Series) -> pd.Series:
    """Bare lower-case host of a website/URL without scheme, www., port or path; NA if not a real domain."""
    t = _text(s).str.lower()
    had_scheme = t.str.contains(r"^[a-z][a-z0-9+.-]*://", regex=True).fillna(False)
    t = t.str.replace(r"^(?:[a-z][a-z0-9+.-]*:)?//", "", regex=True)
    host = t.str.replace(r"[/?#\\].*$", "", regex=True)
    has_at = host.str.contains("@", regex=False).fillna(False)
    host = host.str.replace(r"^.*@", "", regex=True)  # credentials, kept only when a scheme was present
    host = host.str.replace(r":[0-9]*$", "", regex=True)
    host = host.str.rstrip(".").str.replace(r"^www[0-9]?\.", "", regex=True)
    bad = (
        (has_at & ~had_scheme)  # a bare email address is not a website
        | ~host.str.contains(".", regex=False)
        | host.str.contains(r"[ @:,;'\"<>()\[\]{}|\\^`!$&*=+%~]", regex=True)
        | host.str.contains("..", regex=False)
        | host.str.startswith((".", "-", "localhost."))
        | host.str.contains(r"\.[0-9]+$", regex=True)  # numeric TLD: IPv4 address or junk
    ).fillna(True)
    return _empty_to_na(host.mask(bad))


def is_free_mail(domain: pd.Series) -> pd.Series:
    """True where the domain (or an email's domain) belongs to a consumer free-mail/ISP provider."""
    d = _as_string(domain).str.strip().str.lower().str.replace(r"^.*@", "", regex=True).str.rstrip(".")
    return pd.Series(d.isin(list(FREE_MAIL_DOMAINS)).to_numpy(dtype=bool), index=domain.index)


def company_domain(website_domain: pd.Series, email_domain: pd.Series) -> pd.Series:
    """Best company domain: the website domain if known, else a non-free-mail email domain, else NA."""
    web = _empty_to_na(_as_string(website_domain).str.strip().str.lower())
    em = _empty_to_na(_as_string(_aligned(email_domain, website_domain.index)).str.strip().str.lower())
    em = em.mask(is_free_mail(em))
    return web.where(web.notna(), em.array)


# -------------------------------------------------------------------------------------------- companies

_LEGAL_SUFFIXES = (
    # multi-word forms first so the alternation prefers them
    "gmbh and co kg", "limited liability company", "private limited", "sab de cv", "sa de cv", "s de rl",
    "sp z oo", "sa rl", "and co kg", "and company", "and co",
    "incorporated", "corporation", "company", "limited", "inc", "llc", "pllc", "ltd", "ltda", "plc", "gmbh",
    "ag", "kgaa", "kg", "ug", "sarl", "sas", "sa", "srl", "spa", "sl", "bv", "nv", "oyj", "oy", "ab", "as",
    "aps", "kk", "pty", "pte", "pvt", "sdn", "bhd", "corp", "co", "llp", "lp", "se",
)
_SUFFIX_RE = "(?: (?:" + "|".join(_LEGAL_SUFFIXES) + "))+$"


def clean_company_name(s: pd.Series) -> pd.Series:
    """Company matching key: accent-free lower-case words without punctuation, 'the' or legal suffixes."""
    t = _text(s)
    t = t.str.replace("[\u2122\u2120\xae\xa9]", " ", regex=True)  # NFKD would turn TM/SM into letters
    t = _strip_accents(t).str.lower()
    t = t.str.replace("&", " and ", regex=False)
    t = t.str.replace(r"(^|[^a-z0-9])a/s($|[^a-z0-9])", r"\1as\2", regex=True)
    # dots/apostrophes join (l.l.c. -> llc, o'reilly -> oreilly); other punctuation separates words
    t = t.str.replace("[.'\u2019\u2018`\xb4]", "", regex=True)
    t = t.str.replace(_PUNCT, " ", regex=True)
    t = t.str.replace(" {2,}", " ", regex=True).str.strip()
    t = t.str.replace(r"^the ", "", regex=True)
    t = t.str.replace(_SUFFIX_RE, "", regex=True)
    return _empty_to_na(t)


# -------------------------------------------------------------------------------------------- countries

_COUNTRY_ALIASES: dict[str, str] = {
    "america": "US", "united states of america": "US", "u s a": "US", "u s": "US", "us of a": "US",
    "uk": "GB", "u k": "GB", "england": "GB", "scotland": "GB", "wales": "GB", "northern ireland": "GB",
    "great britain": "GB", "britain": "GB",
    "deutschland": "DE", "holland": "NL", "nederland": "NL", "espana": "ES", "korea": "KR",
    "republic of korea": "KR", "korea south": "KR", "russia": "RU", "czech republic": "CZ", "czech": "CZ",
    "uae": "AE", "u a e": "AE", "emirates": "AE", "turkey": "TR", "turkiye": "TR", "vietnam": "VN",
    "viet nam": "VN", "macedonia": "MK", "ivory coast": "CI", "cape verde": "CV", "swaziland": "SZ",
    "burma": "MM", "macau": "MO", "vatican": "VA", "vatican city": "VA", "holy see": "VA",
    "palestine": "PS", "brunei": "BN", "drc": "CD", "dr congo": "CD", "congo kinshasa": "CD",
    "democratic republic of the congo": "CD", "democratic republic of congo": "CD",
    "congo brazzaville": "CG", "micronesia": "FM", "east timor": "TL", "bosnia": "BA", "trinidad": "TT",
    "st kitts and nevis": "KN", "st lucia": "LC", "st vincent and the grenadines": "VC",
    "brasil": "BR", "italia": "IT", "schweiz": "CH", "suisse": "CH", "svizzera": "CH", "osterreich": "AT",
    "sverige": "SE", "norge": "NO", "danmark": "DK", "suomi": "FI", "polska": "PL", "nippon": "JP",
    "nihon": "JP", "eire": "IE", "republic of ireland": "IE", "belgique": "BE", "belgie": "BE",
    "hellas": "GR", "slovak republic": "SK", "prc": "CN", "mainland china": "CN", "china mainland": "CN",
    "ksa": "SA", "saudi": "SA", "rsa": "ZA", "luxemburg": "LU", "persia": "IR", "laos": "LA",
}


def _country_key(s: pd.Series) -> pd.Series:
    t = _strip_accents(_text(s)).str.lower()
    t = t.str.replace("&", " and ", regex=False)
    t = t.str.replace("[.'\u2019`]", "", regex=True)
    t = t.str.replace(r"[^a-z0-9]+", " ", regex=True).str.strip()
    return t.str.replace(r"^the ", "", regex=True)


@functools.cache
def _country_table() -> dict[str, str]:
    names: list[str] = []
    codes: list[str] = []
    for c in pycountry.countries:
        for attr in ("alpha_2", "alpha_3", "name", "official_name", "common_name"):
            value = getattr(c, attr, None)
            if value:
                names.append(value)
                codes.append(c.alpha_2)
    keys = _country_key(pd.Series(names, dtype=_STR))
    table = dict(zip(keys.tolist(), codes, strict=True))
    table.update(_COUNTRY_ALIASES)
    return table


# Names from older ISO 3166 / UN lists and CRM picklists whose country lives on under one current code.
# (Netherlands Antilles, Yugoslavia, USSR, Czechoslovakia split into several: they stay unknown.)
_HISTORIC_COUNTRIES: dict[str, str] = {
    "libyan arab jamahiriya": "LY", "libya arab jamahiriya": "LY", "zaire": "CD", "zaire republic of": "CD",
    "byelorussian ssr": "BY", "byelorussia": "BY", "belorussia": "BY", "kampuchea": "KH", "ceylon": "LK",
    "siam": "TH", "upper volta": "BF", "dahomey": "BJ", "rhodesia": "ZW", "southern rhodesia": "ZW",
    "macedonia the former yugoslav republic of": "MK", "former yugoslav republic of macedonia": "MK",
    "fyrom": "MK", "the former yugoslav republic of macedonia": "MK", "palestinian territory occupied": "PS",
    "palestinian territory": "PS", "palestinian territories": "PS", "occupied palestinian territory": "PS",
    "hong kong sar": "HK", "hong kong sar china": "HK", "macao sar": "MO", "macau sar": "MO",
    "macao sar china": "MO", "east timor": "TL", "burma": "MM", "swaziland": "SZ", "zaire democratic republic": "CD",
    "congo dem rep": "CD", "congo rep": "CG", "egypt arab rep": "EG", "yemen rep": "YE", "korea rep": "KR",
    "korea dem rep": "KP", "korea dem people s rep": "KP", "iran islamic rep": "IR", "venezuela rb": "VE",
    "lao pdr": "LA", "gambia the": "GM", "bahamas the": "BS", "micronesia fed sts": "FM", "great britian": "GB",
    "vatican city state": "VA", "vatican city state holy see": "VA", "slovak republic": "SK",
    "kyrgyz republic": "KG", "slovakia slovak republic": "SK", "usa united states": "US",
}
# Values that stand for "no country", not for a country nobody knows.
_COUNTRY_PLACEHOLDERS = frozenset({"n a", "none", "null", "nil", "unknown", "other", "others", "not applicable",
                                   "not specified", "not set", "select", "please select", "select country",
                                   "choose", "no", "xx", "zz", "0"})


_COUNTRY_ABBREVIATIONS = {"rep": "republic", "dem": "democratic", "st": "saint", "is": "islands", "isl": "islands",
                          "fed": "federated", "sts": "states"}


@functools.cache
def _country_names() -> list[str]:
    """ISO names that typos are matched against (not the aliases: "Americas" must not become "America")."""
    iso = {v for c in pycountry.countries for v in (c.name, getattr(c, "official_name", None),
                                                    getattr(c, "common_name", None)) if v}
    return sorted(k for k in _country_key(pd.Series(sorted(iso), dtype=_STR)).dropna().tolist() if len(k) >= 5)


@functools.lru_cache(maxsize=4_096)
def _country_fallback(raw: str) -> str | None:
    """A code for a value the table does not hold: parenthesised or inverted forms, historic names, typos."""
    from rapidfuzz import fuzz, process

    table = _country_table()
    outside = re.sub(r"\([^)]*\)", " ", raw)
    inside = " ".join(re.findall(r"\(([^)]*)\)", raw))
    head, _, tail = raw.partition(",")
    candidates = [outside, inside, f"{tail} {head}" if tail else ""]
    keys = _country_key(pd.Series([raw, *candidates], dtype=_STR)).fillna("").tolist()
    keys += [" ".join(_COUNTRY_ABBREVIATIONS.get(w, w) for w in k.split()) for k in keys]
    for key in keys:
        code = table.get(key) or _HISTORIC_COUNTRIES.get(key)
        if code:
            return code
    key = keys[0]
    if len(key) < 5 or key in _COUNTRY_PLACEHOLDERS:
        return None
    # Typos of a whole name only ("Untied States", "Germanyy"); close names of different countries (Niger/Nigeria,
    # Austria/Australia) score below the cut-off, and two names scoring alike make no match.
    found = process.extract(key, _country_names(), scorer=fuzz.ratio, score_cutoff=88, limit=2)
    if len(found) == 1 or (len(found) == 2 and table[found[0][0]] == table[found[1][0]]):
        return table[found[0][0]]
    return None


def country_checks(s: pd.Series) -> pd.DataFrame:
    """ISO alpha-2 `country` per value, and `unknown` where a value was given that names no country.

    Codes and names in any case, official, common and local names and aliases come from one table (pycountry's
    ISO 3166 data plus a few spellings); values it lacks are tried once each as parenthesised ("Slovakia (Slovak
    Republic)"), inverted ("Korea, Rep.") or historic names ("Libyan Arab Jamahiriya") and for typos. pycountry's
    own search_fuzzy is not used: it matches subdivisions and cities (Paris -> FR, Zaire -> AO). Placeholders such
    as "N/A" or "Unknown" are missing values, not unknown countries.
    """
    raw = _empty_to_na(_text(s))
    key = _country_key(raw)
    # "N.A." / "n.a" mean "not available", unlike the bare code NA (Namibia)
    dotted_na = ((key == "na") & raw.str.contains(".", regex=False)).fillna(False)
    key = key.mask(dotted_na, "n a")
    out = key.map(_country_table())
    placeholder = (key.isin(list(_COUNTRY_PLACEHOLDERS)) | (key == "")).fillna(False).to_numpy(dtype=bool)
    missed = out.isna().to_numpy(dtype=bool) & key.notna().to_numpy(dtype=bool) & ~placeholder
    if missed.any():
        out = _put(out.astype(object), missed, _map_unique(raw[missed], _country_fallback, object))
    country = pd.Series(out.to_numpy(dtype=object, na_value=None), index=s.index, dtype=_STR)
    unknown = raw.notna().to_numpy(dtype=bool) & country.isna().to_numpy(dtype=bool) & ~placeholder
    return pd.DataFrame({"country": country, "unknown": unknown}, index=s.index)


def normalize_country(s: pd.Series) -> pd.Series:
    """ISO 3166-1 alpha-2 code from alpha-2/3 codes, names in any case, aliases and historic names; NA if unknown."""
    return country_checks(s)["country"]


# -------------------------------------------------------------------------------------- scalars & enums

_BOOL_WORDS: dict[str, bool] = {
    **dict.fromkeys(
        ["true", "t", "yes", "y", "1", "1.0", "on", "checked", "opt-in", "opt in", "opted in", "opted-in",
         "optin", "x", "\u2713", "\u2714"],
        True,
    ),
    **dict.fromkeys(
        ["false", "f", "no", "n", "0", "0.0", "off", "unchecked", "opt-out", "opt out", "opted out",
         "opted-out", "optout"],
        False,
    ),
}


def parse_bool(s: pd.Series) -> pd.Series:
    """Nullable boolean from yes/no-ish text, real bools and 1/0 numbers; anything else is NA."""
    key = _text(s).str.lower()
    out = key.map(_BOOL_WORDS)
    return pd.Series(out.to_numpy(dtype=object, na_value=None), index=s.index, dtype="boolean")




def parse_count(s: pd.Series) -> pd.Series:
    """Non-negative integer count (Int64) from numbers or text like ' 1,234 '; capped at 1,000,000."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return pd.Series(pd.NA, index=s.index, dtype="Int64")
    if pd.api.types.is_numeric_dtype(s.dtype):
        v = s.to_numpy(dtype="float64", na_value=np.nan)
    else:
        t = _text(s).str.replace("[,_' \xa0\u202f\u2009]", "", regex=True)
        v = pd.to_numeric(t, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(v) & (v >= 0) & (np.floor(v) == v)
    vals = np.where(ok, np.minimum(v, COUNT_CAP), 0).astype("int64")
    return pd.Series(pd.arrays.IntegerArray(vals, ~ok), index=s.index)


def normalize_source(s: pd.Series) -> pd.Series:
    """Canonical lead channel (web_form, paid_search, ...) by the channel vocabulary; unknown ones stay folded."""
    from leadflow.domain.channels import normalize_channels

    return normalize_channels(s)


# ------------------------------------------------------------------------------------------- timestamps

_TS_DTYPE = "datetime64[ns, UTC]"
_TS_WORK = "datetime64[us, UTC]"  # wide enough that far-future junk cannot overflow before it is clipped
_MIN_YEAR, _MAX_YEAR = 1990, 2100
_MIN_EPOCH = pd.Timestamp(f"{_MIN_YEAR}-01-01", tz="UTC").timestamp()
_MAX_EPOCH = pd.Timestamp(f"{_MAX_YEAR + 1}-01-01", tz="UTC").timestamp()
# Day/month/year dates ("07/05/19", "13.05.2019 10:00") are read by _numeric_dates in the column's order; these
# exact formats take the other common non-ISO spellings off dateutil's slow path.
_FALLBACK_FORMATS = (
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%d %b %Y",
    "%b %d, %Y",
    "%a, %d %b %Y %H:%M:%S %z",
)


DATE_ORDERS: tuple[str, ...] = ("mdy", "dmy")
# Two 1-2 digit parts and a year, any of / . - between them, maybe a time after: the only ambiguous shape.
_NUMERIC_DATE = r"^([0-9]{1,2})[/.-]([0-9]{1,2})[/.-]([0-9]{4}|[0-9]{2})(?:[ T,]+(.+))?$"
_NUMERIC_DATE_SHAPE = r"^[0-9]{1,2}[/.-][0-9]{1,2}[/.-](?:[0-9]{4}|[0-9]{2})(?:[ T,]|$)"
_ISO_TIME_FORMATS = ("%Y-%m-%d %I:%M %p", "%Y-%m-%d %I:%M:%S %p", "%Y-%m-%d %I%p", "%Y-%m-%d %I %p")


@dataclass(frozen=True)
class DateEvidence:
    """What a date column's day/month/year values say about their order: a first part over 12 means day-first."""

    numeric: bool = False
    day_first: bool = False
    month_first: bool = False

    def __or__(self, other: DateEvidence) -> DateEvidence:
        return DateEvidence(self.numeric or other.numeric, self.day_first or other.day_first,
                            self.month_first or other.month_first)

    @property
    def settled(self) -> bool:
        """Whether more values could not change the decision: nothing to decide, decided, or already conflicting."""
        return not self.numeric or self.day_first or self.month_first

    def decide(self, fallback: str) -> tuple[str, str]:
        """The order to read the column in and why: `column`, `fallback` (ambiguous), `conflict` or `no_dates`."""
        if fallback not in DATE_ORDERS:
            raise ValueError(f"unknown date order {fallback!r} (expected mdy or dmy)")
        if not self.numeric:
            return fallback, "no_dates"
        if self.day_first and self.month_first:
            return fallback, "conflict"
        if self.day_first or self.month_first:
            return ("dmy" if self.day_first else "mdy"), "column"
        return fallback, "fallback"


def date_evidence(s: pd.Series) -> DateEvidence:
    """The day/month evidence in one date column (or chunk of it); other shapes (ISO, epoch, month names) add none."""
    if not (isinstance(s.dtype, pd.StringDtype) or s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype)):
        return DateEvidence()
    t = _as_string(s).str.strip()
    shaped = t.str.match(r"[0-9]{1,2}[/.-]").fillna(False).to_numpy(dtype=bool)
    if not shaped.any():
        return DateEvidence()
    parts = t[shaped].str.extract(_NUMERIC_DATE)
    first = pd.to_numeric(parts[0], errors="coerce")
    second = pd.to_numeric(parts[1], errors="coerce")
    return DateEvidence(numeric=bool(first.notna().any()), day_first=bool(((first > 12) & (first <= 31)).any()),
                        month_first=bool(((second > 12) & (second <= 31)).any()))


def _numeric_dates(t: pd.Series, order: str) -> pd.Series:
    """Day/month/year text read strictly in `order` (never swapped per value); NaT where it does not fit."""
    parts = t.str.extract(_NUMERIC_DATE)
    a, b = pd.to_numeric(parts[0], errors="coerce"), pd.to_numeric(parts[1], errors="coerce")
    month, day = (a, b) if order == "mdy" else (b, a)
    year = pd.to_numeric(parts[2], errors="coerce")
    # strptime's %y pivot: 00-68 are 2000-2068, 69-99 are 1969-1999
    year = year.where(parts[2].str.len() == 4, year + np.where(year < 69, 2000, 1900))
    fits = (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
    iso = (year.astype("Int64").astype(_STR).str.zfill(4) + "-" + month.astype("Int64").astype(_STR).str.zfill(2)
           + "-" + day.astype("Int64").astype(_STR).str.zfill(2))
    iso = iso.where(fits.fillna(False))
    rest = parts[3].astype(_STR)
    text = iso.where(rest.isna(), iso + " " + rest)
    out = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce").astype(_TS_WORK)
    todo = np.array(out.isna() & text.notna(), dtype=bool)
    for fmt in _ISO_TIME_FORMATS:
        if not todo.any():
            break
        out = _put(out, todo, pd.to_datetime(text[todo], format=fmt, utc=True, errors="coerce").astype(_TS_WORK))
        todo &= out.isna().to_numpy()
    if todo.any():
        # year first and a valid month: dateutil cannot misread the order any more, only the time
        codes, uniques = pd.factorize(text[todo])
        parsed = pd.to_datetime(pd.Series(uniques), format="mixed", dayfirst=False, utc=True, errors="coerce")
        out = _put(out, todo, pd.Series(parsed.astype(_TS_WORK).array.take(codes)))
    return out


def _epoch(v: np.ndarray) -> pd.DatetimeIndex:
    """10-digit numbers are epoch seconds, 13-digit ones epoch milliseconds; other magnitudes are NaT."""
    with np.errstate(invalid="ignore"):
        # whole microseconds: float seconds would turn ...123 ms into ...122999 us
        us = np.where((v >= 1e9) & (v < 1e10), v * 1e6, np.where((v >= 1e12) & (v < 1e13), v * 1e3, np.nan))
        # out-of-window values would overflow the conversion and are NaT anyway
        us = np.round(np.where((us >= _MIN_EPOCH * 1e6) & (us < _MAX_EPOCH * 1e6), us, np.nan))
    return pd.to_datetime(us, unit="us", utc=True).as_unit("us")


def _clip_years(ts: pd.Series) -> pd.Series:
    years = ts.dt.year
    ts = ts.mask((years < _MIN_YEAR) | (years > _MAX_YEAR))
    return ts.astype(_TS_DTYPE)


def parse_timestamps(s: pd.Series, date_order: str | None = None) -> pd.Series:
    """UTC timestamps from ISO/other text, epoch s/ms or datetimes; NaT if unparseable or not 1990-2100.

    Day/month/year text is read in one order for the whole Series, never guessed per value: `date_order` (mdy or
    dmy, decided for the whole column by the caller, see DateEvidence) or else what this Series' own values say,
    month-first when they do not say.
    """
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return _clip_years(s.dt.tz_convert("UTC"))
    if pd.api.types.is_datetime64_dtype(s.dtype):
        return _clip_years(s.dt.tz_localize("UTC"))
    if pd.api.types.is_bool_dtype(s.dtype):
        return pd.Series(pd.NaT, index=s.index, dtype=_TS_DTYPE)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return _clip_years(pd.Series(_epoch(s.to_numpy(dtype="float64", na_value=np.nan)), index=s.index))

    t = _empty_to_na(_text(s))
    out = pd.to_datetime(t, format="ISO8601", utc=True, errors="coerce").astype(_TS_WORK)
    numeric = t.str.fullmatch(r"[0-9]{10}(?:\.[0-9]*)?|[0-9]{13}(?:\.[0-9]*)?").fillna(False).to_numpy(bool)
    if numeric.any():
        nums = pd.to_numeric(t[numeric], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        out = _put(out, numeric, pd.Series(_epoch(nums)))
    # only text with a 4-digit year or two number groups is worth more parsing: dateutil would
    # otherwise read "12" or "May" as a date in the current month/year
    plausible = t.str.contains(r"[0-9]{4}|[0-9]+[^0-9]+[0-9]", regex=True).fillna(False).to_numpy(bool)
    todo = out.isna().to_numpy() & plausible & ~numeric
    shaped = todo & t.str.contains(_NUMERIC_DATE_SHAPE, regex=True).fillna(False).to_numpy(bool)
    if shaped.any():
        order = date_order or date_evidence(t[shaped]).decide("mdy")[0]
        if order not in DATE_ORDERS:
            raise ValueError(f"unknown date order {order!r} (expected mdy or dmy)")
        out = _put(out, shaped, _numeric_dates(t[shaped], order))
        todo &= ~shaped
    for fmt in _FALLBACK_FORMATS:
        # exact formats run in C; each one takes the common non-ISO spellings off the slow path below
        if not todo.any():
            break
        parsed = pd.to_datetime(t[todo], format=fmt, utc=True, errors="coerce").astype(_TS_WORK)
        out = _put(out, todo, parsed)
        todo &= out.isna().to_numpy()
    if todo.any():
        codes, uniques = pd.factorize(t[todo])
        parsed = pd.to_datetime(pd.Series(uniques), format="mixed", dayfirst=False, utc=True, errors="coerce")
        out = _put(out, todo, pd.Series(parsed.astype(_TS_WORK).array.take(codes)))
    return _clip_years(out)
