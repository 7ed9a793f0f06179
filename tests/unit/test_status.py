"""The status vocabulary, transitions and status-export parsing, as tables with known answers."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from leadflow.domain.status import (
    STATUSES,
    TRANSITIONS,
    StatusFileError,
    parse_reason,
    parse_status,
    prepare_changes,
    resolve_headers,
    transition_error,
)
from leadflow.io.status_files import read_status_file

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("raw", "expected"), [
    ("working", "working"), (" Working ", "working"), ("In progress", "working"), ("Contacted", "working"),
    ("Qualified", "qualified"), ("SQL", "qualified"), ("Meeting Booked", "discovery_call_booked"),
    ("discovery-call-booked", "discovery_call_booked"), ("Closed Won", "converted"), ("closed_lost", "disqualified"),
    ("Nurture", "recycled"), ("Open", "new"), ("spam", "spam"),
    ("on hold", None), ("", None), (None, None), (pd.NA, None),
])
def test_parse_status(raw, expected):
    assert parse_status(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("No Budget", "no_budget"), ("no-need", "no_need"), ("  ", None), (None, None), ("Bad timing!", "bad_timing"),
])
def test_parse_reason(raw, expected):
    assert parse_reason(raw) == expected


@pytest.mark.parametrize(("current", "target", "reason", "expected"), [
    ("new", "working", None, None),
    ("working", "discovery_call_booked", None, None),  # skipping qualified is allowed
    ("new", "converted", None, "invalid_transition:new->converted"),
    ("working", "disqualified", None, "missing_reason"),
    ("working", "disqualified", "no_budget", None),
    ("working", "disqualified", "x" * 65, "invalid_reason"),
    ("disqualified", "recycled", None, None),
    ("recycled", "working", None, None),
    ("converted", "working", None, "invalid_transition:converted->working"),
    ("new", "spam", None, "spam_managed_by_spam_cleanup"),
    ("spam", "new", None, "spam_managed_by_spam_cleanup"),
])
def test_transition_rules(current, target, reason, expected):
    assert transition_error(current, target, reason) == expected


def test_every_status_has_transitions_within_the_vocabulary():
    assert set(TRANSITIONS) == set(STATUSES)
    assert all(targets <= set(STATUSES) for targets in TRANSITIONS.values())


@pytest.mark.parametrize(("headers", "expected"), [
    (["email", "status", "reason", "changed_at"], {"email": "email", "status": "status", "reason": "reason",
                                                    "changed_at": "changed_at"}),
    (["Email Address", "Lead Status", "Last Modified"], {"Email Address": "email", "Lead Status": "status",
                                                         "Last Modified": "changed_at"}),
    (["E-mail", "Stage", "Lost Reason", "Status Date", "Owner"], {"E-mail": "email", "Stage": "status",
                                                                  "Lost Reason": "reason",
                                                                  "Status Date": "changed_at"}),
])
def test_header_aliases(headers, expected):
    assert resolve_headers(headers) == expected


def test_missing_required_header_is_a_clear_error():
    with pytest.raises(StatusFileError, match="no column for status, changed_at"):
        resolve_headers(["email", "reason"])


def test_prepare_changes_rejects_each_bad_row_with_one_reason():
    frame = pd.DataFrame({
        "row": [1, 2, 3, 4, 5, 6, 7, 8],
        "email": ["A@B.com ", "", "nope", "a@b.com", "a@b.com", "a@b.com", "a@b.com", "c@d.com"],
        "status": ["Working", "working", "working", "", "paused", "working", "working", "lost"],
        "reason": [None, None, None, None, None, None, None, "No Budget"],
        "changed_at": ["2025-03-01 10:00", "2025-03-01", "2025-03-01", "2025-03-01", "2025-03-01", "",
                       "2099-01-01", "1740990000"],
    })
    good, rejects = prepare_changes(frame, NOW)
    assert [(r.row, r.reason) for r in rejects] == [
        (2, "missing_email"), (3, "invalid_email"), (4, "missing_status"), (5, "unknown_status"),
        (6, "missing_changed_at"), (7, "future_changed_at"), (8, "invalid_changed_at")]
    assert good[["row", "email", "status"]].values.tolist() == [[1, "a@b.com", "working"]]
    assert good["changed_at"].iloc[0] == pd.Timestamp("2025-03-01 10:00", tz="UTC")
    assert len(good) + len(rejects) == len(frame)


def test_read_status_file_maps_headers_and_keeps_row_numbers(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("\ufeffEmail,Status,Changed At,Extra\na@b.com,working,2025-03-01,x\n\nc@d.com,new,2025-03-02,y\n")
    frame = read_status_file(path)
    assert list(frame.columns) == ["row", "email", "status", "reason", "changed_at"]
    assert frame["row"].tolist() == [1, 2] and frame["reason"].isna().all()


@pytest.mark.parametrize("content", ["", 'email,status,changed_at\n"a@b.com,working\n'])
def test_unreadable_status_files_raise_a_status_file_error(tmp_path, content):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(StatusFileError):
        read_status_file(path)
