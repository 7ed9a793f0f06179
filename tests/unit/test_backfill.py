"""Backfill core: why an undated row cannot be replayed, and its quarantine (idempotent by content)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest
from sqlalchemy import select

from leadflow.crm.schema import QuarantineRecord
from leadflow.steps.backfill import quarantine_undated, undated_reasons

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("submitted_at", "malformed", "expected"),
    [
        (pd.NA, pd.NA, "missing_submitted_at"),
        ("someday", pd.NA, "invalid_submitted_at"),
        ("2024-13-45", pd.NA, "invalid_submitted_at"),
        (pd.NA, '{"broken', "malformed_row"),
        ("someday", '{"broken', "malformed_row"),
    ],
)
def test_undated_reasons(submitted_at, malformed, expected):
    prepared = pd.DataFrame({"_row": [7], "submitted_at": pd.array([submitted_at], dtype="string"),
                             "_malformed": pd.array([malformed], dtype="string")})
    assert undated_reasons(prepared) == {7: [expected]}


def test_quarantine_undated_keeps_raw_payloads_once(crm, tmp_path):
    part = tmp_path / "undated.jsonl"
    part.write_text(
        '{"email": "a@x.com", "source": "web_form", "submitted_at": null, "phone": "+1 555"}\n'
        '{"email": "b@x.com", "source": "web_form", "submitted_at": "yesterday-ish"}\n'
        '{"email": null, "source": null, "submitted_at": null}\n'
        '{"email": "c@x.com", "source": "web_form"\n', encoding="utf-8")
    kwargs = {"batch_id": "b1", "origin": "/exports/history.csv", "flow_run_id": None, "now": NOW}
    first = quarantine_undated(crm, part, **kwargs)
    assert (first.rows_read, first.blank_rows, first.quarantined, first.quarantined_new) == (4, 1, 3, 3)
    assert first.quarantined_by_reason == {"invalid_submitted_at": 1, "malformed_row": 1,
                                           "missing_submitted_at": 1}
    table = QuarantineRecord.__table__
    with crm.engine.connect() as conn:
        stored = {r.reason_codes: r for r in conn.execute(select(table))}
    assert stored["missing_submitted_at"].raw_payload == {"email": "a@x.com", "source": "web_form",
                                                          "phone": "+1 555"}
    assert stored["invalid_submitted_at"].raw_payload["submitted_at"] == "yesterday-ish"
    assert stored["missing_submitted_at"].origin == "/exports/history.csv"
    again = quarantine_undated(crm, part, **{**kwargs, "batch_id": "b2"})
    assert (again.quarantined, again.quarantined_new) == (3, 0)
    with crm.engine.connect() as conn:
        assert len(conn.execute(select(table.c.id)).all()) == 3


def _transient() -> Exception:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    return OperationalError("UPDATE leads ...", {}, sqlite3.OperationalError("database is locked"))


@pytest.mark.parametrize(
    ("failures", "error", "outcome"),
    [
        ([], None, "done"),
        (["transient", "transient"], None, "done"),  # a deadlock or lock between windows: retried
        (["transient"] * 4, "database is locked", None),  # gives up after three retries
        (["bad"], "bad row", None),  # anything else is not retried
    ],
)
def test_window_steps_retry_only_transient_database_errors(failures, error, outcome):
    from leadflow.steps.backfill import retrying

    calls = []

    def step(value):
        calls.append(value)
        if len(calls) <= len(failures):
            raise _transient() if failures[len(calls) - 1] == "transient" else ValueError("bad row")
        return value

    wrapped = retrying(step, pause=0)
    if error is None:
        assert wrapped(outcome) == outcome
        assert len(calls) == len(failures) + 1
    else:
        with pytest.raises(Exception, match=error):
            wrapped("x")
        assert len(calls) == min(len(failures), 4)


def test_group_windows_joins_adjacent_windows_within_the_limit():
    from leadflow.domain.backfill import group_limit, group_windows, make_windows

    windows = make_windows(date(2024, 1, 1), date(2024, 6, 30), "month")
    rows = dict(zip([w.id for w in windows], [10, 20, 70, 5, 5, 200], strict=True))
    ids = [[w.id[:7] for w in g] for g in group_windows(windows, rows, 100)]
    assert ids == [["2024-01", "2024-02", "2024-03"], ["2024-04", "2024-05"], ["2024-06"]]
    sizes = [sum(rows[w.id] for w in g) for g in group_windows(windows, rows, 100)]
    assert sizes == [100, 10, 200]
    assert [len(g) for g in group_windows(windows, rows, 0)] == [1] * 6
    assert [len(g) for g in group_windows(windows, rows, 30)] == [2, 1, 2, 1]
    # One chunk at most, and no fewer groups than parallel slots.
    assert group_limit([10_000] * 20, 50_000, 2) == 50_000
    assert group_limit([800] * 25, 50_000, 2) == 10_000
    assert group_limit([], 50_000, 2) == 0


@pytest.mark.parametrize(("case", "shapes", "expected"), [
    ("one shape", {"2024-01": ["a"], "2024-02": ["a"], "2024-03": ["a"]}, [3]),
    ("another export in the middle", {"2024-01": ["a"], "2024-02": ["b"], "2024-03": ["a"]}, [1, 1, 1]),
    ("the same two exports in the same order", {"2024-01": ["a", "b"], "2024-02": ["a", "b"], "2024-03": ["b"]},
     [2, 1]),
    ("the same exports in another order", {"2024-01": ["a", "b"], "2024-02": ["b", "a"], "2024-03": ["b", "a"]},
     [1, 2]),
    ("shapes unknown (a split from before they were recorded)", {}, [1, 1, 1]),
])
def test_only_windows_of_the_same_input_shapes_share_a_pass(case, shapes, expected):
    from leadflow.domain.backfill import group_windows, make_windows

    windows = make_windows(date(2024, 1, 1), date(2024, 3, 31), "month")
    by_id = {w.id: shapes[w.id[:7]] for w in windows if w.id[:7] in shapes}
    rows = {w.id: 10 for w in windows}
    assert [len(g) for g in group_windows(windows, rows, 100, by_id)] == expected


def test_the_split_records_the_shape_of_each_windows_input(tmp_path):
    from leadflow.domain.backfill import group_windows, make_windows
    from leadflow.io.backfill_files import split_by_window
    from leadflow.steps.intake import plan_intake

    # A Typeform download (web form) for January and March, an Eventbrite attendee report (event) for February,
    # and a second Typeform download with the same questions for March: one CRM's monthly files share a shape.
    header = "#,Your email,Submit Date (UTC),Network ID\n"
    (tmp_path / "responses.csv").write_text(header + "t1,ann@a.example,2024-01-10 10:00:00,n1\n"
                                            "t2,bo@b.example,2024-03-05 09:00:00,n2\n", encoding="utf-8")
    (tmp_path / "attendees.csv").write_text("Attendee #,Email,Order Date,Ticket Type,Order #\n"
                                            "e1,cy@c.example,2024-02-02 08:00:00,General,o1\n", encoding="utf-8")
    (tmp_path / "responses-2.csv").write_text(header + "t3,di@d.example,2024-03-20 10:00:00,n3\n", encoding="utf-8")
    files = [tmp_path / "responses.csv", tmp_path / "attendees.csv", tmp_path / "responses-2.csv"]
    windows = make_windows(date(2024, 1, 1), date(2024, 3, 31), "month")
    manifest = split_by_window(files, windows, tmp_path / "work", key="k")
    jan, feb, mar = (manifest.shapes[w.id] for w in windows)
    assert jan == mar and len(mar) == 1 and feb != jan  # March's two files are one shape
    # Each window alone reads as its own export (and so gets its own default channel): February is the event.
    profiles = [plan_intake(manifest.parts[w.id], None, None).profile for w in windows]
    assert profiles[1] == "eventbrite" and profiles[0] == profiles[2] != "eventbrite"
    # So February shares a pass with neither neighbour, however small they are; without it, January and March would.
    assert [len(g) for g in group_windows(windows, manifest.windows, 1000, manifest.shapes)] == [1, 1, 1]
    assert [len(g) for g in group_windows([windows[0], windows[2]], manifest.windows, 1000, manifest.shapes)] == [2]


def test_window_inputs_are_json_lines_as_pandas_writes_them():
    import io
    import json

    from leadflow.io.backfill_files import json_lines

    # Values that look like a record boundary, quotes, newlines, non-ASCII text and missing values.
    frame = pd.DataFrame({
        "email": ["a@x.com", "b@x.com", "c@x.com", "d@x.com"],
        "message": ['ok},{"email":"evil@x.com"}', 'say "hi"\n},{"', None, "Grüße \u2028 ☃ {}"],
        "page_views": ["1", None, "3", "4"],
    }).astype("string")
    expected = io.StringIO()
    frame.to_json(expected, orient="records", lines=True, date_format="iso", force_ascii=False)
    written = json_lines(frame)
    assert written.decode("utf-8") == expected.getvalue().rstrip("\n") + "\n"
    lines = written.decode("utf-8").rstrip("\n").split("\n")  # not splitlines: U+2028 stays inside its line
    assert [json.loads(line) for line in lines] == frame.astype(object).where(frame.notna(), None).to_dict("records")
    assert json_lines(frame.iloc[:0]) == b""
    # A value (or a column name) ending in `},{` writes the boundary's bytes with its closing quote.
    for tricky in (frame.assign(message=["x},{", "y", None, "z"]).astype("string"),
                   frame.rename(columns={"message": "note},{"})):
        expected = io.StringIO()
        tricky.to_json(expected, orient="records", lines=True, date_format="iso", force_ascii=False)
        assert json_lines(tricky).decode("utf-8") == expected.getvalue().rstrip("\n") + "\n"


def _replay_by_url(url: str, part: str) -> None:
    """Replay one window on the process's Store of this database (a Dask task of an in-process cluster)."""
    from leadflow.crm.store import get_store
    from leadflow.steps.backfill import replay_window

    store = get_store(url)
    replay_window(store, part, source_name=None, chunk_size=None, default_country=None, flow_run_id=None,
                  clock=lambda: datetime.now(UTC))


@pytest.mark.parametrize("crm", ["postgresql"], indirect=True)
@pytest.mark.parametrize("where", ["flow process", "dask worker"])
def test_a_window_replayed_in_a_dask_worker_waits_for_its_analyze(crm, tmp_path, where):
    from leadflow.crm.store import get_store
    from leadflow.io.backfill_files import json_lines
    from leadflow.steps.backfill import in_dask_worker
    from tests.helpers import lead

    assert get_store(crm.url) is crm  # the Store the replay uses, whose ANALYZE thread this test looks at
    crm.wait_for_statistics()
    crm._analyzed_rows, crm._added_since_analyze = None, 0  # the fixture's Store may have loaded before
    part = tmp_path / "window.jsonl"
    part.write_bytes(json_lines(pd.DataFrame(
        [lead(f"w{i}@acme{i % 3}.com", f"2024-01-{10 + i % 20:02d}T09:00:00Z") for i in range(40)]).astype("string")))
    if where == "flow process":
        assert not in_dask_worker()
        _replay_by_url(crm.url, str(part))
        # The flow waits for it at its end: here the window's ANALYZE runs on beside what comes next.
        assert crm._statistics_thread is not None
        crm.wait_for_statistics()
        return
    from distributed import Client, LocalCluster

    # Worker threads in this process, so the task's Store is this test's (a LocalCluster's worker processes end
    # with the flow, killing an ANALYZE still running there).
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert client.submit(in_dask_worker, pure=False).result()
        client.submit(_replay_by_url, crm.url, str(part), pure=False).result()
    assert crm._statistics_thread is None
