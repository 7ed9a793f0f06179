"""The intake contract: header folding, column resolution and column maps."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from leadflow.domain.contract import ColumnMapError, fold_header, load_column_map, resolve_columns


@pytest.mark.parametrize(
    ("header", "folded"),
    [
        ("Email", "email"),
        (" E-Mail Address ", "e_mail_address"),
        ("\ufeffemail", "email"),
        ("Country/Region", "country_region"),
        ("First  Name", "first_name"),
        ("utm_source", "utm_source"),
        ("", ""),
    ],
)
def test_fold_header(header, folded):
    assert fold_header(header) == folded


@pytest.mark.parametrize(
    ("headers", "column_map", "expected"),
    [
        (["email", "submitted_at", "source"], None, {"email": "email", "submitted_at": "submitted_at",
                                                       "source": "source"}),
        (["Email Address", "Created Date", "Lead Source"], None,
         {"Email Address": "email", "Created Date": "submitted_at", "Lead Source": "source"}),
        # An exact canonical header wins over an alias for the same column.
        (["email", "Work Email"], None, {"email": "email"}),
        # An explicit map wins over both.
        (["email", "Work Email"], {"Work Email": "email"}, {"Work Email": "email"}),
        (["Mystery", "Notes"], None, {"Notes": "message"}),
        (["Email", "EMAIL"], None, {"Email": "email"}),
    ],
)
def test_resolve_columns(headers, column_map, expected):
    assert resolve_columns(headers, column_map) == expected


def test_load_column_map_json_and_yaml(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"Mail": "email"}))
    (tmp_path / "m.yaml").write_text("Mail: email\nWhen: submitted_at\n")
    assert load_column_map(tmp_path / "m.json") == {"Mail": "email"}
    assert load_column_map(tmp_path / "m.yaml") == {"Mail": "email", "When": "submitted_at"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid"),
        ('["email"]', "must be an object"),
        ('{"Mail": "e_mail"}', "unknown canonical columns: e_mail"),
        ('{"Mail": 3}', "must be an object"),
    ],
)
def test_load_column_map_rejects_bad_maps(tmp_path, content, message):
    (tmp_path / "m.json").write_text(content)
    with pytest.raises(ColumnMapError, match=message):
        load_column_map(tmp_path / "m.json")


def test_load_column_map_missing_file(tmp_path):
    with pytest.raises(ColumnMapError, match="cannot read"):
        load_column_map(tmp_path / "absent.json")


def test_header_frame_helper_is_not_needed_for_empty_maps():
    assert resolve_columns(list(pd.Index([])), {}) == {}
