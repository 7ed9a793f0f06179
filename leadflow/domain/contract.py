"""The intake data contract: canonical columns, header aliases, field limits and reason codes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

REQUIRED_COLUMNS: tuple[str, ...] = ("email", "submitted_at", "source")
OPTIONAL_COLUMNS: tuple[str, ...] = (
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

# Header spellings seen in real exports (HubSpot, Salesforce, Marketo, Typeform, event apps), after
# folding to snake case. Anything not listed stays as an extra column in the raw payload.
COLUMN_ALIASES: dict[str, str] = {
    **{a: "email" for a in ("e_mail", "email_address", "emailaddress", "mail", "work_email", "business_email",
                            "contact_email", "email_id")},
    **{a: "submitted_at" for a in ("submitted", "submission_date", "submitted_on", "created_at", "created_date",
                                   "create_date", "created", "timestamp", "date", "date_submitted", "time",
                                   "conversion_date", "registration_date", "lead_created_date")},
    **{a: "source" for a in ("lead_source", "channel", "original_source", "lead_channel")},
    **{a: "external_id" for a in ("id", "lead_id", "record_id", "submission_id", "response_id", "entry_id",
                                  "registration_id", "contact_id")},
    **{a: "first_name" for a in ("firstname", "first", "given_name", "forename")},
    **{a: "last_name" for a in ("lastname", "last", "surname", "family_name")},
    **{a: "phone" for a in ("phone_number", "telephone", "tel", "mobile", "mobile_phone", "phone_no",
                            "business_phone", "work_phone")},
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
}

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


class ColumnMapError(ValueError):
    """A column map file that cannot be used."""


def fold_header(name: object) -> str:
    """Fold a header to snake case so that `E-Mail Address ` and `email_address` compare equal."""
    text = str(name).replace("\ufeff", "").strip().lower()
    text = re.sub(r"[^0-9a-z]+", "_", text)
    return text.strip("_")


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


def resolve_columns(headers: list[str], column_map: Mapping[str, str] | None = None) -> dict[str, str]:
    """Decide which input header feeds which canonical column: explicit map first, then names, then aliases."""
    explicit = {fold_header(k): v for k, v in (column_map or {}).items()}
    resolved: dict[str, str] = {}
    taken: set[str] = set()
    for rank in ("explicit", "exact", "alias"):
        for header in headers:
            if header in resolved:
                continue
            folded = fold_header(header)
            target = {
                "explicit": explicit.get(folded),
                "exact": folded if folded in CANONICAL_COLUMNS else None,
                "alias": COLUMN_ALIASES.get(folded),
            }[rank]
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
