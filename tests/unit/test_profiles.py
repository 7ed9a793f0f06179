"""Export profiles and header matching: each profile recognised on a file in its tool's layout, folding tables,
errors that name the fix, `--submitted-at` and rows without a channel."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from leadflow.config.profiles import ExportProfile, ProfileError, export_profiles, load_profile_file
from leadflow.domain.contract import (
    CANONICAL_COLUMNS,
    SUBMITTED_AT_OPTION_FIELD,
    fold_header,
    missing_columns_message,
    resolve_columns,
    resolve_submitted_at,
)
from leadflow.domain.profiles import GENERIC, check_profiles, choose_profile, detect_profile
from leadflow.domain.submissions import SOURCE_FILLED_COLUMN, normalize_batch, prepare_batch
from leadflow.io.sources import iter_lead_chunks
from leadflow.steps.intake import plan_intake

EXPORTS = Path(__file__).resolve().parents[1] / "data" / "exports"


# --- header folding ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "folded"), [
    ("CreatedDate", "created_date"),
    ("LeadSource", "lead_source"),
    ("NumberOfEmployees", "number_of_employees"),
    ("HasOptedOutOfEmail", "has_opted_out_of_email"),
    ("OPTIN_TIME", "optin_time"),
    ("LEADID", "leadid"),
    ("E-Mail Address ", "e_mail_address"),
    ("\ufeffEmail", "email"),
    ("Order #", "order_number"),
    ("Submit Date (UTC)", "submit_date_utc"),
    ("Company / Account", "company_account"),
    ("emailaddress1", "emailaddress1"),
])
def test_fold_header(header, folded):
    assert fold_header(header) == folded


@pytest.mark.parametrize(("header", "column"), [
    ("CreatedDate", "submitted_at"),
    ("LeadSource", "source"),
    ("NumberOfEmployees", "company_size"),
    ("Created Time", "submitted_at"),
    ("Date Created", "submitted_at"),
    ("Order Date", "submitted_at"),
    ("OPTIN_TIME", "submitted_at"),
    ("Email 1", "email"),
    ("Phone 2", "phone"),
    ("emailaddress1", "email"),
    ("LEADID", "external_id"),
    ("Primary Address Country", "country"),
    ("Shipping Country", "country"),
    ("Mobile Phone Number", "mobile_phone"),
    ("Cell Phone", "mobile_phone"),
    ("Full Name", "full_name"),
    ("Lead Owner", "owner"),
    ("IsConverted", "converted"),
    ("HasOptedOutOfEmail", "email_opt_out"),
    ("OwnerId", "owner"),
    ("Assigned to", "owner"),
    ("CONVERTED", "converted"),
    ("Lifecycle Stage", "lifecycle_stage"),
    ("Favourite colour", None),
])
def test_generic_header_matching(header, column):
    assert resolve_columns([header]).get(header) == column


def test_exact_names_and_aliases_beat_looser_variants_and_the_first_header_wins():
    mapping = resolve_columns(["Email 2", "Work Email", "Email 1", "Shipping Country", "Country"])
    assert mapping == {"Work Email": "email", "Country": "country"}
    assert resolve_columns(["Email 1", "Email 2"]) == {"Email 1": "email"}


def test_explicit_map_beats_profile_aliases_and_ignored_headers_stay_unmapped():
    headers = ["Attendee Status", "Mail", "Order #"]
    mapping = resolve_columns(headers, {"Mail": "email"}, {"Order #": "external_id"}, ["Attendee Status"])
    assert mapping == {"Mail": "email", "Order #": "external_id"}
    assert resolve_columns(["Attendee Status"]) == {"Attendee Status": "lead_status"}


# --- the profiles themselves ------------------------------------------------------------------------------------


def test_every_shipped_profile_validates_cites_its_documentation_and_maps_onto_the_contract():
    profiles = export_profiles()
    assert len(profiles) >= 15
    check_profiles(profiles)
    for profile in profiles:
        assert all(url.startswith("https://") for url in profile.documentation)
        assert set(profile.aliases.values()) <= set(CANONICAL_COLUMNS)
        assert {"email", "submitted_at"} <= set(profile.aliases.values()), profile.name


def test_a_profile_file_that_does_not_validate_is_a_one_line_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"name": "broken", "title": "x", "documentation": ["http://insecure.example"],
                                "aliases": {"Mail": "email"}, "distinctive": ["a", "b"]}))
    with pytest.raises(ProfileError, match="is invalid"):
        load_profile_file(path)
    path.write_text(json.dumps({"name": "other", "title": "x", "documentation": ["https://x.example"],
                                "aliases": {"Mail": "email"}, "distinctive": ["a", "b"]}))
    with pytest.raises(ProfileError, match="differs from the file name"):
        load_profile_file(path)
    wrong = ExportProfile(name="wrong", title="x", documentation=["https://x.example"], aliases={"Mail": "mail"},
                          distinctive=["a", "b"])
    with pytest.raises(ProfileError, match="unknown canonical columns: mail"):
        check_profiles([wrong])


# One file per profile, written in that tool's layout: (file, profile, column -> value expected on the first row).
PROFILE_FILES = [
    ("salesforce.csv", "salesforce", {"email": "ann.lee@acme.example", "source": "Web", "owner": "0055e000001XyZaAAK",
                                      "lead_status": "Open - Not Contacted", "converted": "false",
                                      "company_size": "250", "mobile_phone": None}),
    ("salesforce_contacts_ui.csv", "salesforce", {"company": "Umbrella Ltd", "country": "Germany",
                                                  "owner": "Jo Rep", "email_opt_out": "0"}),
    ("hubspot.csv", "hubspot", {"lifecycle_stage": "Marketing Qualified Lead", "lead_status": "Open",
                                "owner": "Pat Owner", "source": "Organic Search", "country": "United States"}),
    ("zoho_crm.csv", "zoho_crm", {"owner": "Ravi Kumar", "lead_status": "Contacted", "email_opt_out": "false",
                                  "external_id": "zcrm_4876876000000358001"}),
    ("pipedrive.csv", "pipedrive", {"full_name": "Kim Yoon", "company": "Acme Two", "owner": "Mia Seller",
                                    "lead_status": "Hot"}),
    ("dynamics_365.csv", "dynamics_365", {"full_name": "Max Power", "lead_status": "New", "phone": "+1 425 555 0100",
                                          "email_opt_out": "Allow"}),
    ("suitecrm.csv", "suitecrm", {"country": "United Arab Emirates", "owner": "sally", "lead_status": "Assigned",
                                  "company": "Desert Corp", "phone": "+971 4 555 0101"}),
    ("odoo.csv", "odoo", {"full_name": "Quinn Ray", "owner": "Mitchell Admin", "lifecycle_stage": "New",
                          "utm_campaign": "Winter promo", "job_title": "Buyer"}),
    ("marketo.csv", "marketo", {"email": "sam@cole.example", "source": "Webinar", "email_opt_out": "false",
                                "lead_status": "Open - Not Contacted"}),
    ("mailchimp.csv", "mailchimp", {"email": "uma@example.org", "country": "IN", "external_id": "123456789",
                                    "ip_address": "203.0.113.7"}),
    ("eventbrite.csv", "eventbrite", {"external_id": "7890123451", "mobile_phone": "+1 646 555 0100",
                                      "lead_status": None, "country": "United States"}),
    ("typeform.csv", "typeform", {"email": "zoe@zeta.example", "first_name": "Zoe", "utm_medium": "cpc",
                                  "external_id": "q2k3j4h5g6f7d8s9a0"}),
    ("google_forms.csv", "google_forms", {"email": "bea@beta2.example", "full_name": "Bea Ray"}),
    ("linkedin_lead_gen.csv", "linkedin_lead_gen", {"email": "dev@rao.example", "utm_campaign": "Q2 CFO guide",
                                                    "job_title": "CFO", "country": "India"}),
    ("meta_lead_ads.csv", "meta_lead_ads", {"email": "finn@wolf.example", "full_name": "Finn Wolf",
                                            "utm_campaign": "Summer leads", "utm_source": "fb"}),
    ("intercom.csv", "intercom", {"full_name": "Hal Ames", "owner": "Ivy Support", "lifecycle_stage": "User",
                                  "email_opt_out": "false"}),
]
EXPECTED_SUBMITTED = {
    "salesforce.csv": "2023-04-11T14:05:00Z", "hubspot.csv": "2023-06-01T08:15:00Z",
    "zoho_crm.csv": "2023-09-18T11:20:33Z", "mailchimp.csv": "2023-02-14T09:01:02Z",
    "eventbrite.csv": "2023-03-02T10:15:00Z", "typeform.csv": "2024-04-01T10:02:31Z",
    "google_forms.csv": "2024-03-14T10:22:05Z", "meta_lead_ads.csv": "2024-06-01T19:34:56Z",
    "dynamics_365.csv": "2024-03-02T09:15:00Z", "salesforce_contacts_ui.csv": "2024-03-14T10:22:00Z",
}


def _prepared(file: str, **options) -> tuple[pd.DataFrame, object]:
    plan = plan_intake(str(EXPORTS / file), None, None, check_columns=False, **options)
    raw = next(iter_lead_chunks(plan.lead_file, 100))
    return prepare_batch(plan.stamp(raw), plan.mapping, plan.default_source), plan


def test_every_profile_has_a_file_in_its_layout():
    assert {p.name for p in export_profiles()} <= {name for _, name, _ in PROFILE_FILES}


@pytest.mark.parametrize(("file", "profile", "expected"), PROFILE_FILES, ids=[f for f, _, _ in PROFILE_FILES])
def test_profile_is_recognised_and_columns_land_right(file, profile, expected):
    prepared, plan = _prepared(file)
    assert plan.profile == profile
    assert plan.columns_checked is False  # nothing required is missing: no suite had to run up front
    first = prepared.iloc[0]
    for column, value in expected.items():
        got = first[column]
        assert (None if pd.isna(got) else got) == value, column
    # Every row is keyed and dated: each tool's own date spelling parses.
    assert prepared["_email"].notna().all()
    assert prepared["_submitted_at"].notna().all(), prepared["submitted_at"].tolist()
    if file in EXPECTED_SUBMITTED:
        assert first["_submitted_at"] == pd.Timestamp(EXPECTED_SUBMITTED[file])
    # The tool's other columns are kept in the raw payload.
    assert len(json.loads(first["_payload"])) >= len([v for v in expected.values() if v is not None])


def test_event_and_form_tools_give_their_rows_a_channel_and_source_name_overrides_it():
    prepared, plan = _prepared("eventbrite.csv")
    assert plan.default_source == "event" and prepared["_source"].unique().tolist() == ["event"]
    assert prepared[SOURCE_FILLED_COLUMN].all()
    plan = plan_intake(str(EXPORTS / "eventbrite.csv"), None, "webinar", check_columns=False)
    assert plan.default_source == "webinar"


def test_detection_falls_back_to_generic_and_profile_can_be_forced():
    assert detect_profile(["email", "submitted_at", "source"]).name == GENERIC
    # One distinctive header is not enough to claim a file.
    assert detect_profile(["Email", "OPTIN_TIME"]).name == GENERIC
    assert detect_profile(["Email Address", "OPTIN_TIME", "MEMBER_RATING"]).name == "mailchimp"
    assert choose_profile(["Email Address", "OPTIN_TIME", "MEMBER_RATING"], "generic").name == GENERIC
    forced = choose_profile(["email", "created"], "salesforce")
    assert forced.name == "salesforce" and forced.forced
    with pytest.raises(ProfileError, match="unknown export profile 'sales-force'; known profiles: generic, "):
        choose_profile(["email"], "sales-force")


def test_forcing_generic_reads_the_file_without_the_profile_spellings():
    _, plan = _prepared("eventbrite.csv", profile="generic")
    assert plan.profile == GENERIC and plan.default_source is None
    assert "Attendee #" not in plan.mapping


# --- errors that say the fix ------------------------------------------------------------------------------------


def test_missing_time_column_names_the_headers_the_near_miss_and_both_options():
    headers = ["Email", "Name", "Date Joined"]
    line = missing_columns_message(headers, resolve_columns(headers))
    assert line.startswith("no column for submitted_at (the file's headers: 'Email', 'Name', 'Date Joined')")
    assert "submitted_at ~ 'Date Joined'" in line
    assert "--column-map FILE" in line and "--submitted-at now|ISO-TIME" in line
    assert "--source-name NAME" in line and "\n" not in line


def test_missing_email_says_leadflow_keys_people_by_email():
    headers = ["Name", "Company", "Created"]
    line = missing_columns_message(headers, resolve_columns(headers), default_source="event")
    assert line.startswith("no column for email")
    assert "email ~ nothing close" in line
    assert "leadflow keys people by email: a file without any email column cannot be imported" in line
    assert "--source-name" not in line  # the file's channel is given
    near = missing_columns_message(["E-mial adress", "Created"], resolve_columns(["E-mial adress", "Created"]))
    assert "email ~ 'E-mial adress'" in near and "name the file's email header with --column-map" in near


def test_plan_intake_fails_with_that_line(tmp_path):
    from data_checks.runner import DataCheckError

    path = tmp_path / "people.csv"
    path.write_text("Email,Name\na@b.example,Ann\n", encoding="utf-8")
    with pytest.raises(DataCheckError, match="--submitted-at now\\|ISO-TIME") as failed:
        plan_intake(str(path), None, None)
    assert "'Email', 'Name'" in str(failed.value) and "a@b.example" not in str(failed.value)


# --- --submitted-at ---------------------------------------------------------------------------------------------


def test_resolve_submitted_at():
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert resolve_submitted_at("now", now) == "2026-01-02T03:04:05+00:00"
    assert resolve_submitted_at("2025-03-01T09:00:00+01:00") == "2025-03-01T08:00:00+00:00"
    assert resolve_submitted_at(None) is None and resolve_submitted_at(" ") is None
    with pytest.raises(ValueError, match="needs a time zone"):
        resolve_submitted_at("2025-03-01T09:00:00")
    with pytest.raises(ValueError, match="takes now or an ISO time"):
        resolve_submitted_at("yesterday")


def test_submitted_at_dates_every_row_is_recorded_in_the_payload_and_keys_leave_it_out(tmp_path):
    path = tmp_path / "booth.csv"
    path.write_text("Email,Name\na@b.example,Ann\nc@d.example,Cy\n", encoding="utf-8")
    first, plan = _prepared_path(path, submitted_at="2025-03-01T09:00:00+00:00")
    assert plan.mapping[SUBMITTED_AT_OPTION_FIELD] == "submitted_at"
    assert (first["_submitted_at"] == pd.Timestamp("2025-03-01T09:00:00Z")).all()
    assert json.loads(first["_payload"].iloc[0])[SUBMITTED_AT_OPTION_FIELD] == "2025-03-01T09:00:00+00:00"
    again, _ = _prepared_path(path, submitted_at="now")
    # Importing the same file again on another day finds the same submissions.
    assert normalize_batch(first)["idempotency_key"].tolist() == normalize_batch(again)["idempotency_key"].tolist()


def test_submitted_at_overrides_the_file_own_times_which_stay_in_the_payload(tmp_path):
    path = tmp_path / "dated.csv"
    path.write_text("email,submitted_at\na@b.example,2020-01-01T00:00:00Z\n", encoding="utf-8")
    prepared, _ = _prepared_path(path, submitted_at="2025-03-01T09:00:00Z")
    assert prepared["_submitted_at"].iloc[0] == pd.Timestamp("2025-03-01T09:00:00Z")
    assert json.loads(prepared["_payload"].iloc[0])["submitted_at"] == "2020-01-01T00:00:00Z"


def _prepared_path(path: Path, **options) -> tuple[pd.DataFrame, object]:
    plan = plan_intake(str(path), None, None, check_columns=False, **options)
    raw = next(iter_lead_chunks(plan.lead_file, 100))
    return prepare_batch(plan.stamp(raw), plan.mapping, plan.default_source), plan


# --- rows without a channel -------------------------------------------------------------------------------------


def test_rows_without_a_channel_get_the_source_name_else_unknown_and_are_flagged():
    raw = pd.DataFrame({"email": ["a@b.example", "c@d.example", "e@f.example"],
                        "source": pd.array(["Webinar", None, "---"], dtype="string"),
                        "_row": [1, 2, 3], "_malformed": pd.array([None] * 3, dtype="string")})
    mapping = {"email": "email", "source": "source"}
    prepared = prepare_batch(raw, mapping)
    assert prepared["_source"].tolist() == ["webinar", "unknown", "unknown"]
    assert prepared[SOURCE_FILLED_COLUMN].tolist() == [False, True, True]
    named = prepare_batch(raw, mapping, default_source="event")
    assert named["_source"].tolist() == ["webinar", "event", "unknown"]
    assert named[SOURCE_FILLED_COLUMN].tolist() == [False, True, True]


def test_backfill_split_dates_every_row_by_submitted_at_and_keeps_the_marker(tmp_path):
    from datetime import date

    from leadflow.domain.backfill import make_windows
    from leadflow.domain.contract import resolve_columns as resolve
    from leadflow.io.backfill_files import split_by_window
    from leadflow.io.sources import inspect_lead_file

    path = tmp_path / "event.csv"
    path.write_text("Email,Name\na@b.example,Ann\nc@d.example,Cy\n", encoding="utf-8")
    windows = make_windows(date(2025, 3, 1), date(2025, 3, 31), "month")
    manifest = split_by_window([path], windows, tmp_path / "work", key="k",
                               submitted_at=resolve_submitted_at("2025-03-10T12:00:00Z"))
    assert manifest.windows == {windows[0].id: 2} and manifest.undated == 0
    part = inspect_lead_file(manifest.parts[windows[0].id])
    # The window's intake maps the marker onto submitted_at, so its rows are dated and keyed as `--submitted-at` does.
    assert resolve(part.headers)[SUBMITTED_AT_OPTION_FIELD] == "submitted_at"
    assert "submitted_at" not in part.headers


def test_the_summary_names_the_profile_the_given_time_and_the_rows_without_a_channel():
    from leadflow.domain.summary import IntakeSummary

    summary = IntakeSummary(batch_id="b", origin="hubspot.csv")
    summary.note_plan("hubspot", "2025-03-01T09:00:00+00:00")
    summary.add_counts("channel_filled", {"unknown": 3})
    assert "export profile       hubspot" in summary.to_text()
    assert "without a channel    3" in summary.to_text() and "--submitted-at" in summary.to_text()
    markdown = summary.to_markdown()
    assert "export profile **hubspot**" in markdown and "| unknown | 3 |" in markdown
    assert IntakeSummary.from_dict(summary.as_dict()).profile == "hubspot"


def test_a_mailchimp_row_without_optin_time_takes_confirm_time_and_the_payload_keeps_both():
    prepared, plan = _prepared("mailchimp.csv")
    assert plan.mapping["submitted_at_coalesced"] == "submitted_at" and "OPTIN_TIME" not in plan.mapping
    imported = prepared.iloc[2]
    assert imported["_submitted_at"] == pd.Timestamp("2021-05-05T05:05:05Z")
    payload = json.loads(imported["_payload"])
    assert "OPTIN_TIME" not in payload and payload["CONFIRM_TIME"] == payload["submitted_at_coalesced"]
    assert prepared.iloc[0]["_submitted_at"] == pd.Timestamp("2023-02-14T09:01:02Z")
