"""Detect spam leads: pure, vectorized rules over a batch of leads under a versioned policy.

Also the pure parts of spam cleanup: reading anti-spam signals from raw payloads, judging submissions per lead,
and the plans, events and results of flagging, restoring and purging (leadflow/crm/spam.py writes them).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from hashlib import sha256
from typing import Annotated, Any, Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from disposable_email_domains import blocklist
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadflow.config.policy import VersionedPolicy
from leadflow.config.settings import email_hash_key
from leadflow.domain.contract import CANONICAL_COLUMNS, COLUMN_ALIASES, fold_header
from leadflow.domain.normalize import is_valid_email, normalize_email
from leadflow.domain.submissions import PAYLOAD_COLUMN

# --- reason codes ---------------------------------------------------------------------------------------------

DISPOSABLE_DOMAIN = "disposable_domain"
DENIED_DOMAIN = "denied_domain"
HONEYPOT_FILLED = "honeypot_filled"
TOO_FAST_FORM_FILL = "too_fast_form_fill"
MARKUP_IN_NAME = "markup_in_name"
LINK_IN_NAME = "link_in_name"
GIBBERISH_NAME = "gibberish_name"
SPAM_MESSAGE = "spam_message"
LINKS_IN_MESSAGE = "links_in_message"
IP_BURST = "ip_burst"
EMAIL_BURST = "email_burst"
KNOWN_BAD_ADDRESS = "known_bad_address"

ReasonCode = Literal[
    "disposable_domain",
    "denied_domain",
    "honeypot_filled",
    "too_fast_form_fill",
    "markup_in_name",
    "link_in_name",
    "gibberish_name",
    "spam_message",
    "links_in_message",
    "ip_burst",
    "email_burst",
    "known_bad_address",
]
REASON_CODES: tuple[str, ...] = get_args(ReasonCode)
RULE_COLUMNS: tuple[str, ...] = tuple(f"rule_{code}" for code in REASON_CODES)
OUTPUT_COLUMNS: tuple[str, ...] = ("is_spam", "spam_reasons", *RULE_COLUMNS)

# Regex work runs in pyarrow's RE2 (C++, linear time) on distinct values; pandas' `.str` would route \p{..}
# classes and some escapes through Python's `re` row by row, so the patterns are handed to pyarrow directly.
_TEXT = pd.StringDtype("pyarrow")
_STR = pa.large_string()
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


# --- policy ---------------------------------------------------------------------------------------------------


class _Rules(BaseModel):
    """Strict, immutable building block of the spam policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleSwitches(_Rules):
    """Which spam rules run; a switched-off rule never fires (its column stays False)."""

    disposable_domain: bool = Field(default=True, description="Email domain (or a parent) is a throwaway mailbox.")
    denied_domain: bool = Field(default=True, description="Email domain (or a parent) is on deny_domains.")
    honeypot_filled: bool = Field(default=True, description="The hidden honeypot field holds non-blank text.")
    too_fast_form_fill: bool = Field(default=True, description="Form filled faster than min_form_fill_seconds.")
    markup_in_name: bool = Field(default=True, description="HTML or BBCode tags in first or last name.")
    link_in_name: bool = Field(default=True, description="A URL or web address in first or last name.")
    gibberish_name: bool = Field(default=True, description="First or last name looks like random typing.")
    spam_message: bool = Field(default=True, description="The message contains a spam keyword.")
    links_in_message: bool = Field(default=True, description="The message has more than max_links_in_message URLs.")
    ip_burst: bool = Field(default=True, description="Too many submissions from one IP address in the window.")
    email_burst: bool = Field(default=True, description="Too many submissions from one email in the window.")
    known_bad_address: bool = Field(default=True, description="The email hash belongs to a purged spam lead.")


class GibberishRules(_Rules):
    """Thresholds of the random-typing heuristic for person names; tuned so real names of any culture pass."""

    flag_digits: bool = Field(
        default=True, description="Digits in a name are gibberish (ordinals such as '3rd' are allowed)."
    )
    vowelless_token_length: int = Field(
        ge=4, le=40,
        description="A name word of at least this many Latin letters and no vowel (a e i o u y) is gibberish.",
    )
    max_consonant_run: int = Field(
        ge=3, le=20,
        description="Longest allowed run of consonants, counting digraphs (sch, ch, sz, rz, ng, ...) and doubled "
        "letters as one.",
    )
    max_repeated_letters: int = Field(ge=2, le=10, description="Most times one letter may repeat in a row.")
    max_case_switches: int = Field(
        ge=1, le=10, description="Most lower-to-upper case switches inside one word ('McDonald' has 1, 'xKqWzP' 3)."
    )
    keyboard_runs: list[Annotated[str, Field(min_length=3, max_length=12, pattern=r"^[a-z]+$")]] = Field(
        default_factory=list, description="Keyboard mashes found anywhere in a name, lower case ('asdf', 'qwer')."
    )

    @field_validator("keyboard_runs")
    @classmethod
    def _runs_distinct(cls, runs: list[str]) -> list[str]:
        if len(runs) != len(set(runs)):
            raise ValueError("keyboard_runs must be distinct")
        return runs


Domain = Annotated[str, Field(min_length=1, max_length=253)]


class SpamPolicy(VersionedPolicy):
    """How leads are judged as spam: rule switches, thresholds, keyword and domain lists, and retention."""

    rules: RuleSwitches = Field(default_factory=RuleSwitches, description="Switch individual rules on or off.")
    min_form_fill_seconds: float = Field(
        ge=0, le=3600, description="A form filled in fewer seconds than this is a bot (0 switches the check off)."
    )
    gibberish: GibberishRules = Field(description="Thresholds of the gibberish-name heuristic.")
    spam_keywords: list[Annotated[str, Field(min_length=1, max_length=60)]] = Field(
        description="Words or phrases that mark a message as spam; whole words, any case, a plural 's' allowed."
    )
    max_links_in_message: int = Field(
        ge=0, le=1000, description="A message with more URLs than this is spam (0: any URL is too many)."
    )
    burst_window_minutes: float = Field(
        gt=0, le=1440, description="Length of the sliding window in which submissions are counted."
    )
    max_submissions_per_ip: int = Field(
        ge=1, le=100_000, description="More submissions than this from one IP address within the window is a burst."
    )
    max_submissions_per_email: int = Field(
        ge=1, le=100_000, description="More submissions than this from one email within the window is a burst."
    )
    ip_burst_exempt_sources: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=list,
        description="Sources whose rows share an IP legitimately (a booth kiosk, a webinar platform's relay); "
        "they are not counted for IP bursts.",
    )
    allow_domains: list[Domain] = Field(
        default_factory=list,
        description="Domains never judged disposable or denied, with their sub-domains (overrides the disposable "
        "list; the most specific listed domain wins).",
    )
    deny_domains: list[Domain] = Field(
        default_factory=list, description="Domains always flagged as denied_domain, with their sub-domains."
    )
    retention_days: int = Field(
        ge=1, le=3650, description="Days a flagged lead stays quarantined (reversible) before it is purged."
    )
    recheck_days: int = Field(
        default=7, ge=1, le=3650,
        description="How far back the nightly sweep re-checks submissions when no start date is given.",
    )
    min_reasons_to_flag: int = Field(
        ge=1, le=len(REASON_CODES), description="How many rules must fire before a lead is flagged as spam."
    )
    decisive_reasons: list[ReasonCode] = Field(
        default_factory=list,
        description="Reasons that flag a lead on their own, whatever min_reasons_to_flag says.",
    )

    @field_validator("allow_domains", "deny_domains")
    @classmethod
    def _domains_valid(cls, domains: list[str]) -> list[str]:
        cleaned = [domain.strip().lower().rstrip(".") for domain in domains]
        bad = [domain for domain in cleaned if not _DOMAIN.fullmatch(domain)]
        if bad:
            raise ValueError(f"not domain names: {bad}")
        return sorted(set(cleaned))

    @field_validator("spam_keywords")
    @classmethod
    def _keywords_valid(cls, keywords: list[str]) -> list[str]:
        phrases = [_keyword_phrase(keyword) for keyword in keywords]
        empty = [keyword for keyword, phrase in zip(keywords, phrases, strict=True) if not phrase]
        if empty:
            raise ValueError(f"spam_keywords without letters or digits: {empty}")
        if len(set(phrases)) != len(phrases):
            raise ValueError("spam_keywords repeat once case and punctuation are ignored")
        return keywords

    @field_validator("ip_burst_exempt_sources")
    @classmethod
    def _sources_lower(cls, sources: list[str]) -> list[str]:
        return sorted({source.strip().lower() for source in sources})

    @model_validator(mode="after")
    def _consistent(self) -> SpamPolicy:
        both = sorted(set(self.allow_domains) & set(self.deny_domains))
        if both:
            raise ValueError(f"domains both allowed and denied: {both}")
        enabled = sum(getattr(self.rules, code) for code in REASON_CODES)
        if self.min_reasons_to_flag > enabled:
            raise ValueError(
                f"min_reasons_to_flag is {self.min_reasons_to_flag} but only {enabled} rules are switched on"
            )
        return self


def _keyword_phrase(keyword: str) -> str:
    """A keyword reduced to lower-case words separated by single spaces, the way messages are reduced."""
    return " ".join(re.findall(r"[^\W_]+", keyword.lower()))


# --- text helpers ---------------------------------------------------------------------------------------------

_INVISIBLE = "[\u200b\u200c\u200d\u2060\ufeff]"


def _column(leads: pd.DataFrame, name: str) -> pd.Series:
    """A column of the batch, or all-NA when the batch does not carry it."""
    if name in leads.columns:
        return leads[name]
    return pd.Series(pd.NA, index=leads.index, dtype="object")


def _lit(value: str | None) -> pa.Scalar:
    """A string scalar of the type every text array here has (64-bit offsets: no 2 GB limit per batch)."""
    return pa.scalar(value, _STR)


def _arrow(values: pd.Series, invisible: bool = False) -> pa.Array:
    """A Series as one trimmed pyarrow string array with blanks as null; `invisible` also drops zero-width marks."""
    if not (pd.api.types.is_string_dtype(values.dtype) or values.dtype == object):
        values = values.astype("object")
    arr = pa.array(values.astype(_TEXT).array)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(_STR)
    if invisible:
        arr = pc.replace_substring_regex(arr, _INVISIBLE, "")
    arr = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(arr, ""), _lit(None), arr)


def _text(leads: pd.DataFrame, name: str, invisible: bool = False) -> pa.Array:
    """A text column of the batch as trimmed pyarrow strings, all null when the batch does not carry it."""
    if name not in leads.columns:
        return pa.nulls(len(leads), _STR)
    return _arrow(leads[name], invisible)


def _encode(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Distinct non-null values and each row's position among them (-1 for null)."""
    encoded = arr.dictionary_encode()
    return encoded.dictionary, encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _spread(flags: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per-distinct-value flags back onto rows; rows with code -1 (null) are False."""
    return np.append(np.asarray(flags, dtype=bool), False)[codes]


def _matches(arr: pa.Array, pattern: str) -> np.ndarray:
    """Whether each string contains a match of an RE2 pattern (null is False)."""
    return pc.match_substring_regex(arr, pattern).fill_null(False).to_numpy(zero_copy_only=False)


# --- domains --------------------------------------------------------------------------------------------------

_CLEAN, _ALLOWED, _DENIED, _DISPOSABLE = 0, 1, 2, 3


@cache
def _blocklist() -> pa.Array:
    """The disposable-email-domains list as an arrow array, built once."""
    return pa.array(sorted(blocklist), type=_STR)


def _domain_verdicts(domains: pa.Array, allow: list[str], deny: list[str]) -> np.ndarray:
    """Verdict per distinct domain: clean, allowed, denied or disposable; the most specific listed suffix wins."""
    lists = [(_ALLOWED, pa.array(allow, _STR)), (_DENIED, pa.array(deny, _STR)), (_DISPOSABLE, _blocklist())]
    verdict = np.full(len(domains), _CLEAN, dtype=np.int8)
    current = domains
    while True:
        for value, listed in lists:
            hit = pc.is_in(current, value_set=listed).to_numpy(zero_copy_only=False)
            verdict[(verdict == _CLEAN) & hit] = value
        has_parent = pc.match_substring(current, ".").to_numpy(zero_copy_only=False)
        if not (has_parent & (verdict == _CLEAN)).any():
            return verdict
        # Strip one label: x.mailinator.com is judged as mailinator.com when nothing more specific is listed.
        current = pc.replace_substring_regex(current, r"^[^.]*\.", "", max_replacements=1)
        current = pc.if_else(pa.array(has_parent), current, _lit(""))


def _after_last_at(emails: pa.Array) -> pa.Array:
    """The part of each email after its last '@'; null without one."""
    parts = pc.split_pattern(emails, "@", max_splits=1, reverse=True)
    has_at = pc.equal(pc.list_value_length(parts), 2).fill_null(False)
    offsets = parts.offsets.to_numpy(zero_copy_only=False)
    last = np.maximum(offsets[1:] - 1, 0)
    flat = parts.values
    if len(flat) == 0:
        return pa.nulls(len(emails), _STR)
    return pc.if_else(has_at, flat.take(pa.array(last)), _lit(None))


def _domains(leads: pd.DataFrame) -> pa.Array:
    """Lower-case email domains: the email_domain column, else the part after the email's last '@'."""
    domains = _text(leads, "email_domain")
    if domains.null_count:
        domains = pc.coalesce(domains, _after_last_at(_text(leads, "email")))
    domains = pc.utf8_rtrim(pc.utf8_lower(domains), characters=".")
    return pc.if_else(pc.equal(domains, ""), _lit(None), domains)


def _domain_flags(leads: pd.DataFrame, policy: SpamPolicy) -> dict[str, np.ndarray]:
    """Disposable and denied email domains, judged once per distinct domain."""
    distinct, codes = _encode(_domains(leads))
    verdict = np.append(_domain_verdicts(distinct, policy.allow_domains, policy.deny_domains), _CLEAN)[codes]
    return {
        DISPOSABLE_DOMAIN: (verdict == _DISPOSABLE) & policy.rules.disposable_domain,
        DENIED_DOMAIN: (verdict == _DENIED) & policy.rules.denied_domain,
    }


# --- names ----------------------------------------------------------------------------------------------------

_HTML_TAGS = (
    "a|abbr|b|big|blink|body|br|button|center|code|div|em|embed|font|form|h[1-6]|head|hr|html|i|iframe|img|input|"
    "link|marquee|meta|object|ol|p|pre|s|script|small|span|strike|strong|style|sub|sup|svg|table|td|tr|u|ul"
)
_MARKUP = (
    rf"<\s*/?\s*(?:{_HTML_TAGS})(?:[\s/>]|$)"
    r"|\b(?:href|src|onclick|onerror|onload)\s*="
    r"|\[/?(?:url|link|img|b|i|u|color|size)(?:\]|=)"
    r"|javascript:"
)
# Bare domains count only with TLDs that spam uses and names never end in, so 'St.John' or 'J.R.' stay clean.
_SPAM_TLDS = (
    "com|net|org|info|biz|xyz|top|site|online|club|ru|cn|io|ly|shop|store|live|link|click|icu|vip|pw|tk|ml|ga|"
    "cf|gq|su|ws|win|bid|loan|work|fun|space|website|tech|pro|me|co|cc|app|dev|buzz|monster|rest|cyou|sbs|cfd"
)
_LINK = (
    r"(?:https?|ftp)://|\bwww\d*\.|\bhref\s*="
    rf"|[a-z0-9-]{{2,}}\.(?:{_SPAM_TLDS})(?:[^a-z0-9-]|$)"
    r"|[a-z0-9-]{2,}\.[a-z]{2,24}/"
)
_CONSONANTS = "bcdfghjklmnpqrstvwxz"
# Clusters that spell one sound (German sch, Polish sz/cz/rz, English ng/ck, doubled letters) count as one
# consonant, so Hirschsprung, Pszczółkowski, Mkrtchyan and Angstmann keep short runs; keyboard mashes do not.
_ONE_SOUND = "tsch|sch|ch|sh|th|ph|kh|gh|zh|ck|cz|sz|rz|dz|ts|tz|ng|" + "|".join(c + c for c in _CONSONANTS)


def _gibberish_patterns(rules: GibberishRules) -> tuple[str, str, str, str]:
    """RE2 patterns of the gibberish heuristic: odd shapes, repeated letters, consonant runs, case switches."""
    # Accented Latin letters (\x{c0}-\x{24f}) belong to words and count as vowels: such words are never vowel-less.
    latin = r"a-z\x{c0}-\x{24f}"
    shapes = [rf"(?:^|[^{latin}])[{_CONSONANTS}]{{{rules.vowelless_token_length},}}(?:[^{latin}]|$)"]
    shapes += [re.escape(run) for run in rules.keyboard_runs]
    repeated = "|".join(f"{c}{{{rules.max_repeated_letters + 1},}}" for c in "abcdefghijklmnopqrstuvwxyz")
    collapsed = f"[{_CONSONANTS}X]{{{rules.max_consonant_run + 1},}}"
    cased = r"\p{L}*".join([r"\p{Ll}\p{Lu}"] * (rules.max_case_switches + 1))
    return "|".join(shapes), repeated, collapsed, cased


def _recheck(hit: np.ndarray, text: pa.Array, pattern: str, rewrite: str, replacement: str) -> np.ndarray:
    """Hits confirmed on a rewritten text; rewriting only the (few) hits keeps the common path cheap."""
    rows = np.flatnonzero(hit)
    if len(rows):
        rewritten = pc.replace_substring_regex(text.take(pa.array(rows)), rewrite, replacement)
        hit = hit.copy()
        hit[rows] = _matches(rewritten, pattern)
    return hit


def _gibberish(names: pa.Array, rules: GibberishRules) -> np.ndarray:
    """Whether each distinct name looks like random typing rather than a name of any culture."""
    names = pc.utf8_normalize(names, form="NFC")
    lower = pc.utf8_lower(names)
    shapes, repeated, collapsed, cased = _gibberish_patterns(rules)
    hit = _matches(lower, shapes)
    if rules.flag_digits:
        # "John Smith 3rd" is a name; any other digit is not.
        hit |= _recheck(_matches(lower, r"\p{Nd}"), lower, r"\p{Nd}", r"[0-9]+(?:st|nd|rd|th)", "")
    # Regnal numbers ('Henry VIII', 'Louis XIII') are the one place a real name repeats a letter three times.
    regnal = r"(^|[^\p{L}])x{0,3}v?iii([^\p{L}]|$)"
    hit |= _recheck(_matches(lower, repeated), lower, repeated, regnal, r"\1\2")
    hit |= _matches(pc.replace_substring_regex(lower, _ONE_SOUND, "X"), collapsed)
    hit |= _matches(names, cased)
    return hit


def _name_flags(leads: pd.DataFrame, policy: SpamPolicy) -> dict[str, np.ndarray]:
    """Markup, link and gibberish flags over first and last names, each judged once per distinct name."""
    rules = policy.rules
    flags = {code: np.zeros(len(leads), dtype=bool) for code in (MARKUP_IN_NAME, LINK_IN_NAME, GIBBERISH_NAME)}
    for column in ("first_name", "last_name"):
        distinct, codes = _encode(_text(leads, column, invisible=True))
        if not len(distinct):
            continue
        lower = pc.utf8_lower(distinct)
        if rules.markup_in_name:
            flags[MARKUP_IN_NAME] |= _spread(_matches(lower, _MARKUP), codes)
        if rules.link_in_name:
            flags[LINK_IN_NAME] |= _spread(_matches(lower, _LINK), codes)
        if rules.gibberish_name:
            flags[GIBBERISH_NAME] |= _spread(_gibberish(distinct, policy.gibberish), codes)
    return flags


# --- message --------------------------------------------------------------------------------------------------

_URL = r"(?:https?|ftp)://(?:www\d*\.)?|\bwww\d*\."


def _keyword_flags(lower: pa.Array, keywords: list[str]) -> np.ndarray:
    """Messages (lower case) containing a keyword as whole words, a plural 's' or 'es' allowed."""
    phrases = [_keyword_phrase(keyword) for keyword in keywords]
    # A literal pass for each phrase's first word is cheap; RE2 with Unicode word classes over every message is
    # not, so only the candidates are split into words.
    firsts = sorted({phrase.split(" ")[0] for phrase in phrases})
    candidates = np.flatnonzero(_matches(lower, "|".join(re.escape(word) for word in firsts)))
    hit = np.zeros(len(lower), dtype=bool)
    if len(candidates):
        words = pc.replace_substring_regex(lower.take(pa.array(candidates)), r"[^\p{L}\p{N}]+", " ")
        padded = pc.binary_join_element_wise(_lit(" "), words, _lit(" "), _lit(""))
        alternatives = "|".join(re.escape(phrase) for phrase in phrases)
        hit[candidates] = _matches(padded, f" (?:{alternatives})(?:s|es)? ")
    return hit


def _message_flags(leads: pd.DataFrame, policy: SpamPolicy) -> dict[str, np.ndarray]:
    """Spam keywords and too many links in the message."""
    n = len(leads)
    flags = {SPAM_MESSAGE: np.zeros(n, dtype=bool), LINKS_IN_MESSAGE: np.zeros(n, dtype=bool)}
    messages = _text(leads, "message")
    if messages.null_count == n:
        return flags
    lower = pc.utf8_lower(messages)
    if policy.rules.spam_message and policy.spam_keywords:
        flags[SPAM_MESSAGE] = _keyword_flags(lower, policy.spam_keywords)
    if policy.rules.links_in_message:
        links = pc.count_substring_regex(lower, _URL).fill_null(0).to_numpy(zero_copy_only=False)
        flags[LINKS_IN_MESSAGE] = links > policy.max_links_in_message
    return flags


# --- email hashes ---------------------------------------------------------------------------------------------

_HEX_DIGITS = np.full(256, -1, dtype=np.int8)
_HEX_DIGITS[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.int8)


def email_hash(emails: pd.Series, key: bytes | None = None) -> pd.Series:
    """HMAC-SHA256 hex of each trimmed, lower-cased email: the tombstone that outlives a purged spam lead.

    Keyed (default: the settings' email_hash_key) so that nobody holding a list of addresses can reverse it.
    """
    key = email_hash_key() if key is None else key
    values = pa.array(emails.astype(_TEXT).array).to_pylist()
    # HMAC has no batch API, so this loop is unavoidable; emails in a batch are nearly all distinct, so
    # de-duplicating first would cost more than it saves. Python's strip/lower keep it equal to a scalar hash.
    # HMAC as RFC 2104 writes it, from the two key-padded SHA-256 states: two C-level copies per email instead of
    # the hmac module's Python object per email (a third of the nightly sweep's hashing time).
    inner, outer = _keyed_states(key)
    new_inner, new_outer = inner.copy, outer.copy
    digests: list[str | None] = []
    for value in values:
        text = value.strip() if value else None
        if not text:
            digests.append(None)
            continue
        mac = new_inner()
        mac.update(text.lower().encode())
        out = new_outer()
        out.update(mac.digest())
        digests.append(out.hexdigest())
    return pd.Series(pd.array(pa.array(digests, _STR), dtype="string"), index=emails.index)


def _keyed_states(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states that have taken HMAC's inner and outer key pads (RFC 2104, 64-byte blocks)."""
    block = (sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    return sha256(bytes(b ^ 0x36 for b in block)), sha256(bytes(b ^ 0x5C for b in block))


def _hashes(leads: pd.DataFrame) -> pa.Array:
    """The batch's email hashes in lower case: the email_hash column where given, computed from email elsewhere."""
    given = pc.utf8_lower(_text(leads, "email_hash"))
    if given.null_count == 0 or "email" not in leads.columns:
        return given
    missing = given.is_null().to_numpy(zero_copy_only=False) & leads["email"].notna().to_numpy()
    if not missing.any():
        return given
    computed = pa.array(email_hash(leads["email"].where(missing)).array).cast(_STR)
    return pc.coalesce(given, computed)


def _hash_keys(hashes: pa.Array) -> np.ndarray | None:
    """The first 64 bits of each SHA-256 hex digest as an integer (0 for null); None unless all are digests."""
    # Integers sort and compare far faster than 64-character strings hash, and 64 bits of SHA-256 do not collide
    # by chance in any batch this system will see. Anything that is not a digest takes the exact string path.
    valid = hashes.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.frombuffer(hashes.buffers()[1], dtype=np.int64)[hashes.offset : hashes.offset + len(hashes) + 1]
    lengths = np.diff(offsets)
    if (lengths[valid] != 64).any() or (lengths[~valid] != 0).any():
        return None
    keys = np.zeros(len(hashes), dtype=np.uint64)
    if not valid.any():
        return keys
    data = np.frombuffer(hashes.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(-1, 64)
    digits = _HEX_DIGITS[data]
    if (digits < 0).any():
        return None
    prefix = np.zeros(len(data), dtype=np.uint64)
    for column in range(16):
        prefix = (prefix << np.uint64(4)) | digits[:, column].astype(np.uint64)
    keys[valid] = prefix
    return keys


def _known_bad(hashes: pa.Array, keys: np.ndarray | None, known_bad_hashes: set[str]) -> np.ndarray:
    """Rows whose email hash is one of the tombstones of purged spam leads."""
    bad = pa.array(sorted({value.strip().lower() for value in known_bad_hashes}), _STR)
    candidates = np.arange(len(hashes))
    bad_keys = _hash_keys(bad)
    if keys is not None and bad_keys is not None:
        candidates = np.flatnonzero(np.isin(keys, bad_keys) & hashes.is_valid().to_numpy(zero_copy_only=False))
    hit = np.zeros(len(hashes), dtype=bool)
    # Prefix matches are confirmed on the full digest, so a match is exact.
    hit[candidates] = pc.is_in(hashes.take(pa.array(candidates)), value_set=bad).fill_null(False).to_numpy(
        zero_copy_only=False
    )
    return hit


# --- bursts ---------------------------------------------------------------------------------------------------


def _times_us(values: pd.Series) -> np.ndarray:
    """Submission times as UTC microseconds since the epoch; NaT and garbage are the int64 minimum."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        times = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        times = values.dt.tz_localize("UTC")
    else:
        times = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    return times.dt.as_unit("us").array.asi8


def _bursts(codes: np.ndarray, times: np.ndarray, ranks: np.ndarray, window_us: int, limit: int) -> np.ndarray:
    """Rows inside some window shorter than `window_us` that holds more than `limit` rows of one key (code -1: none)."""
    out = np.zeros(len(codes), dtype=bool)
    rows = np.flatnonzero(codes >= 0)
    if len(rows) <= limit:
        return out
    # Key first, then time: ranks are distinct and below len(times), so one integer sort orders both.
    order = rows[np.argsort(codes[rows] * len(times) + ranks[rows])]
    key, stamp = codes[order], times[order]
    # One time line for all keys: gaps are capped at the window (a gap that long already breaks every window)
    # and a full window separates keys, so two searchsorted calls slide every key's window at once without
    # integer overflow. pandas' groupby().rolling() loops over groups in Python: far too slow for 1M IPs.
    gaps = np.minimum(np.diff(stamp), window_us)
    gaps[np.diff(key) != 0] = window_us
    line = np.concatenate(([0], np.cumsum(gaps)))
    position = np.arange(len(line))
    # Row j ends a burst when more than `limit` rows fall in (t_j - window, t_j].
    ends_burst = position - np.searchsorted(line, line - window_us, side="right") + 1 > limit
    # Row i is in a burst when some burst-ending row lies in [t_i, t_i + window).
    ending = np.concatenate(([0], np.cumsum(ends_burst)))
    out[order] = ending[np.searchsorted(line, line + window_us, side="left")] > ending[position]
    return out


def _burst_flags(
    leads: pd.DataFrame, policy: SpamPolicy, hashes: pa.Array, keys: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Rows inside a burst of submissions from one IP address or one email."""
    n = len(leads)
    flags = {IP_BURST: np.zeros(n, dtype=bool), EMAIL_BURST: np.zeros(n, dtype=bool)}
    if not (policy.rules.ip_burst or policy.rules.email_burst) or "submitted_at" not in leads.columns:
        return flags
    times = _times_us(leads["submitted_at"])
    untimed = times == np.iinfo(np.int64).min
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(times)] = np.arange(n)
    window_us = round(policy.burst_window_minutes * 60_000_000)
    if policy.rules.ip_burst:
        # IPv4 seen through an IPv6 socket ('::ffff:1.2.3.4') is the same address.
        ips = pc.replace_substring_regex(pc.utf8_lower(_text(leads, "ip_address")), r"^::ffff:", "")
        _, codes = _encode(ips)
        codes[untimed] = -1
        if policy.ip_burst_exempt_sources:
            sources = pc.utf8_lower(_text(leads, "source"))
            exempt = pc.is_in(sources, value_set=pa.array(policy.ip_burst_exempt_sources, _STR))
            codes[exempt.fill_null(False).to_numpy(zero_copy_only=False)] = -1
        flags[IP_BURST] = _bursts(codes, times, ranks, window_us, policy.max_submissions_per_ip)
    if policy.rules.email_burst:
        if keys is not None:
            valid = hashes.is_valid().to_numpy(zero_copy_only=False)
            codes = np.full(n, -1, dtype=np.int64)
            codes[valid] = np.unique(keys[valid], return_inverse=True)[1].reshape(-1)
        else:
            _, codes = _encode(hashes)
        codes[untimed] = -1
        flags[EMAIL_BURST] = _bursts(codes, times, ranks, window_us, policy.max_submissions_per_email)
    return flags


# --- masking --------------------------------------------------------------------------------------------------


def mask_emails(emails: pd.Series) -> pd.Series:
    """Emails masked for logs and artifacts ('jane@example.com' -> 'j***@e***.com'); NA stays NA."""
    text = pc.utf8_lower(_arrow(emails))
    local = pc.replace_substring_regex(text, r"@[^@]*$", "")
    domain = pc.replace_substring_regex(text, r"^.*@", "")
    head = pc.replace_substring_regex(domain, r"\..*$", "")
    tld = pc.if_else(pc.match_substring(domain, "."), pc.replace_substring_regex(domain, r"^.*\.", "."), _lit(""))
    stars = _lit("***")

    def masked(part: pa.Array) -> pa.Array:
        """First character and stars; only stars for a one-character part, which would otherwise show whole."""
        shown = pc.binary_join_element_wise(pc.utf8_slice_codeunits(part, 0, 1), stars, _lit(""))
        return pc.if_else(pc.greater_equal(pc.utf8_length(part), 2), shown, stars)

    result = pc.binary_join_element_wise(masked(local), _lit("@"), masked(head), tld, _lit(""))
    result = pc.if_else(pc.match_substring(text, "@"), result, stars)
    return pd.Series(pd.array(result, dtype="string"), index=emails.index)


def mask_email(email: str | None) -> str:
    """One email masked for a log line ('j***@e***.com'); '***' when it has no '@', '<missing>' when absent."""
    masked = mask_emails(pd.Series([email], dtype="object")).iloc[0]
    return "<missing>" if pd.isna(masked) else str(masked)


# --- detection ------------------------------------------------------------------------------------------------


def _honeypot(values: pd.Series) -> np.ndarray:
    """Whether the hidden honeypot field was filled: non-blank text, a true flag or any number."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean").fillna(False).to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.notna().to_numpy()
    return _arrow(values, invisible=True).is_valid().to_numpy(zero_copy_only=False)


def _too_fast(values: pd.Series, min_seconds: float) -> np.ndarray:
    """Fill times under the minimum; missing, negative (a broken client clock) and unreadable times are not judged."""
    if not pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        values = pd.to_numeric(values.astype("object"), errors="coerce")
    seconds = values.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return (seconds >= 0) & (seconds < min_seconds)


_SORTED_CODES: tuple[str, ...] = tuple(sorted(REASON_CODES))


@cache
def _reason_label(bits: int) -> str | None:
    """Comma-joined codes of the rules set in `bits` (bit k is the k-th code in sorted order); None for none."""
    return ",".join(code for k, code in enumerate(_SORTED_CODES) if bits >> k & 1) or None


def detect_spam(leads: pd.DataFrame, policy: SpamPolicy, known_bad_hashes: set[str] | None = None) -> pd.DataFrame:
    """Judge each lead of a batch: is_spam, the sorted reason codes and one bool column per rule."""
    n = len(leads)
    rules = policy.rules
    fired: dict[str, np.ndarray] = {code: np.zeros(n, dtype=bool) for code in REASON_CODES}
    if rules.disposable_domain or rules.denied_domain:
        fired.update(_domain_flags(leads, policy))
    if rules.honeypot_filled:
        fired[HONEYPOT_FILLED] = _honeypot(_column(leads, "honeypot"))
    if rules.too_fast_form_fill and policy.min_form_fill_seconds > 0:
        fired[TOO_FAST_FORM_FILL] = _too_fast(_column(leads, "form_fill_seconds"), policy.min_form_fill_seconds)
    if rules.markup_in_name or rules.link_in_name or rules.gibberish_name:
        fired.update(_name_flags(leads, policy))
    if rules.spam_message or rules.links_in_message:
        fired.update(_message_flags(leads, policy))
    check_bad = bool(rules.known_bad_address and known_bad_hashes)
    if rules.email_burst or rules.ip_burst or check_bad:
        need_hashes = rules.email_burst or check_bad
        hashes = _hashes(leads) if need_hashes else pa.nulls(n, _STR)
        keys = _hash_keys(hashes) if need_hashes else None
        fired.update(_burst_flags(leads, policy, hashes, keys))
        if check_bad:
            fired[KNOWN_BAD_ADDRESS] = _known_bad(hashes, keys, known_bad_hashes)

    # Each row's fired rules as bits in sorted-code order: counting, deciding and labelling become lookups.
    bits = np.zeros(n, dtype=np.int64)
    for k, code in enumerate(_SORTED_CODES):
        bits |= fired[code].astype(np.int64) << k
    present = np.unique(bits)
    counts = np.array([int(b).bit_count() for b in present.tolist()], dtype=np.int64)
    decisive = sum(1 << _SORTED_CODES.index(code) for code in policy.decisive_reasons)
    flagged = (counts >= policy.min_reasons_to_flag) | ((present & decisive) != 0)
    labels = pa.array([_reason_label(int(b)) for b in present.tolist()], _STR)
    slot = np.searchsorted(present, bits)

    columns: dict[str, object] = {
        "is_spam": flagged[slot],
        "spam_reasons": pd.array(labels.take(pa.array(slot)), dtype="string"),
    }
    columns.update({f"rule_{code}": fired[code] for code in REASON_CODES})
    return pd.DataFrame(columns, index=leads.index)


# --- cleanup: constants, errors and results -------------------------------------------------------------------

SPAM_STATUS = "spam"
# A won deal or a closed lead (a CRM export's "Closed - Converted" or "Closed - Not Converted") is never spam,
# whatever its submissions look like: these leads are never flagged. It covers the status map's closed_statuses.
NEVER_FLAGGED = ("converted", "won", "disqualified")
# A rep worked these leads: flagged ones are reported for review instead of being purged.
INTERACTION_STATUSES = ("converted", "won", "qualified", "discovery_call_booked")
FLAGGED_EVENT = "spam_flagged"
RESTORED_EVENT = "spam_restored"
STATUS_EVENT = "status_changed"
SIGNAL_COLUMNS = ("ip_address", "honeypot", "form_fill_seconds")
SAMPLE_SIZE = 20


class SpamCleanupError(ValueError):
    """Bad input to a spam command (an unknown reason, an unreadable date, nothing to restore)."""


def parse_since(text: str | None, now: datetime, policy: SpamPolicy) -> datetime:
    """Start of the sweep window: an ISO date or time (naive means UTC), else `recheck_days` before now."""
    if text is None or not str(text).strip():
        return now - timedelta(days=policy.recheck_days)
    try:
        when = pd.Timestamp(str(text).strip())
    except ValueError as exc:
        raise SpamCleanupError(f"--since must be an ISO date or time, got {text!r}") from exc
    if pd.isna(when):
        raise SpamCleanupError(f"--since must be an ISO date or time, got {text!r}")
    when = when.tz_localize(UTC) if when.tzinfo is None else when.tz_convert(UTC)
    if when > pd.Timestamp(now):
        raise SpamCleanupError(f"--since {text} is in the future")
    return when.to_pydatetime()


def sample_rows(frame: pd.DataFrame, columns: Sequence[str], limit: int = SAMPLE_SIZE) -> list[dict[str, Any]]:
    """A few rows for artifacts, with the email masked and no other personal data."""
    head = frame.head(limit)
    out = pd.DataFrame({"lead_id": head["lead_id"].astype("int64"), "email": mask_emails(head["email"])})
    for column in columns:
        out[column] = head[column]
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in out.astype(object).to_dict("records")]


def reason_counts(reasons: pd.Series) -> Counter:
    """Leads per reason code, from comma-joined reason lists (missing lists count nothing)."""
    return Counter(code for joined in reasons.dropna() for code in joined.split(","))


@dataclass
class FlagResult:
    """What a spam check (nightly sweep or intake batch) found and did; in a dry run, what it would do."""

    dry_run: bool = False
    submissions_checked: int = 0
    leads_checked: int = 0
    flagged: int = 0
    by_reason: Counter = field(default_factory=Counter)
    exempt: int = 0
    tasks_cancelled: int = 0
    outbox_withdrawn: int = 0
    chunks: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)
    # The leads of one flag_leads call, for callers that track them; never summed or published.
    lead_ids: list[int] = field(default_factory=list, repr=False)

    def add(self, other: FlagResult) -> None:
        """Fold the result of one chunk into this one."""
        for name in ("flagged", "exempt", "tasks_cancelled", "outbox_withdrawn"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_reason.update(other.by_reason)
        self.sample.extend(other.sample[: max(0, SAMPLE_SIZE - len(self.sample))])

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready counts (emails in the sample are masked)."""
        data = asdict(self)
        data.pop("lead_ids")
        data["by_reason"] = dict(sorted(self.by_reason.items()))
        return data


@dataclass
class PurgeResult:
    """Expired spam leads: purged (tombstone kept) or held for review because a rep worked them."""

    dry_run: bool = False
    expired: int = 0
    purged: int = 0
    by_reason: Counter = field(default_factory=Counter)
    rows_deleted: dict[str, int] = field(default_factory=dict)
    review: int = 0
    review_sample: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready counts (emails in the review sample are masked)."""
        data = asdict(self)
        data["by_reason"] = dict(sorted(self.by_reason.items()))
        return data


@dataclass
class RestoreResult:
    """Leads brought back from spam, with their tasks and messages, and tombstones cleared."""

    dry_run: bool = False
    restored: int = 0
    by_reason: Counter = field(default_factory=Counter)
    tasks_reopened: int = 0
    outbox_restored: int = 0
    tombstones_cleared: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready counts (emails in the sample are masked)."""
        data = asdict(self)
        data["by_reason"] = dict(sorted(self.by_reason.items()))
        return data


# --- cleanup: submissions with their anti-spam signals ----------------------------------------------------------


def _canonical(header: str) -> str | None:
    folded = fold_header(header)
    return folded if folded in CANONICAL_COLUMNS else COLUMN_ALIASES.get(folded)


def _signal_value(column: str, value: Any) -> Any:
    """A payload value as the spam rules read it; a JSON `false` honeypot means the field was left alone."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if column == "honeypot" and isinstance(value, bool):
        return "true" if value else None
    return value if column == "form_fill_seconds" else str(value)


def signal_headers(keys: Iterable[str]) -> dict[str, list[str]]:
    """The payload keys that hold each anti-spam signal, in the order they are tried: exact canonical spellings
    (after folding) first, then aliases, each group by name."""
    headers: dict[str, list[str]] = {column: [] for column in SIGNAL_COLUMNS}
    # Exact canonical names first, then aliases, as intake resolves them.
    for key in sorted(set(keys), key=lambda k: (fold_header(k) not in CANONICAL_COLUMNS, k)):
        target = _canonical(key)
        if target in headers:
            headers[target].append(key)
    return headers


def _signal_frame(columns: dict[str, Any]) -> pd.DataFrame:
    """Signal values per column as the rules read them: IP and honeypot as text, fill time as float."""
    frame = pd.DataFrame({c: pd.Series(v, dtype="object") for c, v in columns.items()})
    frame["ip_address"] = frame["ip_address"].astype("string")
    frame["honeypot"] = frame["honeypot"].astype("string")
    frame["form_fill_seconds"] = pd.to_numeric(frame["form_fill_seconds"], errors="coerce").astype("float64")
    return frame


def payload_signals(payloads: Sequence[Any], headers: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """ip_address, honeypot and form_fill_seconds out of raw payloads, under canonical names or known aliases.

    `headers` (from `signal_headers`) names the keys to try; by default, the keys these payloads have.
    """
    parsed = [json.loads(p) if isinstance(p, str) else (p or {}) for p in payloads]
    if headers is None:
        keys: set[str] = set()
        for payload in parsed:
            keys.update(payload)
        headers = signal_headers(keys)
    columns: dict[str, list[Any]] = {}
    for column in SIGNAL_COLUMNS:
        names = headers.get(column, [])
        values: list[Any] = [None] * len(parsed)
        if names:
            for i, payload in enumerate(parsed):
                for name in names:
                    value = _signal_value(column, payload.get(name))
                    if value is not None:
                        values[i] = value
                        break
        columns[column] = values
    return _signal_frame(columns)


# How the store hands over one payload key extracted in SQL: the value (a JSON string's text, a number as a number
# or its text, a boolean as anything) and its JSON type in these words; None for a key the payload lacks.
JSON_TEXT, JSON_NUMBER, JSON_OTHER = "text", "number", "other"
JSON_TRUE, JSON_FALSE, JSON_NULL = "true", "false", "null"


def _extracted_value(column: str, values: np.ndarray, types: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One extracted key as `_signal_value` reads it: (usable, value, needs the payload) per row."""
    n = len(values)
    value = np.full(n, None, dtype=object)
    usable = np.zeros(n, dtype=bool)
    text = types == JSON_TEXT
    rows = np.flatnonzero(text)
    if len(rows):
        # A blank string is missing: the next key is tried.
        filled = np.fromiter((bool(v.strip()) for v in values[rows]), dtype=bool, count=len(rows))
        usable[rows[filled]] = True
        value[rows[filled]] = values[rows[filled]]
    true, false = types == JSON_TRUE, types == JSON_FALSE
    if column == "honeypot":
        # A JSON `false` honeypot means the field was left alone.
        usable |= true
        value[true] = "true"
    elif column == "form_fill_seconds":
        usable |= true | false
        value[true], value[false] = 1.0, 0.0
        number = np.flatnonzero(types == JSON_NUMBER)
        usable[number] = True
        # Numbers as Python reads the JSON (text from PostgreSQL, int or float from SQLite).
        value[number] = [float(v) for v in values[number]]
    else:
        usable |= true | false
        value[true], value[false] = "True", "False"
    # Lists, objects and numbers that become text: Python's own rendering decides, from the parsed payload.
    needs = (types == JSON_OTHER) | ((types == JSON_NUMBER) & (column != "form_fill_seconds"))
    return usable & ~needs, value, needs


def extracted_signals(keys: dict[str, tuple[Sequence[Any], Sequence[Any]]], headers: dict[str, list[str]],
                      n: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The signals of rows whose payload keys were extracted in SQL, as `payload_signals` reads them.

    `keys` maps each key named in `headers` to its (values, JSON types) for each of the `n` rows. Also returns
    which rows hold a signal key whose value only the parsed payload renders exactly (a list, an object, a number
    as IP or honeypot): their signals are to be taken from `payload_signals` instead.
    """
    columns: dict[str, Any] = {}
    needs = np.zeros(n, dtype=bool)
    for column in SIGNAL_COLUMNS:
        result = np.full(n, None, dtype=object)
        done = np.zeros(n, dtype=bool)
        for name in headers.get(column, []):
            values, types = (np.asarray(part, dtype=object) for part in keys[name])
            usable, value, odd = _extracted_value(column, values, types)
            # Rows still open at this key: a usable value ends the search, an odd one sends the row to Python.
            needs |= odd & ~done
            take = usable & ~done
            result[take] = value[take]
            done |= take
        columns[column] = result
    return _signal_frame(columns), needs


def _utc(values: pd.Series) -> pd.Series:
    """Datetimes read back from either database as timezone-aware UTC (SQLite hands them back naive, or as text)."""
    return pd.to_datetime(values, utc=True, format="ISO8601")


def typed_submissions(frame: pd.DataFrame) -> pd.DataFrame:
    """Submission columns of a judged frame in the types the spam rules expect."""
    for column in ("source", "message", "ip_address", "honeypot"):
        frame[column] = frame[column].astype("string")
    # Microseconds, as both databases store them (a chunk in memory may hold finer times).
    frame["submitted_at"] = _utc(frame["submitted_at"]).dt.as_unit("us")
    frame["form_fill_seconds"] = pd.to_numeric(frame["form_fill_seconds"], errors="coerce").astype("float64")
    return frame


def typed_leads(frame: pd.DataFrame) -> pd.DataFrame:
    """Lead columns of a judged frame in the types the spam rules expect, with each email's hash."""
    for column in ("email", "email_domain", "first_name", "last_name", "status"):
        frame[column] = frame[column].astype("string")
    frame["is_spam"] = frame["is_spam"].astype(bool)
    # One hash per distinct email (a lead's submissions share it), spread back by position.
    codes, emails = pd.factorize(frame["email"])
    hashes = email_hash(pd.Series(emails, dtype="string")).to_numpy(dtype=object, na_value=None)
    frame["email_hash"] = pd.Series(np.append(hashes, None)[codes], index=frame.index, dtype="string")
    return frame


def _with_signals(frame: pd.DataFrame, payloads: Sequence[Any]) -> pd.DataFrame:
    """The frame with the anti-spam signals of each row's raw payload."""
    signals = payload_signals(payloads)
    for column in SIGNAL_COLUMNS:
        frame[column] = signals[column].to_numpy()
    return frame


def stored_submissions(raw: pd.DataFrame) -> pd.DataFrame:
    """Stored submission rows (with their raw_payload) as the rules judge them: signals out, payload dropped."""
    return typed_submissions(_with_signals(raw.drop(columns=["raw_payload"]), raw["raw_payload"].tolist()))


def submission_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """Submissions read joined with their leads as the frame the spam rules judge (one row per submission)."""
    return typed_leads(stored_submissions(raw))


def signal_rows(rows: pd.DataFrame, signals: pd.DataFrame) -> pd.DataFrame:
    """Submissions joined with their leads (no payload) and their signals, as the frame the spam rules judge.

    The same frame `submission_frame` makes of rows with their raw payloads.
    """
    frame = rows.reset_index(drop=True)
    for column in SIGNAL_COLUMNS:
        frame[column] = signals[column].to_numpy()
    return typed_leads(typed_submissions(frame))


_FROM_CHUNK = ("submitted_at", "source", "message", *SIGNAL_COLUMNS)


def from_chunk(stored: pd.DataFrame, subs: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The stored submissions that are rows of the chunk, with their fields from it; and which stored rows they are.

    `stored` holds submission_id, idempotency_key and lead_id of what the batch stored; `subs` is the chunk.
    """
    # The first row of each key is the one that was stored (later repeats in the chunk added nothing).
    keys = subs["idempotency_key"]
    firsts = np.flatnonzero(~keys.duplicated().to_numpy())
    found = pd.Index(keys.to_numpy(dtype=object)[firsts]).get_indexer(stored["idempotency_key"].to_numpy(dtype=object))
    mine = found >= 0
    rows = firsts[found[mine]]
    here = stored.loc[mine, ["submission_id", "lead_id"]].reset_index(drop=True)
    for column in _FROM_CHUNK:
        here[column] = subs[column].iloc[rows].reset_index(drop=True)
    filled = here["honeypot"].notna().to_numpy()
    if filled.any():
        # The payload decides a filled honeypot: a typed `false` reads "False" in the chunk but was left alone.
        payloads = subs[PAYLOAD_COLUMN].iloc[rows[filled]].tolist()
        here.loc[filled, "honeypot"] = payload_signals(payloads)["honeypot"].to_numpy()
    return typed_submissions(here), mine


def with_leads(frame: pd.DataFrame, leads: pd.DataFrame) -> pd.DataFrame:
    """Submissions joined with their leads as they are now (raw lead rows typed here), in submission order."""
    frame = frame.merge(typed_leads(leads), on="lead_id", how="inner")
    return frame.sort_values("submission_id", kind="stable", ignore_index=True)


# --- cleanup: judging and flagging ------------------------------------------------------------------------------


def judge_submissions(frame: pd.DataFrame, policy: SpamPolicy, known_bad: set[str]) -> pd.DataFrame:
    """Spam verdict per lead from its submissions in the frame: lead_id, email, email_hash, status, reasons."""
    verdict = detect_spam(frame, policy, known_bad)
    spam = verdict.loc[verdict["is_spam"]]
    if spam.empty:
        return pd.DataFrame(columns=["lead_id", "email", "email_hash", "status", "is_spam", "reasons"])
    fired = spam[list(RULE_COLUMNS)].groupby(frame.loc[spam.index, "lead_id"]).any()
    # Each lead's rules as bits: one label per distinct combination instead of one string join per lead.
    bits = np.zeros(len(fired), dtype=np.int64)
    for k, rule in enumerate(RULE_COLUMNS):
        bits |= fired[rule].to_numpy(dtype=bool).astype(np.int64) << k
    labels = {int(b): ",".join(sorted(c for k, c in enumerate(REASON_CODES) if int(b) >> k & 1))
              for b in np.unique(bits)}
    reasons = pd.Series([labels[int(b)] for b in bits], index=fired.index, dtype=object)
    leads = frame.loc[spam.index].drop_duplicates("lead_id").set_index("lead_id")
    out = leads.loc[reasons.index, ["email", "email_hash", "status", "is_spam"]].assign(reasons=reasons)
    return out.reset_index()


def flag_candidates(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Verdicts of leads that may be flagged: not spam already, not won (judged on the status read with them)."""
    flaggable = ~verdicts["is_spam"].astype(bool) & ~verdicts["status"].isin([*NEVER_FLAGGED, SPAM_STATUS])
    return verdicts.loc[flaggable]


def flag_plan(candidates: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Candidates still flaggable as their leads are now (current_status, current_reason, current_is_spam).

    Another run (or a rep) may have changed a lead since it was read: it is judged on what it is now. The plan
    carries previous_status and previous_reason for the events and for a later restore.
    """
    plan = candidates.merge(current, on="lead_id")
    plan = plan.loc[~plan["current_is_spam"].astype(bool)
                    & ~plan["current_status"].isin([*NEVER_FLAGGED, SPAM_STATUS])]
    return plan.rename(columns={"current_status": "previous_status", "current_reason": "previous_reason"})


def flag_events(
    plan: pd.DataFrame,
    tasks: dict[int, list[int]],
    outbox: dict[int, list[int]],
    *,
    policy: SpamPolicy,
    now: datetime,
    by: str,
    batch_id: str | None,
    flow_run_id: str | None,
) -> pd.DataFrame:
    """The status_changed and spam_flagged events of a flag plan; the latter remember what a restore puts back."""
    ids = plan["lead_id"].astype("int64").tolist()
    status_details = [
        json.dumps({"from": old, "to": SPAM_STATUS, "reason": "spam", "by": by}) for old in plan["previous_status"]
    ]
    flag_details = [
        json.dumps({
            "reasons": reasons.split(","), "policy_version": policy.version, "by": by,
            "from_status": old, "from_reason": None if pd.isna(old_reason) else old_reason,
            "cancelled_tasks": tasks.get(int(lead_id), []), "withdrawn_outbox": outbox.get(int(lead_id), []),
        })
        for lead_id, reasons, old, old_reason in zip(plan["lead_id"], plan["reasons"], plan["previous_status"],
                                                     plan["previous_reason"], strict=True)
    ]
    return pd.DataFrame({
        "lead_id": [*ids, *ids],
        "event_type": [STATUS_EVENT] * len(ids) + [FLAGGED_EVENT] * len(ids),
        "occurred_at": now,
        "batch_id": batch_id,
        "flow_run_id": flow_run_id,
        "details": status_details + flag_details,
    })


# --- cleanup: restoring -----------------------------------------------------------------------------------------


def restore_target(email: str | None, reason: str | None) -> tuple[str | None, str | None]:
    """A restore request checked: the normalized email and its hash (both None when restoring by reason)."""
    if (email is None) == (reason is None):
        raise SpamCleanupError("give exactly one of an email or --reason")
    if reason is not None and reason not in REASON_CODES:
        raise SpamCleanupError(f"unknown spam reason {reason!r}; known: {', '.join(REASON_CODES)}")
    if email is None:
        return None, None
    normalized = normalize_email(pd.Series([email], dtype="string")).iloc[0]
    if pd.isna(normalized) or not is_valid_email(pd.Series([normalized], dtype="string")).iloc[0]:
        raise SpamCleanupError("that is not an email address")
    return normalized, str(email_hash(pd.Series([normalized], dtype="string")).iloc[0])


def restore_plan(
    leads: pd.DataFrame, flags: dict[int, dict[str, Any]]
) -> tuple[pd.DataFrame, list[int], list[int]]:
    """Flagged leads (lead_id, email, status, reasons) with what to put back, from their latest flag details.

    Adds hash, to_status and to_reason; returns them with the task and outbox ids the flag took away.
    """
    ids = leads["lead_id"].astype("int64").tolist()
    leads["hash"] = email_hash(leads["email"].astype("string"))
    back = [flags.get(i, {}) for i in ids]
    leads["to_status"] = [(d.get("from_status") or "new") if s == SPAM_STATUS else s
                          for d, s in zip(back, leads["status"], strict=True)]
    leads["to_reason"] = [d.get("from_reason") for d in back]
    tasks = [t for d in back for t in d.get("cancelled_tasks", [])]
    outbox = [o for d in back for o in d.get("withdrawn_outbox", [])]
    return leads, tasks, outbox


def restore_events(leads: pd.DataFrame, now: datetime, by: str) -> pd.DataFrame:
    """The status_changed and spam_restored events of a restore plan."""
    ids = leads["lead_id"].astype("int64").tolist()
    return pd.DataFrame({
        "lead_id": [*ids, *ids],
        "event_type": [STATUS_EVENT] * len(ids) + [RESTORED_EVENT] * len(ids),
        "occurred_at": now,
        "batch_id": None,
        "flow_run_id": None,
        "details": [json.dumps({"from": old, "to": new, "reason": "spam_restored", "by": by})
                    for old, new in zip(leads["status"], leads["to_status"], strict=True)]
        + [json.dumps({"reasons": (r or "").split(",") if r else [], "by": by}) for r in leads["reasons"]],
    })


# --- cleanup: purging -------------------------------------------------------------------------------------------


def review_reasons(leads: pd.DataFrame, worked: set[int], before: dict[int, str | None]) -> list[str | None]:
    """Why each expired spam lead needs a person instead of the purge (None: purge it).

    `worked` holds the leads with a done task; `before` each lead's status before it was flagged.
    """
    ids = leads["lead_id"].astype("int64").tolist()
    return [
        "task_done" if i in worked
        else f"status:{before.get(i) or s}" if (before.get(i) or s) in INTERACTION_STATUSES else None
        for i, s in zip(ids, leads["status"], strict=True)
    ]


def tombstone_rows(doomed: pd.DataFrame, policy: SpamPolicy, now: datetime) -> pd.DataFrame:
    """The tombstones of purged leads (email hash, reasons, policy, flag and purge times): all that outlives them."""
    tombstones = pd.DataFrame({
        "email_hash": email_hash(doomed["email"].astype("string")).to_numpy(),
        "reasons": doomed["reasons"].fillna("").to_numpy(),
        "policy_version": policy.version,
        "flagged_at": _utc(doomed["flagged_at"]).to_numpy(),
        "purged_at": pd.Timestamp(now),
    })
    tombstones["flagged_at"] = _utc(tombstones["flagged_at"])
    return tombstones
