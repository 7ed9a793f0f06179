"""Pure intake logic: preparing raw chunks, submission keys, aggregation and attribution."""

from __future__ import annotations

import pandas as pd
import pytest

from leadflow.domain.contract import resolve_columns
from leadflow.domain.submissions import (
    aggregate_leads,
    aggregate_touches,
    attribution_changes,
    blank_rows,
    in_set,
    normalize_batch,
    prepare_batch,
    split_duplicate_keys,
)
from leadflow.io.sources import MALFORMED_COLUMN, ROW_COLUMN


def raw_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).astype("string")
    frame[ROW_COLUMN] = range(1, len(frame) + 1)
    frame[MALFORMED_COLUMN] = pd.Series(pd.NA, index=frame.index, dtype="string")
    return frame


def prepared(rows: list[dict], default_source: str | None = None) -> pd.DataFrame:
    raw = raw_frame(rows)
    mapping = resolve_columns([c for c in raw.columns if not c.startswith("_")])
    return prepare_batch(raw, mapping, default_source)


def test_prepare_parses_keys_and_keeps_the_raw_payload():
    frame = prepared([{"E-Mail": " Jane@X.com ", "Created Date": "2025-01-02 10:00", "Lead Source": "Web Form",
                       "Favourite colour": "teal"}])
    row = frame.iloc[0]
    assert row["_email"] == "jane@x.com"
    assert row["_submitted_at"] == pd.Timestamp("2025-01-02 10:00", tz="UTC")
    assert row["_source"] == "web_form"
    assert '"Favourite colour":"teal"' in row["_payload"]


def test_default_source_only_fills_rows_without_one():
    frame = prepared([{"email": "a@b.com", "submitted_at": "2025-01-01", "source": "webinar"},
                      {"email": "c@d.com", "submitted_at": "2025-01-01", "source": None}], default_source="event")
    assert frame["_source"].tolist() == ["webinar", "event"]


def test_blank_rows_are_recognised():
    frame = prepared([{"email": None, "submitted_at": None, "source": None},
                      {"email": "a@b.com", "submitted_at": None, "source": None}], default_source="event")
    assert blank_rows(frame).tolist() == [True, False]


def subs(rows: list[dict]) -> pd.DataFrame:
    return normalize_batch(prepared(rows))


@pytest.mark.parametrize(
    ("left", "right", "same"),
    [
        # The same external id from the same source is the same submission, whatever else changed.
        ({"external_id": "wf-1", "message": "hi"}, {"external_id": "wf-1", "message": "hello"}, True),
        ({"external_id": "wf-1"}, {"external_id": "wf-2"}, False),
        # Without an id, the content decides; email case and spacing do not matter.
        ({"email": " A@B.com"}, {"email": "a@b.com"}, True),
        ({"message": "hi"}, {"message": "hello"}, False),
        ({"submitted_at": "2025-01-01T10:00:00Z"}, {"submitted_at": "2025-01-01T11:00:00+01:00"}, True),
        ({"submitted_at": "2025-01-01T10:00:00Z"}, {"submitted_at": "2025-01-01T10:00:01Z"}, False),
    ],
)
def test_submission_keys(left, right, same):
    base = {"email": "a@b.com", "submitted_at": "2025-01-01T10:00:00Z", "source": "web_form"}
    keys = subs([{**base, **left}, {**base, **right}])["idempotency_key"].tolist()
    assert (keys[0] == keys[1]) is same
    assert all(len(k) == 64 for k in keys)


def test_split_duplicate_keys_keeps_the_first():
    frame = subs([{"email": "a@b.com", "submitted_at": "2025-01-01", "source": "web", "external_id": "1"}] * 3)
    unique, repeats = split_duplicate_keys(frame)
    assert len(unique) == 1 and len(repeats) == 2


def test_aggregate_takes_touches_by_time_and_newest_known_details():
    frame = subs([
        {"email": "a@b.com", "submitted_at": "2025-03-01", "source": "webinar", "job_title": None,
         "page_views": "5"},
        {"email": "A@b.com", "submitted_at": "2025-01-01", "source": "event", "job_title": "CTO",
         "utm_campaign": "booth", "page_views": "9"},
        {"email": "z@y.com", "submitted_at": "2025-02-01", "source": "referral"},
    ])
    leads = aggregate_leads(frame).set_index("email")
    a = leads.loc["a@b.com"]
    assert (a["first_touch_source"], a["last_touch_source"]) == ("event", "webinar")
    assert a["first_touch_utm_campaign"] == "booth" and pd.isna(a["last_touch_utm_campaign"])
    assert a["job_title"] == "CTO"
    assert a["page_views"] == 9 and a["submissions"] == 2
    assert leads.loc["z@y.com", "submissions"] == 1


@pytest.mark.parametrize(("rows", "first", "last"), [
    # the same second: the file's order decides which touch came first
    ([("2025-01-01T10:00:00Z", "event"), ("2025-01-01T10:00:00Z", "webinar")], "event", "webinar"),
    ([("2025-01-01T10:00:00Z", "webinar"), ("2025-01-01T10:00:00Z", "event")], "webinar", "event"),
    # time beats the file's order
    ([("2025-02-01T10:00:00Z", "event"), ("2025-01-01T10:00:00Z", "webinar"), ("2025-03-01T10:00:00Z", "referral")],
     "webinar", "referral"),
    ([("2025-01-01T10:00:00Z", "event")], "event", "event"),
])
def test_touches_are_the_earliest_and_latest_submission(rows, first, last):
    frame = subs([{"email": "a@b.com", "submitted_at": at, "source": source} for at, source in rows]
                 + [{"email": "z@y.com", "submitted_at": "2024-12-01T00:00:00Z", "source": "referral"}])
    for table in (aggregate_leads(frame), aggregate_touches(frame)):
        a = table.set_index("email").loc["a@b.com"]
        assert (a["first_touch_source"], a["last_touch_source"], a["submissions"]) == (first, last, len(rows))
        assert table.set_index("email").loc["z@y.com", "submissions"] == 1
    touch_columns = aggregate_touches(frame).columns.tolist()
    pd.testing.assert_frame_equal(aggregate_leads(frame)[touch_columns], aggregate_touches(frame))


def test_attribution_changes_only_moves_touches_outward():
    touches = pd.DataFrame({
        "email": ["a", "b", "c"],
        "first_touch_at": pd.to_datetime(["2025-01-01", "2025-01-05", "2025-01-05"], utc=True),
        "last_touch_at": pd.to_datetime(["2025-01-01", "2025-03-01", "2025-01-05"], utc=True),
    })
    current = pd.DataFrame({
        "id": [1, 2, 3], "email": ["a", "b", "c"],
        "first_touch_at": pd.to_datetime(["2025-02-01", "2025-01-01", "2025-01-01"], utc=True),
        "last_touch_at": pd.to_datetime(["2025-02-01", "2025-02-01", "2025-02-01"], utc=True),
    })
    changes = attribution_changes(touches, current).set_index("email")
    assert changes.index.tolist() == ["a", "b"]
    assert changes.loc["a", "first_touch_changed"] and not changes.loc["a", "last_touch_changed"]
    assert changes.loc["b", "last_touch_changed"] and not changes.loc["b", "first_touch_changed"]


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"email": ["a@b.com", None]}, [{"email": "a@b.com"}, {}]),
        ({"note": ['say "hi"\\n', "tab\there\nnew line"]}, [{"note": 'say "hi"\\n'}, {"note": "tab\there\nnew line"}]),
        ({"odd": ["\x0bvertical", "ünïcødé ✓"]}, [{"odd": "vertical"}, {"odd": "ünïcødé ✓"}]),
        ({"n": [3, None], "f": [1.5, float("inf")]}, [{"n": 3.0, "f": 1.5}, {"f": "inf"}]),
        ({"meta": [{"k": [1, 2]}, None], "ok": [True, False]}, [{"meta": {"k": [1, 2]}, "ok": True}, {"ok": False}]),
        ({"Weird \"Header\"": ["x", "y"]}, [{'Weird "Header"': "x"}, {'Weird "Header"': "y"}]),
    ],
)
def test_raw_payloads_are_valid_json_of_the_non_empty_fields(columns, expected):
    import json

    from leadflow.domain.submissions import raw_payloads

    frame = pd.DataFrame(columns)
    for name, values in columns.items():
        if all(isinstance(v, str) or v is None for v in values):
            frame[name] = pd.array(values, dtype="string")
    frame[ROW_COLUMN] = range(1, len(frame) + 1)
    assert [json.loads(p) for p in raw_payloads(frame)] == expected


@pytest.mark.parametrize(
    ("values", "wanted", "expected"),
    [
        (pd.Series(["a", "b", None], dtype="string"), {"b"}, [False, True, False]),
        (pd.Series(["a", "b"], dtype="string"), [], [False, False]),
        (pd.Series([], dtype="string"), {"a"}, []),
        (pd.Series([1, 2, 3]), {3, 1}, [True, False, True]),
        (pd.Series(["A"], dtype="string"), {"a"}, [False]),
        (pd.Series(["k1", "k2"], dtype="string"), {"k2": 7}, [False, True]),
    ],
)
def test_in_set(values, wanted, expected):
    assert in_set(values, wanted).tolist() == expected
