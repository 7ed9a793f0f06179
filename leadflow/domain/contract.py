"""The intake data contract: canonical columns, header aliases, field limits and reason codes."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

# A row without a channel gets the file's --source-name, else UNKNOWN_SOURCE: `source` is never required.
REQUIRED_COLUMNS: tuple[str, ...] = ("email", "submitted_at")
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "source",
    "external_id",
    "first_name",
    "last_name",
    "phone",
    "job_title",
    "country",
    "company",
    "website",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "message",
    "email_opt_in",
    "page_views",
    "pricing_page_visits",
    "demo_requested",
    "content_downloads",
    "company_size",
    "industry",
    "ip_address",
    "form_fill_seconds",
    "honeypot",
    # The person's name in one field (split into first and last by the intake), and a second phone to try.
    "full_name",
    "mobile_phone",
    # The exporting CRM's own state of the lead: kept, not thrown away (see the real-exports issue).
    "lead_status",
    "lifecycle_stage",
    "owner",
    "converted",
    "email_opt_out",
    "do_not_contact",
)
CANONICAL_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

UNKNOWN_SOURCE = "unknown"
# The raw field that `--submitted-at` adds to every row of a file without times: it stays in each submission's
# raw payload, so a submission dated by the option can be told from one dated by its file.
SUBMITTED_AT_OPTION_FIELD = "submitted_at_from_option"

# Header spellings seen in real exports (HubSpot, Salesforce, Marketo, Typeform, event apps), after
# folding to snake case (camelCase split, see fold_header). Tool-specific spellings live in the export profiles
# (leadflow/config/profiles/); anything matched by neither stays as an extra column in the raw payload.
COLUMN_ALIASES: dict[str, str] = {
    **{a: "email" for a in ("e_mail", "email_address", "emailaddress", "mail", "work_email", "business_email",
                            "contact_email", "email_id", "e_mail_address")},
    **{a: "submitted_at" for a in ("submitted", "submission_date", "submitted_on", "created_at", "created_date",
                                   "create_date", "created", "timestamp", "date", "date_submitted", "time",
                                   "conversion_date", "registration_date", "lead_created_date", "created_time",
                                   "date_created", "creation_date", "created_on", "createdon", "submit_date",
                                   "submitted_time", "signup_date", "sign_up_date", "signed_up", "signed_up_at",
                                   "optin_time", "opt_in_date", "order_date", "registered_at", "date_added")},
    **{a: "source" for a in ("lead_source", "channel", "original_source", "lead_channel", "leadsource",
                             "source_name", "origin")},
    **{a: "external_id" for a in ("id", "lead_id", "record_id", "submission_id", "response_id", "entry_id",
                                  "registration_id", "contact_id", "leadid", "contactid")},
    **{a: "first_name" for a in ("firstname", "first", "given_name", "forename")},
    **{a: "last_name" for a in ("lastname", "last", "surname", "family_name")},
    **{a: "full_name" for a in ("name", "fullname", "contact_name", "person_name", "attendee_name", "your_name")},
    **{a: "phone" for a in ("phone_number", "telephone", "tel", "phone_no", "business_phone", "work_phone",
                            "office_phone", "telephone_number")},
    **{a: "mobile_phone" for a in ("mobile", "mobile_number", "cell", "cell_phone", "cellphone", "mobilephone",
                                   "mobile_phone_number", "cell_phone_number")},
    **{a: "job_title" for a in ("title", "jobtitle", "position", "role", "job_role")},
    **{a: "country" for a in ("country_region", "country_name", "country_code", "nation")},
    **{a: "company" for a in ("company_name", "organization", "organisation", "account_name", "employer",
                              "business_name")},
    **{a: "website" for a in ("website_url", "company_website", "url", "web_site", "domain", "company_domain")},
    **{a: "message" for a in ("comments", "comment", "notes", "how_can_we_help", "inquiry", "enquiry",
                              "question", "description")},
    **{a: "email_opt_in" for a in ("opt_in", "optin", "marketing_consent", "consent", "subscribe",
                                   "newsletter_opt_in", "gdpr_consent")},
    **{a: "company_size" for a in ("employees", "number_of_employees", "employee_count", "headcount",
                                   "no_of_employees")},
    **{a: "industry" for a in ("vertical", "sector")},
    **{a: "ip_address" for a in ("ip", "ipaddress", "client_ip")},
    **{a: "demo_requested" for a in ("request_demo", "demo_request", "wants_demo")},
    # Set by `--submitted-at` (and kept in backfill's window inputs): the time every row of a file without times gets.
    SUBMITTED_AT_OPTION_FIELD: "submitted_at",
    **{a: "lead_status" for a in ("status", "leadstatus", "hs_lead_status")},
    **{a: "lifecycle_stage" for a in ("lifecyclestage", "lifecycle")},
    **{a: "owner" for a in ("lead_owner", "contact_owner", "owner_name", "assigned_to", "sales_rep", "salesperson",
                            "account_owner", "record_owner", "owner_id", "ownerid", "assigned_user", "owner_email")},
    **{a: "converted" for a in ("is_converted", "isconverted")},
    **{a: "email_opt_out" for a in ("has_opted_out_of_email", "unsubscribed", "opted_out", "opt_out",
                                    "unsubscribed_from_emails", "do_not_email", "email_unsubscribed")},
    **{a: "do_not_contact" for a in ("donotcontact", "do_not_call")},
}

# How a header folds further when neither its own spelling nor an alias names a column: numbered copies
# (`Email 1`, `Phone 2`, Dynamics' `emailaddress1`), address and role prefixes (`Primary Address Country`,
# `Shipping Country`) and wordy suffixes (`Mobile Phone Number`). Only tried after every exact and alias match.
HEADER_PREFIXES: tuple[str, ...] = (
    "primary", "secondary", "shipping", "billing", "mailing", "postal", "business", "work", "home", "office",
    "personal", "contact", "lead", "person", "your", "address", "main", "default", "other", "customer", "attendee",
    "buyer", "respondent", "user", "member",
)
HEADER_SUFFIXES: tuple[str, ...] = ("number", "no", "nr", "address", "name", "text", "value", "utc")

# Raw field limits: what the CRM columns can hold, so a row never fails at the database instead
# (tests/crm/test_schema_contract.py holds them equal to the schema's column lengths).
FIELD_LIMITS: dict[str, int] = {
    "email": 320,
    "source": 64,
    "external_id": 200,
    "first_name": 200,
    "last_name": 200,
    "job_title": 200,
    "company": 300,
    "company_size": 100,
    "industry": 100,
    "utm_source": 200,
    "utm_medium": 200,
    "utm_campaign": 200,
    "phone": 64,
    "country": 100,
    "website": 2_000,
    "ip_address": 64,
    "honeypot": 1_000,
    "message": 10_000,
}

# How a new submission merges into a known lead (see Store.upsert_leads): details follow the newest non-empty
# value, intent counters keep the highest value ever seen.
MERGED_DETAILS = ("email_domain", "first_name", "last_name", "phone", "job_title", "country", "company",
                  "company_key", "company_domain", "company_size", "industry", "email_opt_in")
MAX_COUNTERS = ("page_views", "pricing_page_visits", "content_downloads", "demo_requested")


class ReasonCode:
    """Why a row was quarantined; stored comma-separated in `quarantine.reason_codes`."""

    MISSING_EMAIL = "missing_email"
    INVALID_EMAIL = "invalid_email"
    MISSING_SUBMITTED_AT = "missing_submitted_at"
    INVALID_SUBMITTED_AT = "invalid_submitted_at"
    FUTURE_SUBMITTED_AT = "future_submitted_at"
    MISSING_SOURCE = "missing_source"
    FIELD_TOO_LONG = "field_too_long"
    # The row's address belongs to a person erased on request (person_erasures): kept without its payload.
    ERASED_PERSON = "erased_person"
    # The database refused one of the row's values even after normalizing (`db_refused:<SQLSTATE>` on PostgreSQL).
    DB_REFUSED = "db_refused"


class FieldWarning:
    """A value of an accepted row that could not be parsed: kept raw in the payload and counted, never quarantined."""

    PHONE_UNPARSED = "phone_unparsed"
    COUNTRY_UNKNOWN = "country_unknown"
    NAME_UNPARSED = "name_unparsed"


class ColumnMapError(ValueError):
    """A column map file that cannot be used."""


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def fold_header(name: object) -> str:
    """Fold a header to snake case: `E-Mail Address `, `email_address` and `EmailAddress` compare equal.

    camelCase is split (`CreatedDate` -> created_date, `NumberOfEmployees` -> number_of_employees), an all-caps
    header is not (`OPTIN_TIME` -> optin_time), `#` reads as number (`Order #` -> order_number), and any run of
    punctuation or spaces becomes one underscore.
    """
    text = str(name).replace("\ufeff", "").strip()
    # `Order #`, `Phone #`: the sign is the word number (else `#` alone would fold to nothing).
    text = _CAMEL_BOUNDARY.sub("_", text.replace("#", " number ")).lower()
    text = re.sub(r"[^0-9a-z]+", "_", text)
    return text.strip("_")


def header_variants(folded: str) -> list[str]:
    """Looser spellings of a folded header, most specific first: without numbering, prefixes and suffixes."""
    variants: list[str] = []

    def add(value: str) -> None:
        if value and value != folded and value not in variants:
            variants.append(value)

    bare = re.sub(r"_?[0-9]+$", "", folded)
    add(bare)
    words = bare.split("_")
    # Strip leading prefixes one at a time (`primary_address_country` -> `address_country` -> `country`).
    start = 0
    while start < len(words) - 1 and words[start] in HEADER_PREFIXES:
        start += 1
        add("_".join(words[start:]))
    for first in range(start + 1):
        rest = words[first:]
        if len(rest) > 1 and rest[-1] in HEADER_SUFFIXES:
            add("_".join(rest[:-1]))
    return variants


def load_column_map(path: str | Path) -> dict[str, str]:
    """Read a JSON (or YAML) file mapping export headers to canonical column names."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ColumnMapError(f"cannot read column map {file}: {exc.strerror or exc}") from exc
    try:
        if file.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            mapping = yaml.safe_load(text)
        else:
            mapping = json.loads(text)
    except Exception as exc:
        raise ColumnMapError(f"column map {file} is not valid {file.suffix.lstrip('.') or 'JSON'}: {exc}") from exc
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ColumnMapError(f"column map {file} must be an object of header -> canonical column")
    unknown = sorted(set(mapping.values()) - set(CANONICAL_COLUMNS))
    if unknown:
        raise ColumnMapError(f"column map {file} names unknown canonical columns: {', '.join(unknown)}")
    return mapping


def _name_match(folded: str, aliases: Mapping[str, str]) -> str | None:
    if folded in CANONICAL_COLUMNS:
        return folded
    return aliases.get(folded)


def resolve_columns(headers: list[str], column_map: Mapping[str, str] | None = None,
                    profile_aliases: Mapping[str, str] | None = None,
                    profile_ignored: Collection[str] = ()) -> dict[str, str]:
    """Decide which input header feeds which canonical column.

    In order: the explicit column map, a profile's own spellings (`profile_aliases`, headers as the tool writes
    them), canonical names, generic aliases, then the looser variants of each header (numbering, prefixes,
    suffixes; see header_variants). Each canonical column takes the first header that claims it, in file order.
    Headers a profile ignores (a tool's `Attendee Status` is no lead status) only an explicit map can use.
    """
    explicit = {fold_header(k): v for k, v in (column_map or {}).items()}
    ignored = {fold_header(h) for h in profile_ignored}
    by_profile = {fold_header(k): v for k, v in (profile_aliases or {}).items()}
    folded = {header: fold_header(header) for header in headers}
    variants = {header: header_variants(name) for header, name in folded.items()}

    def loose(header: str) -> str | None:
        for variant in variants[header]:
            target = by_profile.get(variant) or _name_match(variant, COLUMN_ALIASES)
            if target:
                return target
        return None

    ranks = (
        lambda h: explicit.get(folded[h]),
        lambda h: by_profile.get(folded[h]),
        lambda h: folded[h] if folded[h] in CANONICAL_COLUMNS else None,
        lambda h: COLUMN_ALIASES.get(folded[h]),
        loose,
    )
    resolved: dict[str, str] = {}
    taken: set[str] = set()
    for rank in ranks:
        for header in headers:
            if header in resolved or (rank is not ranks[0] and folded[header] in ignored):
                continue
            target = rank(header)
            if target and target not in taken:
                resolved[header] = target
                taken.add(target)
    return resolved


def to_canonical(frame: pd.DataFrame, mapping: Mapping[str, str]) -> pd.DataFrame:
    """A frame with canonical column names; unmapped columns are dropped here and live on in the raw payload."""
    out = frame[list(mapping)].rename(columns=dict(mapping))
    for column in CANONICAL_COLUMNS:
        if column not in out.columns:
            out[column] = pd.Series(pd.NA, index=out.index, dtype="string")
    return out


def closest_headers(column: str, headers: list[str], limit: int = 3, cutoff: float = 60.0) -> list[str]:
    """The headers that look most like a canonical column or one of its aliases (fuzzy, best first)."""
    from rapidfuzz import fuzz

    names = [column, *(alias for alias, target in COLUMN_ALIASES.items() if target == column)]
    scored = []
    for header in headers:
        folded = fold_header(header)
        if not folded:
            continue
        score = max(fuzz.ratio(folded, name) for name in names)
        if score >= cutoff:
            scored.append((-score, header))
    return [header for _, header in sorted(scored)[:limit]]


def missing_columns_message(headers: list[str], mapping: Mapping[str, str], default_source: str | None = None,
                            max_headers: int = 30) -> str:
    """One line for a file that lacks a required column: its headers, the near misses and the option that fixes it.

    Empty when nothing required is missing. Names headers only, never values.
    """
    provided = set(mapping.values())
    missing = [c for c in REQUIRED_COLUMNS if c not in provided]
    if not missing:
        return ""
    shown = ", ".join(repr(h) for h in headers[:max_headers]) or "none"
    if len(headers) > max_headers:
        shown += f", ... ({len(headers)} in all)"
    free = [h for h in headers if h not in mapping]
    near = {column: closest_headers(column, free) for column in missing}
    closest = "; ".join(f"{c} ~ {', '.join(repr(h) for h in near[c]) or 'nothing close'}" for c in missing)
    fixes = []
    if "email" in missing:
        fixes.append("leadflow keys people by email: " + (
            "name the file's email header with --column-map FILE (a JSON object header -> email)" if near["email"]
            else "a file without any email column cannot be imported (if one is misnamed, --column-map FILE "
                 "maps it: header -> email)"))
    if "submitted_at" in missing:
        fixes.append("name the file's time header with --column-map FILE (header -> submitted_at), or, for a file "
                     "without times, date every row with --submitted-at now|ISO-TIME")
    if "source" not in provided and not default_source:
        fixes.append(f"(rows without a channel get '{UNKNOWN_SOURCE}'; --source-name NAME names it)")
    return (f"no column for {', '.join(missing)} (the file's headers: {shown}); closest: {closest}; fix: "
            + "; ".join(fixes))


def resolve_submitted_at(value: str | None, now: datetime | None = None) -> str | None:
    """The ISO UTC time `--submitted-at now|ISO-TIME` stands for; raises ValueError for anything else."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    if text.lower() == "now":
        moment = now or datetime.now(UTC)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"--submitted-at takes now or an ISO time such as 2025-03-01T09:00:00+00:00, "
                             f"not {text!r}") from None
        if moment.tzinfo is None:
            raise ValueError(f"--submitted-at {text!r} needs a time zone, for example {text}+00:00")
    return moment.astimezone(UTC).isoformat()
