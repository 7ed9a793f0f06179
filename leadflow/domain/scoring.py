"""Calculate Lead Score: pure, vectorized fit and intent scoring of a batch of leads under a versioned policy."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Annotated, Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadflow.config.policy import VersionedPolicy
from leadflow.domain.normalize import COUNT_CAP, is_free_mail, parse_bool, parse_count, parse_timestamps

Seniority = Literal["c_level", "vp", "director", "manager", "individual", "entry", "unknown"]
SizeBand = Literal["1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+", "unknown"]
# tier_1 high fit and intent, tier_2 high fit, tier_3 low fit, tier_4 high intent but fit unknown (see score_leads).
Tier = Literal["tier_1", "tier_2", "tier_3", "tier_4"]

SENIORITY_LEVELS: tuple[str, ...] = get_args(Seniority)
SIZE_BANDS: tuple[str, ...] = get_args(SizeBand)
TIERS: tuple[str, ...] = get_args(Tier)
OUTPUT_COLUMNS = ("fit_score", "intent_score", "score", "tier", "seniority", "explanation", "policy_version")

# Upper bounds of the known bands (inclusive); anything above the last is "5000+".
_BAND_EDGES = (10, 50, 200, 1000, 5000)

# Regex work runs on pyarrow strings so RE2 does it in C++ whatever `mode.string_storage` says. Patterns run on
# whole columns (messages, titles) avoid \b, \w, \s and lookarounds, which would make pandas fall back to
# Python's `re` row by row; company sizes are parsed once per distinct value, so they may use them.
_TEXT = pd.StringDtype("pyarrow")
# Letters and digits of Latin scripts after lower-casing: what counts as "inside a word" for word boundaries.
_WORD = "0-9a-z_\u00df-\u00f6\u00f8-\u024f"
_NOT_WORD = f"[^{_WORD}]"

Points = Annotated[float, Field(ge=0, le=1000)]


class _Rules(BaseModel):
    """Strict, immutable building block of the scoring policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PageViewStep(_Rules):
    """One step of the page-view curve: at least `min_views` views earn `points`."""

    min_views: int = Field(ge=1, le=COUNT_CAP, description="Page views needed to reach this step.")
    points: Points = Field(description="Intent points at this step (the highest step reached counts).")


class KeywordTopic(_Rules):
    """A buying-signal topic found in the lead's message by any of its phrases."""

    name: str = Field(
        min_length=1, max_length=24, pattern=r"^[a-z0-9_ -]+$", description="Shown in the explanation, e.g. 'pricing'."
    )
    phrases: list[Annotated[str, Field(min_length=1, max_length=60)]] = Field(
        min_length=1, description="Words or phrases, matched case-insensitively as whole words."
    )
    points: Points = Field(description="Intent points when any phrase occurs (once per topic).")

    @field_validator("phrases")
    @classmethod
    def _phrases_have_words(cls, phrases: list[str]) -> list[str]:
        empty = [phrase for phrase, words in zip(phrases, _words(phrases), strict=True) if not words]
        if empty:
            raise ValueError(f"phrases without letters or digits: {empty}")
        return phrases


class FitRules(_Rules):
    """Points for how well the person and company match the ideal customer profile."""

    industry_points: dict[str, Points] = Field(
        description="Industry name -> points; matched case-insensitively ignoring punctuation and '&' vs 'and'."
    )
    industry_aliases: dict[str, str] = Field(
        default_factory=dict, description="Other spellings -> an industry name listed in industry_points."
    )
    industry_default: Points = Field(description="Points for an industry that is given but not listed.")
    size_points: dict[SizeBand, Points] = Field(
        description="Employee band -> points; bands: 1-10, 11-50, 51-200, 201-1000, 1001-5000, 5000+, unknown."
    )
    country_points: dict[str, Points] = Field(description="ISO 3166 alpha-2 country code -> points.")
    country_default: Points = Field(description="Points for a known country that is not listed.")
    seniority_points: dict[Seniority, Points] = Field(
        description="Seniority level parsed from the job title -> points; unlisted levels earn 0."
    )
    work_email_points: Points = Field(description="Points for an email on a company domain.")
    free_mail_points: Points = Field(default=0, description="Points for an email at a free-mail provider.")

    @field_validator("industry_points")
    @classmethod
    def _industries_distinct(cls, points: dict[str, Points]) -> dict[str, Points]:
        keys = _industry_keys(list(points))
        if not all(keys):
            raise ValueError("industry names need letters or digits")
        clashes = sorted({key for key in keys if keys.count(key) > 1})
        if clashes:
            raise ValueError(f"industry names that differ only in case or punctuation: {clashes}")
        return points

    @field_validator("country_points")
    @classmethod
    def _countries_are_codes(cls, points: dict[str, Points]) -> dict[str, Points]:
        bad = sorted(code for code in points if not (len(code) == 2 and code.isascii() and code.isupper()))
        if bad:
            raise ValueError(f"country keys must be ISO alpha-2 codes in upper case, got {bad}")
        return points

    @model_validator(mode="after")
    def _aliases_point_at_industries(self) -> FitRules:
        unknown = sorted(set(self.industry_aliases.values()) - set(self.industry_points))
        if unknown:
            raise ValueError(f"industry_aliases point at industries missing from industry_points: {unknown}")
        return self


class IntentRules(_Rules):
    """Points for how ready the lead is to buy, from behaviour and the message."""

    demo_request_points: Points = Field(description="Points when the lead asked for a demo.")
    pricing_visit_points: Points = Field(description="Points per visit of the pricing page.")
    pricing_visits_cap: float = Field(gt=0, le=1000, description="Most points pricing visits can earn.")
    page_view_steps: list[PageViewStep] = Field(
        description="Stepped curve for page views; the last step is the most page views can earn."
    )
    download_points: Points = Field(description="Points per content download (whitepaper, e-book, ...).")
    downloads_cap: float = Field(gt=0, le=1000, description="Most points content downloads can earn.")
    recency_points: Points = Field(description="Points for a touch right now; they halve every half-life.")
    recency_half_life_days: float = Field(gt=0, le=3650, description="Days after which recency points halve.")
    message_topics: list[KeywordTopic] = Field(
        default_factory=list,
        max_length=32,
        description="Buying-signal topics looked for in the message, in explanation order.",
    )
    message_cap: float = Field(gt=0, le=1000, description="Most points the message topics together can earn.")

    @field_validator("page_view_steps")
    @classmethod
    def _steps_ascend(cls, steps: list[PageViewStep]) -> list[PageViewStep]:
        views = [step.min_views for step in steps]
        if views != sorted(set(views)):
            raise ValueError("page_view_steps must have strictly increasing min_views")
        points = [step.points for step in steps]
        if points != sorted(points):
            raise ValueError("page_view_steps must not give fewer points for more page views")
        return steps

    @field_validator("message_topics")
    @classmethod
    def _topics_distinct(cls, topics: list[KeywordTopic]) -> list[KeywordTopic]:
        names = [topic.name for topic in topics]
        if len(names) != len(set(names)):
            raise ValueError("message_topics need distinct names")
        return topics


class ScoringPolicy(VersionedPolicy):
    """How leads are scored: fit and intent rules, a cap per group and the tier thresholds (points count in tenths)."""

    fit: FitRules = Field(description="Fit rules: industry, company size, country, seniority, email.")
    intent: IntentRules = Field(description="Intent rules: demo request, visits, downloads, recency, message.")
    fit_cap: float = Field(gt=0, le=1000, description="Most points fit can add up to.")
    intent_cap: float = Field(gt=0, le=1000, description="Most points intent can add up to.")
    high_fit: float = Field(gt=0, description="Fit score at or above which a lead is high fit (at most fit_cap).")
    high_intent: float = Field(
        gt=0, description="Intent score at or above which a lead is high intent (at most intent_cap)."
    )
    model: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="A trained conversion model (`leadflow scoring train`): a name in the CRM's models folder or a "
                    "path. Leads keep this policy's score and gain the model's probability; a model that did not "
                    "beat these rules on its holdout is refused.",
    )

    @model_validator(mode="after")
    def _thresholds_within_caps(self) -> ScoringPolicy:
        if self.high_fit > self.fit_cap:
            raise ValueError(f"high_fit {self.high_fit} is above fit_cap {self.fit_cap}")
        if self.high_intent > self.intent_cap:
            raise ValueError(f"high_intent {self.high_intent} is above intent_cap {self.intent_cap}")
        return self


# --- distinct values and text helpers --------------------------------------------------------------------------


def _distinct(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Row codes into a column's distinct trimmed strings (-1 for NA and blanks), so per-value work runs once."""
    codes, uniques = pd.factorize(values.astype(_TEXT).str.strip())
    blank = np.append(uniques.to_numpy(dtype=object) == "", True)
    return np.where(blank[codes], -1, codes).astype(np.int64), pd.Series(uniques, dtype=_TEXT)


def _take(table: list | np.ndarray, codes: np.ndarray, missing: object, dtype: object = object) -> np.ndarray:
    """Per-row values from a per-distinct-value table; code -1 picks `missing`."""
    return np.asarray([*table, missing], dtype=dtype)[codes]


def _tokens(text: pd.Series) -> pd.Series:
    """Lower-case words separated by single spaces and padded with one, so ' word ' is a whole-word match."""
    # Replacing only punctuation, then only runs of spaces, is much faster in RE2 than one `[^word]+` pass.
    words = text.str.lower().str.replace("&", " and ").str.replace(f"[^{_WORD} ]+", " ", regex=True)
    return " " + words.str.replace(" {2,}", " ", regex=True).str.strip() + " "


def _words(texts: list[str]) -> list[str]:
    """Texts reduced the way `_tokens` reduces them, without the padding ('' when nothing is left)."""
    if not texts:
        return []
    return [word.strip() for word in _tokens(pd.Series(texts, dtype=_TEXT))]


def _industry_keys(names: list[str]) -> list[str]:
    """Industry names as matching keys: 'IT & Services' and 'it and services' agree."""
    return _words(names)


@lru_cache(maxsize=32)
def _industry_lookup(names: tuple[str, ...], aliases: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Matching key -> industry name of the policy, for its names and their aliases."""
    lookup = dict(zip(_industry_keys(list(names)), names, strict=True))
    alias_keys = _industry_keys([alias for alias, _ in aliases])
    for key, (_, target) in zip(alias_keys, aliases, strict=True):
        if key:
            lookup.setdefault(key, target)
    return lookup


@lru_cache(maxsize=32)
def _topic_patterns(topics: tuple[tuple[str, ...], ...]) -> tuple[str, ...]:
    """Whole-word regex per topic for any of its phrases, on lower-cased text."""
    reduced = iter(_words([phrase for phrases in topics for phrase in phrases]))
    patterns = []
    for phrases in topics:
        # Longest first so "free trial" is tried before "trial"; sorted so the pattern never depends on set order.
        words = sorted({next(reduced) for _ in phrases}, key=lambda w: (-len(w), w))
        alternatives = "|".join(f"{_NOT_WORD}+".join(w.split(" ")) for w in words)
        patterns.append(f"(?:^|{_NOT_WORD})(?:{alternatives})(?:{_NOT_WORD}|\\Z)")
    return tuple(patterns)


# --- seniority ----------------------------------------------------------------------------------------------

_EXEC_WORDS = (
    "vp|svp|evp|ceo|cto|cfo|coo|cmo|cro|cio|founders?|co founders?|cofounders?|president|owner|owners|chairman|board|"
    "managing director|geschäftsführer(?:in)?|geschäftsführung|vorstand|pdg|directeur général|directrice générale"
)
# Order matters: these rewrite phrases whose words would otherwise make a false hit in a higher level.
_TITLE_REWRITES = (
    # "Vice President" is not a President; rewritten first so "Assistant to the Vice President" is caught below.
    (" (?:vice president|vice presidente?|vice présidente?|vizepräsident(?:in)?|vicepresident|vice pres) ", " vp "),
    # Someone who works for an executive is not one: "Assistant to the CEO", "Chief of Staff to the Founder".
    (f" (?:to|of|for|à|au|du|de|des|beim|bei|der|dem|vom|von)(?: (?:the|la|le|l|dem|der|des|du))? (?:{_EXEC_WORDS}) ",
     " "),
    (f" (?:{_EXEC_WORDS}) s ", " "),  # "Founder's Associate", "CEO's Office"
    # A Product Owner owns a backlog, not the company.
    (" (?:product|process|service|data|system|content|project|solution|application|platform|budget|risk|"
     "control|technical|feature|asset|domain|business process) owner ", " ownerrole "),
    # CRO is also conversion-rate optimisation: "CRO Specialist" is a specialist, not a Chief Revenue Officer.
    (" cro (?:specialist|analyst|consultant|expert|strategist|marketer|executive) ", " specialist "),
    (" cro (?:manager|lead) ", " manager "),
    # Chief of Staff is a senior operator without a C-suite function: we rank it with vp.
    (" chief of staff ", " chiefofstaff "),
    (" lead gen(?:eration)? ", " leadgen "),
)
# Checked in this order, first match wins. entry comes before individual so "Junior Developer" and
# "Engineering Intern" are entry, and after manager so "Junior Product Manager" stays a manager.
_SENIORITY_PATTERNS: tuple[tuple[str, str], ...] = (
    ("c_level",
     " (?:ceo|c e o|cto|cfo|coo|cmo|cro|cio|ciso|cso|cpo|cdo|cco|chro|cxo|founder|cofounder|owner|co owner|president|"
     "presidente|présidente?|präsident(?:in)?|chairman|chairwoman|chairperson|managing director|managing partner|"
     "founding partner|general partner|geschäftsführer(?:in)?|geschaeftsfuehrer(?:in)?|inhaber(?:in)?|"
     "(?:mit)?gründer(?:in)?|fondateur|fondatrice|cofondateur|cofondatrice|pdg|directeur général|"
     "directrice générale|directora? general|gérante?|propriétaire|vorstand|vorstandsvorsitzender?|chief executive) "
     "| chief(?: [^ ]+){0,3} officer "),
    ("vp", " (?:vp|svp|evp|avp|head|chiefofstaff|leiter(?:in)?|bereichsleiter(?:in)?) "),
    ("director",
     " (?:director|directors|directeur|directrice|direktor(?:in)?|directora?|dir|"
     "(?:abteilungs|vertriebs|marketing|verkaufs|betriebs|niederlassungs|werks|produktions)leiter(?:in)?) "),
    ("manager",
     " (?:[^ ]*manager(?:in)?|mgr|lead|leader|teamlead|supervisor|responsable|chef|[^ ]*leiter(?:in)?|gerente|"
     "jefe|foreman) "),
    ("entry",
     " (?:intern|interns|internship|student|trainee|apprentice|junior|jr|graduate|praktikant(?:in)?|"
     "werkstudent(?:in)?|auszubildende[r]?|azubi|stagiaire|alternante?|apprentie?|étudiante?) "),
    ("individual",
     " (?:engineer|analyst|specialist|consultant|developer|associate|coordinator|representative|rep|"
     "assistant|assistante?|assistentin|architect|scientist|designer|administrator|admin|accountant|executive|"
     "advisor|adviser|officer|agent|technician|programmer|writer|editor|recruiter|marketer|strategist|researcher|"
     "ownerrole|sdr|bdr|ae|employee|staff|professional|expert|secretary|clerk|operator|buyer|planner|controller|"
     "teacher|nurse|physician|lawyer|attorney|paralegal|producer|tester|auditor|commercial|chargée?|ingénieure?|"
     "développeur|développeuse|[^ ]*(?:entwickler|berater|ingenieur|referent|sachbearbeiter|mitarbeiter|"
     "assistent|kaufmann|kauffrau)(?:in)?) "),
)


_UNKNOWN_LEVEL = SENIORITY_LEVELS.index("unknown")


def _title_levels(titles: pd.Series) -> np.ndarray:
    """Seniority level numbers (positions in SENIORITY_LEVELS) of distinct titles."""
    if titles.empty:
        return np.zeros(0, dtype=np.int64)
    canon = _tokens(titles)
    for pattern, replacement in _TITLE_REWRITES:
        canon = canon.str.replace(pattern, replacement, regex=True)
    hits = [canon.str.contains(pattern, regex=True).to_numpy(dtype=bool, na_value=False)
            for _, pattern in _SENIORITY_PATTERNS]
    levels = [SENIORITY_LEVELS.index(level) for level, _ in _SENIORITY_PATTERNS]
    return np.select(hits, levels, default=_UNKNOWN_LEVEL).astype(np.int64)


def _seniority_numbers(titles: pd.Series) -> np.ndarray:
    """Seniority level number of each title."""
    codes, uniques = _distinct(titles)
    return _take(_title_levels(uniques), codes, _UNKNOWN_LEVEL, dtype=np.int64)


def parse_seniority(titles: pd.Series) -> pd.Series:
    """Seniority level of each job title (c_level, vp, director, manager, individual, entry or unknown)."""
    levels = np.asarray(SENIORITY_LEVELS, dtype=object)[_seniority_numbers(titles)]
    return pd.Series(levels, index=titles.index, dtype="string")


# --- company size ---------------------------------------------------------------------------------------------

_SOLO = r"self[ -]?employed|freelancer?|solo|sole (?:trader|proprietor)|just me|only me|one person|" \
        r"selbst(?:st)?ändig|freiberufler(?:in)?|indépendante?|auto[ -]?entrepreneur"
_NUMBER = r"(\d+(?:\.\d+)?) ?(?:([km])(?![a-z]))?"


_UNKNOWN_BAND = SIZE_BANDS.index("unknown")


def _band_of_counts(counts: np.ndarray) -> np.ndarray:
    """Band numbers (positions in SIZE_BANDS) of employee counts; NaN and fewer than one employee are unknown."""
    bands = np.searchsorted(np.asarray(_BAND_EDGES, dtype="float64"), counts, side="left")
    return np.where(np.isnan(counts) | (counts < 1), _UNKNOWN_BAND, bands).astype(np.int64)


def _scaled(found: pd.DataFrame, number: int, unit: int) -> np.ndarray:
    """Numbers captured by `str.extract` with their k/m suffix applied (NaN where nothing was found)."""
    values = pd.to_numeric(found[number], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    units = found[unit].to_numpy(dtype=object, na_value="")
    return values * np.where(units == "k", 1e3, np.where(units == "m", 1e6, 1.0))


def _counts_of_sizes(sizes: pd.Series) -> np.ndarray:
    """Representative employee counts of distinct typed sizes: a range's midpoint, 'N+' just above N."""
    text = sizes.str.lower().str.replace("[\u00a0 ]+", " ", regex=True).str.replace("[–—−]", "-", regex=True)
    # '1,001' and '10.000' are thousands; '1.5k' keeps its decimal point.
    text = text.str.replace(r"(?<=\d)[,.' ](?=\d{3}(?!\d))", "", regex=True)

    found = text.str.extract(rf"{_NUMBER} ?(?:-|to|bis|à|a) ?{_NUMBER}")
    lo, hi, borrowed = _scaled(found, 0, 1), _scaled(found, 2, 3), _scaled(found, 0, 3)
    # '5-10k' means 5k to 10k: an unscaled low end borrows the high end's suffix when it stays below the high end.
    lo = np.where(found[1].isna().to_numpy() & (borrowed < hi), borrowed, lo)
    with np.errstate(invalid="ignore"):
        counts = np.where(lo <= hi, (lo + hi) / 2, np.nan)

    # 'N+' and 'over N' mean more than N, 'under N' less; a lone number is itself.
    for pattern, shift in (
        (rf"{_NUMBER} ?\+", 1),
        (rf"(?:over|more than|above|greater than|at least|>=?|mehr als|über|plus de) ?{_NUMBER}", 1),
        (rf"(?:under|less than|fewer than|below|up to|<=?|unter|bis zu|moins de) ?{_NUMBER}", -1),
        (_NUMBER, 0),
    ):
        todo = np.isnan(counts)
        if not todo.any():
            break
        counts = np.where(todo, _scaled(text.str.extract(pattern), 0, 1) + shift, counts)

    # 'Enterprise' only says "large": take the smallest band that surely is, rather than guess above it.
    for pattern, count in ((_SOLO, 1.0), ("enterprise|konzern|grands? comptes?|large corporat", 1001.0),
                           ("mid[ -]?market", 500.0)):
        todo = np.isnan(counts)
        if not todo.any():
            break
        counts = np.where(todo & text.str.contains(pattern, regex=True).to_numpy(dtype=bool, na_value=False),
                          count, counts)
    return counts


def _band_numbers(sizes: pd.Series) -> np.ndarray:
    """Band number of each typed size or numeric employee count."""
    if pd.api.types.is_numeric_dtype(sizes.dtype) and not pd.api.types.is_bool_dtype(sizes.dtype):
        return _band_of_counts(pd.to_numeric(sizes, errors="coerce").to_numpy(dtype="float64", na_value=np.nan))
    codes, uniques = _distinct(sizes)
    bands = _band_of_counts(_counts_of_sizes(uniques)) if len(uniques) else []
    return _take(bands, codes, _UNKNOWN_BAND, dtype=np.int64)


def employee_band(sizes: pd.Series) -> pd.Series:
    """Employee band of typed company sizes ('51-200', '1000+', '5k', 'self-employed') or numeric counts."""
    bands = np.asarray(SIZE_BANDS, dtype=object)[_band_numbers(sizes)]
    return pd.Series(bands, index=sizes.index, dtype="string")


# --- scoring --------------------------------------------------------------------------------------------------
# Points are whole tenths (int64) from here on: sums are exact, so order, platform and batch change nothing.
# Each rule yields its points per row and its explanation part per row (", <label> +<points>" or "").


def _tenths(points: float) -> int:
    """Policy points in whole tenths, rounded half up."""
    return int(np.floor(points * 10 + 0.5))


def _fmt(tenths: int) -> str:
    """Tenths as a display number: 120 -> '12', 25 -> '2.5'."""
    return f"{tenths // 10}" if tenths % 10 == 0 else f"{tenths // 10}.{tenths % 10}"


def _part(label: str, tenths: int) -> str:
    """One rule's explanation part, empty when it earned nothing."""
    return f", {label} +{_fmt(tenths)}" if tenths > 0 else ""


# A rule's explanation parts: the distinct texts and each row's position among them. Strings are only ever built
# once per distinct value and assembled per row by Arrow, never by a Python loop over rows.
Parts = tuple[list[str], np.ndarray]


def _parts_by_value(keys: np.ndarray, tenths: np.ndarray, label: Callable[[int], str]) -> Parts:
    """Parts of a rule whose points follow from an integer key (a count, a bit mask, the points themselves)."""
    uniques, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    table = [_part(label(int(key)), int(tenths[i])) for key, i in zip(uniques, first, strict=True)]
    return table, inverse.reshape(-1)


def _parts_by_code(table: list[str], codes: np.ndarray) -> Parts:
    """Parts from a table per distinct value and `_distinct` codes (-1 has no part)."""
    return [*table, ""], np.where(codes < 0, len(table), codes)


def _parts_by_flag(flag: np.ndarray, text: str) -> Parts:
    """Parts of a yes/no rule."""
    return ["", text], flag.astype(np.int64)


def _strings(parts: Parts) -> pa.Array:
    """Each row's text."""
    table, positions = parts
    return pa.array(table, type=pa.string()).take(pa.array(positions))


def _body(parts: list[Parts]) -> pa.Array:
    """The rule parts of a group joined in rule order, 'none' where no rule fired."""
    joined = pc.utf8_slice_codeunits(pc.binary_join_element_wise(*[_strings(p) for p in parts], ""), 2)
    return pc.if_else(pc.equal(joined, ""), "none", joined)


def _column(leads: pd.DataFrame, name: str, dtype: str) -> pd.Series:
    """A column of the batch, or all-NA of `dtype` when the batch does not carry it."""
    if name in leads.columns:
        return leads[name]
    return pd.Series(pd.NA, index=leads.index, dtype=dtype)


def _counts(values: pd.Series) -> np.ndarray:
    """Non-negative whole counts; NA, negatives and garbage are 0, absurd values stop at COUNT_CAP."""
    return parse_count(values).fillna(0).to_numpy(dtype=np.int64)


def _yes_no(values: pd.Series) -> pd.Series:
    """A yes/no column as nullable booleans (NA where it does not say)."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean")
    return parse_bool(values)


def _sum(parts: list[np.ndarray], cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Capped and raw sums of rule points, added in rule order."""
    raw = np.zeros_like(parts[0])
    for part in parts:
        raw = raw + part
    return np.minimum(raw, cap), raw


def _heads(name: str, total: np.ndarray, raw: np.ndarray) -> pa.Array:
    """'fit 38' per row, with a note where the cap cut the sum."""
    def head(key: int) -> str:
        raw_t, total_t = divmod(key, 1 << 32)
        return f"{name} {_fmt(total_t)}" + (f" (capped from {_fmt(raw_t)})" if raw_t > total_t else "")

    keys = raw.astype(np.int64) * (1 << 32) + total
    uniques, inverse = np.unique(keys, return_inverse=True)
    return _strings(([head(int(key)) for key in uniques], inverse.reshape(-1)))


def _fit(leads: pd.DataFrame, rules: FitRules) -> tuple[list[np.ndarray], list[Parts], np.ndarray, np.ndarray]:
    """Fit points and explanation parts per rule, the seniority numbers, and where fit is unknown."""
    # Industry: a listed name or alias earns its points, any other given industry the default.
    codes, names = _distinct(_column(leads, "industry", "string"))
    lookup = _industry_lookup(tuple(rules.industry_points), tuple(rules.industry_aliases.items()))
    listed = [lookup.get(key) for key in _industry_keys(names.tolist())]
    points = [_tenths(rules.industry_points[n]) if n else _tenths(rules.industry_default) for n in listed]
    industry_t = _take(points, codes, 0, dtype=np.int64)
    labels = [_part(f"industry {name or 'other'}", p) for name, p in zip(listed, points, strict=True)]
    industry_x = _parts_by_code(labels, codes)
    industry_given = codes >= 0

    # Size: the enriched head count is a measurement and the typed size a guess, so the count wins.
    band = _band_numbers(_column(leads, "employee_count", "Int64"))
    unknown = band == _UNKNOWN_BAND
    if unknown.any():
        band = np.where(unknown, _band_numbers(_column(leads, "company_size", "string")), band)
    band_points = [_tenths(rules.size_points.get(b, 0)) for b in SIZE_BANDS]
    size_t = np.asarray(band_points, dtype=np.int64)[band]
    size_x = [_part(f"{b} employees", p) for b, p in zip(SIZE_BANDS, band_points, strict=True)], band

    codes, countries = _distinct(_column(leads, "country", "string"))
    countries = [c.upper() for c in countries.tolist()]
    default = _tenths(rules.country_default)
    points = [_tenths(rules.country_points[c]) if c in rules.country_points else default for c in countries]
    country_t = _take(points, codes, 0, dtype=np.int64)
    country_x = _parts_by_code([_part(f"country {c}", p) for c, p in zip(countries, points, strict=True)], codes)

    seniority = _seniority_numbers(_column(leads, "job_title", "string"))
    level_points = [_tenths(rules.seniority_points.get(level, 0)) for level in SENIORITY_LEVELS]
    seniority_t = np.asarray(level_points, dtype=np.int64)[seniority]
    seniority_x = [_part(lv, p) for lv, p in zip(SENIORITY_LEVELS, level_points, strict=True)], seniority

    # Email: the batch's free-mail flag wins, else the domain decides; without a domain there are no email points.
    domain = _column(leads, "email_domain", "string").astype(_TEXT).str.strip()
    if "email" in leads.columns:
        domain = domain.fillna(leads["email"].astype(_TEXT).str.extract("@([^@]+)$", expand=False).str.strip())
    codes, domains = _distinct(domain)
    has_domain = codes >= 0
    derived = _take(is_free_mail(domains).to_numpy(dtype=bool), codes, False, dtype=bool)
    stated = _yes_no(_column(leads, "is_free_mail", "boolean")).to_numpy(dtype=object, na_value=None)
    free = np.where(pd.isna(stated), derived, stated).astype(bool)
    work_t = np.where(has_domain & ~free, _tenths(rules.work_email_points), 0)
    free_t = np.where(has_domain & free, _tenths(rules.free_mail_points), 0)
    work_x = _parts_by_flag(work_t > 0, _part("work email", _tenths(rules.work_email_points)))
    free_x = _parts_by_flag(free_t > 0, _part("free mail", _tenths(rules.free_mail_points)))

    fit_unknown = ~industry_given & (band == _UNKNOWN_BAND) & (seniority == _UNKNOWN_LEVEL)
    return (
        [industry_t, size_t, country_t, seniority_t, work_t, free_t],
        [industry_x, size_x, country_x, seniority_x, work_x, free_x],
        seniority,
        fit_unknown,
    )


def _plural(count: int, noun: str) -> str:
    """'1 download', '3 downloads'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _intent(leads: pd.DataFrame, rules: IntentRules, as_of: pd.Timestamp) -> tuple[list[np.ndarray], list[Parts]]:
    """Intent points and explanation parts per rule."""
    demo = _yes_no(_column(leads, "demo_requested", "boolean")).fillna(False).to_numpy(dtype=bool)
    demo_t = np.where(demo, _tenths(rules.demo_request_points), 0)
    demo_x = _parts_by_flag(demo_t > 0, _part("demo request", _tenths(rules.demo_request_points)))

    visits = _counts(_column(leads, "pricing_page_visits", "Int64"))
    pricing_t = np.minimum(visits * _tenths(rules.pricing_visit_points), _tenths(rules.pricing_visits_cap))
    pricing_x = _parts_by_value(visits, pricing_t, lambda n: _plural(n, "pricing visit"))

    views = _counts(_column(leads, "page_views", "Int64"))
    steps = rules.page_view_steps[::-1]
    views_t = np.select([views >= s.min_views for s in steps], [_tenths(s.points) for s in steps], 0)
    views_t = views_t.astype(np.int64)
    views_x = _parts_by_value(views, views_t, lambda n: _plural(n, "page view"))

    downloads = _counts(_column(leads, "content_downloads", "Int64"))
    downloads_t = np.minimum(downloads * _tenths(rules.download_points), _tenths(rules.downloads_cap))
    downloads_x = _parts_by_value(downloads, downloads_t, lambda n: _plural(n, "download"))

    # Recency halves every half-life; a touch stamped after as_of (clock skew) counts as now. exp2 is the one
    # libm call here: its result is rounded to tenths at once, so platforms agree unless it lands on a half tenth.
    touched = parse_timestamps(_column(leads, "last_touch_at", "datetime64[ns, UTC]"))
    age_days = ((as_of - touched).dt.total_seconds() / 86_400).to_numpy(dtype="float64", na_value=np.nan)
    decayed = _tenths(rules.recency_points) * np.exp2(-np.maximum(age_days, 0.0) / rules.recency_half_life_days)
    recency_t = np.where(np.isnan(decayed), 0, np.floor(np.nan_to_num(decayed) + 0.5)).astype(np.int64)
    recency_x = _parts_by_value(recency_t, recency_t, lambda _: "recent")

    # Message: each topic counts once, whichever of its phrases occur; the bit mask names the topics found.
    topics = rules.message_topics
    mask = np.zeros(len(leads), dtype=np.int64)
    if topics:
        message = _column(leads, "message", "string").astype(_TEXT).str.lower()
        patterns = _topic_patterns(tuple(tuple(t.phrases) for t in topics))
        for bit, pattern in enumerate(patterns):
            hit = message.str.contains(pattern, regex=True).to_numpy(dtype=bool, na_value=False)
            mask = mask | (hit.astype(np.int64) << bit)
    topic_t = np.asarray([_tenths(t.points) for t in topics], dtype=np.int64)
    bits = (mask[:, None] >> np.arange(len(topics))) & 1
    message_t = np.minimum(bits @ topic_t, _tenths(rules.message_cap))
    message_x = _parts_by_value(
        mask, message_t, lambda m: "message: " + ", ".join(t.name for i, t in enumerate(topics) if m >> i & 1)
    )

    return (
        [demo_t, pricing_t, views_t, downloads_t, recency_t, message_t],
        [demo_x, pricing_x, views_x, downloads_x, recency_x, message_x],
    )


def _string_array(parts: Parts) -> pd.api.extensions.ExtensionArray:
    """A pandas string array (NA-aware, Arrow-backed) of each row's text."""
    return pd.arrays.ArrowStringArray(_strings(parts))


def score_leads(leads: pd.DataFrame, policy: ScoringPolicy, as_of: pd.Timestamp) -> pd.DataFrame:
    """Fit, intent and total score, tier, seniority and a readable explanation for each lead of a batch."""
    # Positional work: duplicate or unordered labels in the caller's index cannot change any result.
    original_index = leads.index
    leads = leads.reset_index(drop=True)
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")

    fit_parts, fit_text, seniority, fit_unknown = _fit(leads, policy.fit)
    intent_parts, intent_text = _intent(leads, policy.intent, as_of)
    fit_t, fit_raw = _sum(fit_parts, _tenths(policy.fit_cap))
    intent_t, intent_raw = _sum(intent_parts, _tenths(policy.intent_cap))

    high_fit = fit_t >= _tenths(policy.high_fit)
    high_intent = intent_t >= _tenths(policy.high_intent)
    # A low fit score without industry, size or seniority means "we don't know", not "bad fit": with high intent
    # such a lead is tier_4, for a human to research, instead of sinking into tier_3.
    tier = np.select([high_fit & high_intent, high_fit, high_intent & fit_unknown], [0, 1, 3], 2)

    explanation = pc.binary_join_element_wise(
        _heads("fit", fit_t, fit_raw), pa.scalar(": "), _body(fit_text), pa.scalar("; "),
        _heads("intent", intent_t, intent_raw), pa.scalar(": "), _body(intent_text), "",
    )
    n = len(leads)
    return pd.DataFrame(
        {
            "fit_score": fit_t / 10,
            "intent_score": intent_t / 10,
            "score": (fit_t + intent_t) / 10,
            "tier": _string_array((list(TIERS), tier)),
            "seniority": _string_array((list(SENIORITY_LEVELS), seniority)),
            "explanation": pd.arrays.ArrowStringArray(explanation),
            "policy_version": _string_array(([policy.version], np.zeros(n, dtype=np.int64))),
        },
        index=original_index,
    )
