"""Pure intake logic: prepare raw rows for checking, normalize them, key and aggregate submissions."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from typing import Any

import numpy as np
import pandas as pd

from leadflow.domain import crm_state
from leadflow.domain import normalize as nz
from leadflow.domain.channels import normalize_utm
from leadflow.domain.contract import (
    CANONICAL_COLUMNS,
    FIELD_LIMITS,
    MAX_COUNTERS,
    MERGED_DETAILS,
    SUBMITTED_AT_OPTION_FIELD,
    UNKNOWN_SOURCE,
    FieldWarning,
)

# A raw chunk's own columns, whatever its source (file or inbox): the input row number (a file's line, an inbox
# row's id) and the text of a row that was not an object.
ROW_COLUMN = "_row"
MALFORMED_COLUMN = "_malformed"
# Lead fields of the row that held a list or object (JSON input), comma-separated; NA for a row of plain values.
NESTED_COLUMN = "_nested"
PAYLOAD_COLUMN = "_payload"
EMAIL_COLUMN = "_email"
SUBMITTED_AT_COLUMN = "_submitted_at"
SOURCE_COLUMN = "_source"
# True where a row named no channel and got the file's --source-name (else `unknown`): counted in the summary.
SOURCE_FILLED_COLUMN = "_source_filled"
# True where the row's time came from --submitted-at: its submission key then leaves the time out, so that importing
# the same file again (`now` is another time then) finds the submissions it stored before.
TIME_GIVEN_COLUMN = "_time_given"
# 1.0 where the normalized email is valid by RFC 5321/6531, 0.0 where not, NaN without one (what the checks read).
EMAIL_VALID_COLUMN = "_email_valid"
# The intake's --default-country / LEADFLOW_DEFAULT_COUNTRY on every row: a national phone's region without a country.
DEFAULT_COUNTRY_COLUMN = "_default_country"
# Per accepted row, whether a field could not be parsed (see FieldWarning): counted in the intake summary.
WARNING_COLUMNS = {f"_{code}": code for code in (FieldWarning.PHONE_UNPARSED, FieldWarning.COUNTRY_UNKNOWN,
                                                 FieldWarning.NAME_UNPARSED)}
TEXT_COLUMNS = tuple(FIELD_LIMITS)
TOUCH_FIELDS = ("source", "utm_source", "utm_medium", "utm_campaign")
UTM_COLUMNS = ("utm_source", "utm_medium", "utm_campaign")
# Channels renamed by the channel vocabulary (2026.12) keep their former names inside idempotency keys, so a file
# imported before is recognised when imported again.
KEY_CHANNEL_NAMES = {"paid_search": "google_ads", "paid_social": "linkedin_ads"}

_CONTROL = nz.CONTROL_PATTERN


def _without_controls(value: Any) -> Any:
    """One value of a mixed column (JSON lines) without control characters, in nested lists and objects too."""
    if isinstance(value, str):
        return re.sub(_CONTROL, "", value) or None
    if isinstance(value, dict):
        return {re.sub(_CONTROL, "", str(k)): _without_controls(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_controls(v) for v in value]
    return value


def strip_control_characters(raw: pd.DataFrame) -> pd.DataFrame:
    """A raw chunk whose values hold no C0 control characters but tab and newlines, on every database alike.

    PostgreSQL refuses NUL in text and the escape of it in JSONB (one such value failed a whole chunk) where
    SQLite would store it. A value left empty is missing, like an empty field. Text columns are cleaned
    vectorized; only mixed (object) columns, which JSON lines with nested values give, value by value.
    """
    out = raw.copy(deep=False)
    for column in raw.columns:
        values = raw[column]
        if column == ROW_COLUMN:
            continue
        if isinstance(values.dtype, pd.StringDtype):
            cleaned = nz.strip_controls(values)
            if cleaned is not values:
                out[column] = cleaned.astype(values.dtype)
        elif values.dtype == object:
            nested = values.map(lambda v: isinstance(v, str | dict | list | tuple)).to_numpy(dtype=bool)
            if nested.any():
                cleaned = values.copy()
                cleaned.iloc[np.flatnonzero(nested)] = values[nested].map(_without_controls).to_numpy()
                out[column] = cleaned
    return out


def _json_values(values: pd.Series):
    """Each value as JSON text in an Arrow array (null where missing), vectorized for string columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values.dtype, pd.StringDtype):
        text = pc.cast(pa.array(values.to_numpy(dtype=object, na_value=None), type=pa.string())
                       if not hasattr(values.array, "_pa_array") else values.array._pa_array, pa.string())
        rare = pc.fill_null(pc.match_substring_regex(text, _CONTROL), False)
        if pc.any(rare).as_py():
            # Other control characters would need \u escapes, and PostgreSQL's JSONB refuses \u0000: they go
            # (prepare_batch has already removed them from the fields).
            text = pc.replace_substring_regex(text, _CONTROL, "")
        escaped = text
        for raw, json_escape in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
            escaped = pc.replace_substring(escaped, raw, json_escape)
        quoted = pc.binary_join_element_wise('"', escaped, '"', "")
        return quoted
    if pd.api.types.is_bool_dtype(values.dtype):
        mapped = values.map({True: "true", False: "false"})
    elif pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.astype("Float64")
        finite = ~numbers.isin([float("inf"), float("-inf")]).fillna(False)
        text = values.astype("string")
        mapped = text.where(finite, '"' + text + '"')
    elif isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        mapped = values.map(lambda v: json.dumps(v.isoformat()), na_action="ignore")
    else:
        mapped = values.map(lambda v: json.dumps(_without_controls(v), default=str, ensure_ascii=False),
                            na_action="ignore")
    return pa.array(mapped.astype(object).where(mapped.notna(), None).tolist(), type=pa.string())


def raw_payloads(raw: pd.DataFrame) -> pd.Series:
    """Each input row as a JSON object of its non-empty original fields, for the audit trail."""
    import pyarrow.compute as pc

    pairs = []
    for column in raw.columns:
        if column == ROW_COLUMN or not raw[column].notna().any():
            continue
        key = "," + json.dumps(re.sub(_CONTROL, "", str(column)), ensure_ascii=False) + ":"
        # A missing value makes the whole `,"key":value` pair empty, so it leaves no trace in the object.
        pairs.append(pc.fill_null(pc.binary_join_element_wise(key, _json_values(raw[column]), ""), ""))
    if not pairs:
        return pd.Series("{}", index=raw.index, dtype="string")
    body = pc.utf8_slice_codeunits(pc.binary_join_element_wise(*pairs, ""), 1) if len(pairs) > 1 else (
        pc.utf8_slice_codeunits(pairs[0], 1)
    )
    joined = pc.binary_join_element_wise("{", body, "}", "")
    return pd.Series(pd.arrays.ArrowStringArray(pc.cast(joined, "large_string")), index=raw.index)


def nested_fields(frame: pd.DataFrame) -> pd.Series:
    """Which lead field of each row holds a list or object (JSON input) instead of a value; such values are cleared.

    A lead field never stores a Python repr like `{'given': 'Ann'}`: the row is quarantined (`nested_value`, the
    fields named here) and the value lives on, as JSON, in the raw payload. Changes `frame` in place.
    """
    names = pd.Series(pd.NA, index=frame.index, dtype="string")
    for column in list(frame.columns):
        values = frame[column]
        if values.dtype != object:
            continue
        hit = values.map(lambda v: isinstance(v, dict | list | tuple)).to_numpy(dtype=bool)
        if not hit.any():
            continue
        frame[column] = values.mask(hit)
        named = names.iloc[hit]
        names.iloc[np.flatnonzero(hit)] = (named + "," + column).fillna(column).to_numpy()
    return names


def prepare_batch(raw: pd.DataFrame, mapping: dict[str, str], default_source: str | None = None,
                  fields: nz.FieldOptions | None = None) -> pd.DataFrame:
    """A raw chunk in canonical columns, with the parsed keys the checks and later steps rely on.

    `fields` carries the run's default phone region and the date order decided for the whole column.
    """
    fields = fields or nz.FieldOptions()
    raw = strip_control_characters(raw)
    present = {header: target for header, target in mapping.items() if header in raw.columns}
    frame = raw[list(present)].rename(columns=present)
    nested = nested_fields(frame)
    for column in CANONICAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.Series(pd.NA, index=frame.index, dtype="string")
    for column in TEXT_COLUMNS:
        if frame[column].dtype != "string":
            frame[column] = frame[column].astype("string")
        frame[column] = frame[column].str.strip().replace("", pd.NA)
    missing_source = frame["source"].isna().to_numpy(dtype=bool)
    if default_source:
        frame["source"] = frame["source"].fillna(default_source)
    frame[ROW_COLUMN] = raw[ROW_COLUMN]
    frame[MALFORMED_COLUMN] = raw[MALFORMED_COLUMN].astype("string")
    frame[NESTED_COLUMN] = nested
    frame[PAYLOAD_COLUMN] = raw_payloads(raw)
    frame[EMAIL_COLUMN] = nz.normalize_email(frame["email"])
    emails = nz.email_checks(frame[EMAIL_COLUMN])
    frame[EMAIL_VALID_COLUMN] = emails["valid"].astype("float64").where(frame[EMAIL_COLUMN].notna().to_numpy())
    frame["_email_smtputf8"] = emails["smtputf8"]
    frame[SUBMITTED_AT_COLUMN] = nz.parse_timestamps(frame["submitted_at"], fields.date_order)
    frame[DEFAULT_COUNTRY_COLUMN] = pd.Series(fields.default_country, index=frame.index, dtype="string")
    frame[TIME_GIVEN_COLUMN] = present.get(SUBMITTED_AT_OPTION_FIELD) == "submitted_at"
    source = nz.normalize_source(frame["source"])
    # A row without a channel is never quarantined for that: it gets the file's channel, else `unknown`.
    unknown = source.isna()
    frame[SOURCE_FILLED_COLUMN] = missing_source | unknown.to_numpy(dtype=bool)
    frame[SOURCE_COLUMN] = source.fillna(UNKNOWN_SOURCE) if unknown.any() else source
    return frame


def normalize_batch(checked: pd.DataFrame) -> pd.DataFrame:
    """Clean, typed lead fields for rows that passed the checks (one row per submission)."""
    out = pd.DataFrame(index=checked.index)
    out["email"] = checked[EMAIL_COLUMN]
    out["email_domain"] = nz.email_domain(out["email"])
    out["submitted_at"] = checked[SUBMITTED_AT_COLUMN]
    out["source"] = checked[SOURCE_COLUMN]
    out["external_id"] = checked["external_id"]
    out["email_smtputf8"] = checked["_email_smtputf8"].astype(bool)
    out["first_name"], out["last_name"], name_unparsed = _names(checked)
    countries = nz.country_checks(checked["country"])
    out["country"] = countries["country"]
    # Tried in order; a national number takes the lead's country, else the run's default region, else needs a +.
    region = out["country"].fillna(checked[DEFAULT_COUNTRY_COLUMN])
    phones = nz.first_phone([checked["phone"], checked["mobile_phone"]], region)
    out["phone"] = phones["phone"]
    out["job_title"] = nz.tidy_text(checked["job_title"])
    out["company"] = checked["company"]
    out["company_key"] = nz.clean_company_name(checked["company"])
    out["company_domain"] = nz.company_domain(nz.website_to_domain(checked["website"]), out["email_domain"])
    out["company_size"] = checked["company_size"]
    out["industry"] = checked["industry"]
    out["email_opt_in"] = nz.parse_bool(checked["email_opt_in"])
    for column in ("page_views", "pricing_page_visits", "content_downloads"):
        out[column] = nz.parse_count(checked[column])
    out["demo_requested"] = nz.parse_bool(checked["demo_requested"])
    for column in UTM_COLUMNS:
        out[column] = normalize_utm(checked[column], column)
    for column in ("message", "ip_address", "honeypot"):
        out[column] = checked[column].astype("string")
    out["form_fill_seconds"] = pd.to_numeric(checked["form_fill_seconds"], errors="coerce")
    out[ROW_COLUMN] = checked[ROW_COLUMN]
    out[PAYLOAD_COLUMN] = checked[PAYLOAD_COLUMN]
    for column in (SOURCE_FILLED_COLUMN, TIME_GIVEN_COLUMN):
        out[column] = checked[column] if column in checked.columns else False
    out = crm_state.add_state(out, checked)
    # Keys hash the campaign as typed, as they did before UTM values were folded: a re-import adds nothing.
    out["idempotency_key"] = submission_keys(out.assign(utm_campaign=checked["utm_campaign"].astype("string")))
    for column, flags in zip(WARNING_COLUMNS, (phones["unparsed"], countries["unknown"], name_unparsed),
                             strict=True):
        out[column] = flags.to_numpy(dtype=bool)
    return out


def _names(checked: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """First and last name: as given, else split from the full name; and where a full name gave neither."""
    first = nz.tidy_name(checked["first_name"])
    last = nz.tidy_name(checked["last_name"])
    full = checked["full_name"]
    wanted = (full.notna() & (first.isna() | last.isna())).to_numpy(dtype=bool)
    unparsed = np.zeros(len(checked), dtype=bool)
    if wanted.any():
        split = nz.split_full_name(full[wanted])
        rows = np.flatnonzero(wanted)

        def filled(given: pd.Series, part: str) -> pd.Series:
            parsed = given.copy()
            parsed.iloc[rows] = nz.tidy_name(split[part]).array
            return given.where(given.notna(), parsed.array)

        first, last = filled(first, "first"), filled(last, "last")
        unparsed[rows] = (split["first"].isna() & split["last"].isna()).to_numpy(dtype=bool)
    return first, last, pd.Series(unparsed, index=checked.index)


def field_warnings(subs: pd.DataFrame) -> dict[str, int]:
    """How many accepted rows had a value that could not be parsed, by FieldWarning code (zeros left out)."""
    counts = {code: int(subs[column].sum()) for column, code in WARNING_COLUMNS.items() if column in subs.columns}
    return {code: n for code, n in counts.items() if n}


def _sha256(values: pd.Series) -> pd.Series:
    return pd.Series([hashlib.sha256(v.encode()).hexdigest() for v in values], index=values.index, dtype="string")


def submission_keys(subs: pd.DataFrame) -> pd.Series:
    """The idempotency key of each submission: its source and external id, else a hash of what was said."""
    when = subs["submitted_at"]
    epoch_us = when.to_numpy(dtype="datetime64[us]").view("int64")
    micros = pd.Series(epoch_us, index=subs.index).astype("string").where(when.notna(), "")
    if TIME_GIVEN_COLUMN in subs.columns:
        micros = micros.where(~subs[TIME_GIVEN_COLUMN].astype(bool).to_numpy(), "given")
    source = subs["source"].replace(KEY_CHANNEL_NAMES).fillna("")
    by_id = "id|" + source + "|" + subs["external_id"].fillna("")
    by_content = "row|" + subs["email"].fillna("") + "|" + micros + "|" + source
    for column in ("message", "first_name", "last_name", "company", "phone", "utm_campaign"):
        by_content = by_content + "|" + subs[column].astype("string").fillna("")
    return _sha256(by_id.where(subs["external_id"].notna(), by_content))


def in_set(values: pd.Series, wanted: Collection[Any]) -> np.ndarray:
    """Which values are in `wanted`, as booleans: one hash lookup per row.

    pandas' isin validates every wanted value of a string column on its own (some 5 us each), which made checking
    50,000 rows against 50,000 keys take a quarter of a second.
    """
    lookup = wanted if isinstance(wanted, set | frozenset | dict) else set(wanted)
    return np.fromiter((value in lookup for value in values.tolist()), dtype=bool, count=len(values))


def split_duplicate_keys(subs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a batch into the first row of each idempotency key and the repeats that add nothing."""
    repeated = subs["idempotency_key"].duplicated(keep="first")
    return subs.loc[~repeated], subs.loc[repeated]


def _by_email(subs: pd.DataFrame, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """The touch columns and `columns` of a batch's submissions, sorted by email and time (file order breaks ties).

    Only these columns are sorted and taken: a chunk's other columns (raw payloads, messages) would be copied twice
    over for nothing.
    """
    keep = list(dict.fromkeys(["email", "submitted_at", ROW_COLUMN, *TOUCH_FIELDS, *columns]))
    return subs[keep].sort_values(["email", "submitted_at", ROW_COLUMN], kind="stable")


def _touches(ordered: pd.DataFrame) -> pd.DataFrame:
    """Each email's first and last touch, and how many it made, from submissions `_by_email` ordered."""
    emails = ordered["email"]
    touched = ["submitted_at", *TOUCH_FIELDS]
    first = ordered.loc[~emails.duplicated(keep="first").to_numpy(), ["email", *touched]].set_index("email")
    last = ordered.loc[~emails.duplicated(keep="last").to_numpy(), ["email", *touched]].set_index("email")
    touches = pd.DataFrame({"first_touch_at": first["submitted_at"], "last_touch_at": last["submitted_at"]})
    for name in TOUCH_FIELDS:
        touches[f"first_touch_{name}"] = first[name]
        touches[f"last_touch_{name}"] = last[name]
    touches["submissions"] = emails.value_counts(sort=False).astype("int64")
    return touches


def aggregate_touches(subs: pd.DataFrame) -> pd.DataFrame:
    """One row per email from a batch of submissions: its earliest and latest touch and how many it made."""
    return _touches(_by_email(subs)).reset_index()


def aggregate_leads(subs: pd.DataFrame) -> pd.DataFrame:
    """One row per email from a batch of submissions: earliest and latest touch, newest known details."""
    ordered = _by_email(subs, (*MERGED_DETAILS, *MAX_COUNTERS))
    groups = ordered.groupby("email", sort=False)
    leads = groups[list(MERGED_DETAILS)].last()
    for column in MAX_COUNTERS:
        leads[column] = groups[column].max()
    return leads.join(_touches(ordered)).reset_index()


def attribution_changes(touches: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Leads whose first touch moves earlier or last touch moves later, given a batch's touches."""
    merged = touches.merge(current, on="email", suffixes=("", "_current"))
    earlier = merged["first_touch_at"] < merged["first_touch_at_current"]
    later = merged["last_touch_at"] > merged["last_touch_at_current"]
    merged["first_touch_changed"] = earlier.fillna(False)
    merged["last_touch_changed"] = later.fillna(False)
    return merged.loc[merged["first_touch_changed"] | merged["last_touch_changed"]]


def blank_rows(prepared: pd.DataFrame) -> pd.Series:
    """Rows with no value in any canonical column (trailing `,,,,` lines in spreadsheet exports)."""
    columns = [c for c in CANONICAL_COLUMNS if c != "source"] + [MALFORMED_COLUMN]
    if NESTED_COLUMN in prepared.columns:
        columns.append(NESTED_COLUMN)
    return prepared[columns].isna().all(axis=1)
