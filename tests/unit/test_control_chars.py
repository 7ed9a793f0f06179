"""Control characters leave every intake field and the raw payload; tab and newlines stay; emptied is missing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from leadflow.domain.normalize import strip_controls
from leadflow.domain.submissions import (
    EMAIL_COLUMN,
    MALFORMED_COLUMN,
    PAYLOAD_COLUMN,
    ROW_COLUMN,
    blank_rows,
    prepare_batch,
    raw_payloads,
    strip_control_characters,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Ac\x00me", "Acme"),  # NUL: PostgreSQL text cannot hold it
        ("a\x01b\x08c\x0bd\x0ce\x1bf\x1fg", "abcdefg"),  # the rest of C0
        ("tab\there\nnew\r\nline", "tab\there\nnew\r\nline"),  # whitespace that text may mean: kept
        ("del\x7f zero\u200bwidth \u00e9\u2713", "del\x7f zero\u200bwidth \u00e9\u2713"),  # not C0: left alone
        ("\x00\x07", None),  # nothing left: missing, as an empty field is
        ("", ""),  # an empty string that had no control character is not this function's business
        (None, None),
    ],
)
def test_strip_controls(value, expected):
    out = strip_controls(pd.Series(["plain", value], dtype="string"))
    assert out.iloc[0] == "plain"
    assert (pd.isna(out.iloc[1]) if expected is None else out.iloc[1] == expected)


@pytest.mark.parametrize("dtype", ["string", "str", object])
def test_strip_controls_keeps_index_and_accepts_any_text_dtype(dtype):
    s = pd.Series(["x\x00y", None, "z"], index=[7, 7, 3], dtype=dtype)
    out = strip_controls(s)
    assert out.index.tolist() == [7, 7, 3]
    assert out.tolist()[0] == "xy" and pd.isna(out.iloc[1]) and out.iloc[2] == "z"


def test_every_column_of_a_raw_chunk_is_cleaned_nested_values_too():
    raw = pd.DataFrame({
        "company": pd.array(["Ac\x00me", "\x00", None], dtype="string"),
        "meta": pd.Series([{"k\x00": ["v\x01", 1]}, "t\x02xt", 3], dtype=object),
        "score": [1.5, np.nan, 2.0],
        ROW_COLUMN: [1, 2, 3],
    })
    out = strip_control_characters(raw)
    assert out["company"].iloc[0] == "Acme" and out["company"].isna().tolist() == [False, True, True]
    assert out["company"].dtype == raw["company"].dtype
    assert out["meta"].tolist() == [{"k": ["v", 1]}, "txt", 3]
    assert out["score"].equals(raw["score"]) and out[ROW_COLUMN].equals(raw[ROW_COLUMN])
    assert raw["company"].iloc[0] == "Ac\x00me"  # the caller's frame is left as it was


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"company": ["Ac\x00me"]}, {"company": "Acme"}),
        ({"company": ["\x00\x1f"]}, {"company": ""}),  # raw_payloads alone: the field stays, without the bytes
        ({"he\x00ader": ["x"]}, {"header": "x"}),
        ({"meta": [{"a": "b\x00c"}]}, {"meta": {"a": "bc"}}),
        ({"note": ["keep\ttab\nnewline"]}, {"note": "keep\ttab\nnewline"}),
    ],
)
def test_raw_payload_json_holds_no_control_character(columns, expected):
    frame = pd.DataFrame(columns)
    for name, values in columns.items():
        if all(isinstance(v, str) for v in values):
            frame[name] = pd.array(values, dtype="string")
    frame[ROW_COLUMN] = [1]
    payload = raw_payloads(frame).iloc[0]
    assert "\\u00" not in payload and not any(ch in payload for ch in "\x00\x01\x1f")
    assert json.loads(payload) == expected


def _raw(**columns) -> pd.DataFrame:
    frame = pd.DataFrame({k: pd.array(v, dtype="string") for k, v in columns.items()})
    frame[ROW_COLUMN] = range(1, len(frame) + 1)
    frame[MALFORMED_COLUMN] = pd.array([None] * len(frame), dtype="string")
    return frame


def test_prepare_batch_cleans_fields_and_payload():
    raw = _raw(email=["a@x.com", "\x00b@x.com"], submitted_at=["2025-03-01", "2025-03-01"],
               company=["Ac\x00me", "  \x00 "], message=["hi\x00\r\nthere", None])
    prepared = prepare_batch(raw, {c: c for c in ("email", "submitted_at", "company", "message")})
    assert prepared["company"].iloc[0] == "Acme"
    assert pd.isna(prepared["company"].iloc[1])  # blank once cleaned: missing, not " "
    assert prepared["message"].iloc[0] == "hi\r\nthere"
    assert prepared[EMAIL_COLUMN].tolist() == ["a@x.com", "b@x.com"]
    # the payload keeps what was typed, as for any field: only the control character is gone
    assert [json.loads(p).get("company") for p in prepared[PAYLOAD_COLUMN]] == ["Acme", "   "]


def test_a_row_of_control_characters_only_is_blank_and_an_emptied_email_is_missing():
    raw = _raw(email=["\x00", "\x00\x01", "ok@x.com"], submitted_at=["2025-03-01", "\x02", "2025-03-01"])
    prepared = prepare_batch(raw, {"email": "email", "submitted_at": "submitted_at"})
    assert prepared["email"].isna().tolist() == [True, True, False]
    assert prepared[EMAIL_COLUMN].isna().tolist() == [True, True, False]
    assert blank_rows(prepared).tolist() == [False, True, False]
    assert [sorted(json.loads(p)) for p in prepared[PAYLOAD_COLUMN]] == [["submitted_at"], [],
                                                                         ["email", "submitted_at"]]
