"""Regenerate the demo files in leadflow/data: sample leads, a CRM export and its column map.

Run `python bench/make_sample.py`; the output is byte-for-byte the same on every run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or as a module alike

from generate import CANONICAL_COLUMNS, COUNTRIES, SOURCE_SPELLINGS, STRING, generate_leads

DATA_DIR = Path(__file__).resolve().parent.parent / "leadflow" / "data"
SAMPLE_SEED = 2024
CRM_SEED = 4711

# Hand-written rows, each showing one case the pipeline must handle; keys left out are empty.
HAND_ROWS: list[dict[str, str]] = [
    # The same person twice: web form, then a webinar a week later with the address typed differently.
    {
        "email": "  JANE.DOE@Example.COM ", "submitted_at": "2025-03-04T09:15:00Z", "source": "Web Form",
        "external_id": "wf-900001", "first_name": "Jane", "last_name": "Doe", "phone": "+1 (415) 555-0134",
        "job_title": "VP Sales", "country": "US", "company": "Example Corp.",
        "website": "https://www.example.com/",
        "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "brand_search",
        "message": "Could you send pricing for 40 seats? We need to decide this quarter.",
        "email_opt_in": "yes",
        "page_views": "14", "pricing_page_visits": "3", "demo_requested": "no", "content_downloads": "1",
        "company_size": "201-500", "industry": "Software",
        "ip_address": "203.0.113.10", "form_fill_seconds": "48.2",
    },
    {
        "email": "jane.doe@example.com", "submitted_at": "2025-03-11T17:00:00+01:00", "source": "webinar",
        "external_id": "wb-900002", "first_name": "jane", "last_name": "DOE",
        "job_title": "Vice President, Sales",
        "country": "USA", "company": "Example Corporation", "website": "example.com", "utm_source": "webinar",
        "utm_medium": "email", "utm_campaign": "webinar_ai_scoring", "email_opt_in": "TRUE",
        "page_views": "22",
        "pricing_page_visits": "5", "demo_requested": "yes", "content_downloads": "2",
        "ip_address": "203.0.113.10",
    },
    # Markup in free text must come out as text, never as markup.
    {
        "email": "mallory@example.net", "submitted_at": "2025-04-01T08:00:00Z", "source": "web_form",
        "external_id": "wf-900003", "first_name": "<script>alert(1)</script>", "last_name": "Hacker",
        "message": "<img src=x onerror=alert(2)>", "form_fill_seconds": "12.5", "ip_address": "198.51.100.7",
    },
    {
        "submitted_at": "2025-02-14T10:00:00Z", "source": "event", "external_id": "ev-900004",
        "first_name": "Nomail", "last_name": "Person", "company": "Initech Inc.",
        "job_title": "Office Manager",
    },
    {
        "email": "time.traveller@example.org", "submitted_at": "2099-01-01T00:00:00Z", "source": "referral",
        "first_name": "Marty", "last_name": "McFly", "company": "Hill Valley High",
    },
    {
        "email": "emma.stone@hooli.com", "submitted_at": "2025-06-18T13:45:10Z", "source": "live_chat",
        "external_id": "lc-900006", "first_name": "Emma", "last_name": "Stone", "company": "Hooli",
        "website": "hooli.com", "job_title": "Head of Growth", "country": "United States",
        "message": "Love the product 🚀🔥 — can we get a demo next week? 👍", "demo_requested": "1",
    },
    {
        "email": "juergen.mueller@globex.de", "submitted_at": "2025-05-06 14:30:00", "source": "Web Form",
        "external_id": "wf-900007", "first_name": "Jürgen", "last_name": "Müller-Lüdenscheidt",
        "phone": "030 1234567", "job_title": "Geschäftsführer", "country": "Deutschland",
        "company": "Globex GmbH",
        "website": "www.globex.de",
        "message": "Wir möchten ein Angebot für 50 Nutzer erhalten. Grüße aus München "
        "- bitte bis Ende des Quartals.", "email_opt_in": "yes", "company_size": "201-500",
        "industry": "Software",
    },
    # Spam that passes every contract check: the cleanup flow has to catch it.
    {
        "email": "winner123@mailinator.com", "submitted_at": "2025-07-07T03:12:00Z", "source": "web_form",
        "external_id": "wf-900008", "first_name": "Cheap SEO http://seo-boost.example",
        "last_name": "Services",
        "message": "Best prices!!! http://seo-boost.example", "form_fill_seconds": "0.4",
        "honeypot": "http://spam.example", "ip_address": "192.0.2.66",
    },
    {"email": "a@@b.com", "submitted_at": "2025-01-20T11:00:00Z", "source": "google_ads", "first_name": "Al"},
    {"email": "bo@example.com", "submitted_at": "yesterday", "source": "linkedin_ads", "first_name": "Bo"},
    {"email": "no.source@example.com", "submitted_at": "2025-08-01T12:00:00Z", "first_name": "Lost"},
    # Month-first US date: 5 March, not 3 May.
    {
        "email": "lukas.weber@acme.com", "submitted_at": "03/05/2024 10:00", "source": "Google Ads",
        "first_name": "Lukas", "last_name": "Weber", "company": "ACME CORPORATION", "country": "us",
        "website": "WWW.ACME.COM", "job_title": "director of it", "company_size": "1000+",
    },
    {
        "email": "taro.yamada@umbrella.co.uk", "submitted_at": "1709632800", "source": "partner",
        "external_id": "pt-900013", "first_name": "太郎", "last_name": "山田", "country": "gb",
        "company": "Umbrella Ltd", "phone": "0044 20 7946 0958", "job_title": "CTO",
    },
    # Quotes, commas and a line break inside one field.
    {
        "email": "zoe.obrien@starkindustries.com", "submitted_at": "2025-09-09T09:09:09-05:00",
        "source": "email_campaign", "external_id": "em-900014", "first_name": "Zoë", "last_name": "O'Brien",
        "company": "Stark Industries",
        "message": 'He said "call me, maybe"\nthen left. Call after 5pm, please.',
        "page_views": "99999", "pricing_page_visits": "abc",
    },
    # Non-breaking spaces pasted from an e-mail signature.
    {
        "email": "\u00a0bob.smith@wayne-enterprises.com\u00a0", "submitted_at": "2025-10-10T10:10:10Z",
        "source": "organic_search", "first_name": "Bob", "last_name": "Smith", "company": "Wayne Enterprises",
    },
]  # fmt: skip
DUPLICATE_OF = "lc-900006"  # re-delivered verbatim, as a retried webhook would

CRM_COLUMNS: dict[str, str] = {
    "Email Address": "email",
    "Created Date": "submitted_at",
    "Lead Source": "source",
    "First Name": "first_name",
    "Last Name": "last_name",
    "Company Name": "company",
    "Phone Number": "phone",
    "Job Title": "job_title",
    "Country/Region": "country",
    "Website URL": "website",
    "Lead ID": "external_id",
}
CRM_SOURCE_LABELS = {
    "web_form": "Web Form", "live_chat": "Live Chat", "event": "Event", "linkedin_ads": "LinkedIn Ads",
    "google_ads": "Google Ads", "organic_search": "Organic Search", "webinar": "Webinar",
    "referral": "Referral", "email_campaign": "Email Campaign", "partner": "Partner",
}  # fmt: skip
CRM_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Qualified", "Unqualified")
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def sample_leads() -> pd.DataFrame:
    """Generated leads plus the hand-written cases, in canonical columns."""
    generated = generate_leads(400, seed=SAMPLE_SEED)
    hand = [*HAND_ROWS, next(row for row in HAND_ROWS if row.get("external_id") == DUPLICATE_OF)]
    extra = pd.DataFrame([{c: row.get(c) for c in CANONICAL_COLUMNS} for row in hand]).astype(STRING)
    return pd.concat([generated, extra], ignore_index=True)


def parse_generated_times(values: pd.Series) -> pd.Series:
    """UTC instants of the timestamp layouts the generator writes."""
    text = values.str.strip()
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    for layout in ("%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M"):
        parsed = parsed.fillna(pd.to_datetime(text, format=layout, utc=True, errors="coerce"))
    epoch = pd.to_numeric(text.where(text.str.fullmatch(r"\d{9,11}").fillna(False)), errors="coerce")
    return parsed.fillna(pd.to_datetime(epoch, unit="s", utc=True))


def crm_export() -> pd.DataFrame:
    """Clean-ish leads as a CRM exports them: its own headers, picklist values, day-first dates."""
    leads = generate_leads(60, seed=CRM_SEED, bad_fraction=0.0, repeat_fraction=0.1)
    rng = np.random.default_rng(CRM_SEED)
    spelled = {s: name for name, spellings in SOURCE_SPELLINGS.items() for s in spellings}
    country_names = {s: next(x for x in c.spellings if len(x) > 3) for c in COUNTRIES for s in c.spellings}
    ids = ["00Q" + "".join(BASE62[d] for d in rng.integers(0, 62, 12)) for _ in range(len(leads))]
    out = pd.DataFrame(
        {
            "Email Address": leads["email"].str.strip(),
            "Created Date": parse_generated_times(leads["submitted_at"]).dt.strftime("%d.%m.%Y %H:%M"),
            "Lead Source": leads["source"].map(spelled).map(CRM_SOURCE_LABELS),
            "First Name": leads["first_name"].str.strip(),
            "Last Name": leads["last_name"].str.strip(),
            "Company Name": leads["company"].str.strip(),
            "Phone Number": leads["phone"].str.strip(),
            "Job Title": leads["job_title"].str.strip(),
            "Country/Region": leads["country"].map(country_names),
            "Website URL": leads["website"],
            "Lead ID": ids,
            "Lead Status": [CRM_STATUSES[i] for i in rng.integers(0, len(CRM_STATUSES), len(leads))],
        }
    )
    return out.astype(STRING)


def main() -> int:
    """Write the three sample files and report their sizes."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    targets = {
        DATA_DIR / "sample_leads.csv": lambda path: sample_leads().to_csv(
            path, index=False, lineterminator="\n"
        ),
        DATA_DIR / "sample_crm_export.csv": lambda path: crm_export().to_csv(
            path, index=False, sep=";", lineterminator="\n"
        ),
        DATA_DIR / "sample_crm_export.columns.json": lambda path: path.write_text(
            json.dumps(CRM_COLUMNS, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        ),
    }
    for path, write in targets.items():
        write(path)
        print(f"{path.relative_to(DATA_DIR.parent.parent)}: {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
