"""Reading real-world exports: formats, encodings, delimiters, broken lines, chunking."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from leadflow.io.sources import (
    MALFORMED_COLUMN,
    ROW_COLUMN,
    LeadFileError,
    input_size,
    inspect_lead_file,
    iter_lead_chunks,
    read_ahead,
)


def read_all(path, chunk_size=1000) -> pd.DataFrame:
    return pd.concat(list(iter_lead_chunks(inspect_lead_file(path), chunk_size)))


@pytest.mark.parametrize(
    ("name", "payload", "delimiter"),
    [
        ("comma.csv", "email,source\na@b.com,web\n", ","),
        ("semi.csv", "email;source\na@b.com;web\n", ";"),
        ("tab.tsv", "email\tsource\na@b.com\tweb\n", "\t"),
        ("pipe.txt", "email|source\na@b.com|web\n", "|"),
    ],
)
def test_csv_delimiters_are_detected(tmp_path, name, payload, delimiter):
    path = tmp_path / name
    path.write_text(payload)
    info = inspect_lead_file(path)
    assert info.delimiter == delimiter
    assert info.headers == ["email", "source"]
    frame = read_all(path)
    assert frame["email"].tolist() == ["a@b.com"]
    assert frame[ROW_COLUMN].tolist() == [1]


def test_utf8_bom_and_cp1252_exports(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffemail,first_name\na@b.com,Zoë\n".encode())
    legacy = tmp_path / "excel.csv"
    legacy.write_bytes("email,first_name\na@b.com,Zoë\n".encode("cp1252"))
    assert inspect_lead_file(bom).headers == ["email", "first_name"]
    assert read_all(bom)["first_name"].tolist() == ["Zoë"]
    assert inspect_lead_file(legacy).encoding == "cp1252"
    assert read_all(legacy)["first_name"].tolist() == ["Zoë"]


def test_na_strings_stay_values_and_only_empty_cells_are_missing(tmp_path):
    path = tmp_path / "na.csv"
    path.write_text("email,country,last_name\na@b.com,NA,Null\nc@d.com,,\n")
    frame = read_all(path)
    assert frame["country"].tolist()[0] == "NA" and frame["last_name"].tolist()[0] == "Null"
    assert frame["country"].isna().tolist() == [False, True]


def test_lines_with_too_many_fields_are_kept_as_malformed_rows(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("email,source\na@b.com,web\nc@d.com,web,EXTRA,MORE\ne@f.com,chat\n")
    frame = read_all(path, chunk_size=1)
    assert len(frame) == 3
    assert frame["email"].dropna().tolist() == ["a@b.com", "e@f.com"]
    assert json.loads(frame[MALFORMED_COLUMN].dropna().iloc[0]) == ["c@d.com", "web", "EXTRA", "MORE"]
    assert frame[ROW_COLUMN].tolist() == [1, 2, 3]


def test_jsonl_with_a_broken_line_and_nested_values(tmp_path):
    path = tmp_path / "leads.jsonl"
    path.write_text('{"email": "a@b.com", "page_views": 3, "meta": {"x": 1}}\n{not json\n\n["list"]\n')
    frame = read_all(path)
    assert len(frame) == 3
    assert frame[MALFORMED_COLUMN].notna().sum() == 2
    assert frame["page_views"].iloc[0] == 3


def test_parquet_and_gzip_are_read_in_chunks(tmp_path):
    frame = pd.DataFrame({"email": [f"p{i}@x.com" for i in range(25)], "source": "web"})
    frame.to_parquet(tmp_path / "leads.parquet")
    with gzip.open(tmp_path / "leads.csv.gz", "wt") as handle:
        frame.to_csv(handle, index=False)
    for name in ("leads.parquet", "leads.csv.gz"):
        chunks = list(iter_lead_chunks(inspect_lead_file(tmp_path / name), 10))
        assert [len(c) for c in chunks] == [10, 10, 5]
        assert pd.concat(chunks)[ROW_COLUMN].tolist() == list(range(1, 26))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.csv", None, "no such file"),
        ("leads.xlsx", "x", "unknown file type"),
        ("empty.csv", "", "file is empty"),
        ("bad.jsonl", "not json\n", "first line is not JSON"),
        ("list.jsonl", "[1, 2]\n", "one JSON object per line"),
    ],
)
def test_unreadable_inputs_raise_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(LeadFileError, match=message) as info:
        inspect_lead_file(path)
    assert "\n" not in str(info.value)


def test_a_folder_is_not_a_file(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(LeadFileError, match="is a folder"):
        inspect_lead_file(tmp_path / "dir.csv")


@pytest.mark.parametrize("engine_chunk", [1, 1000])
def test_a_broken_first_line_is_not_mistaken_for_an_index(tmp_path, engine_chunk):
    path = tmp_path / "first.csv"
    path.write_text("email,source\nc@d.com,web,EXTRA\na@b.com,web\n")
    frame = read_all(path, chunk_size=engine_chunk)
    assert frame["email"].dropna().tolist() == ["a@b.com"]
    assert frame[MALFORMED_COLUMN].notna().sum() == 1


def test_duplicate_and_empty_headers_keep_every_value(tmp_path):
    path = tmp_path / "dupes.csv"
    path.write_text("email,Email,\na@b.com,other@b.com,x\n")
    frame = read_all(path)
    assert frame.iloc[0][["email", "Email", "Unnamed: 2"]].tolist() == ["a@b.com", "other@b.com", "x"]


def test_fsspec_urls_are_read_like_local_files(tmp_path):
    import fsspec

    with fsspec.open("memory://exports/leads.csv", "w") as handle:
        handle.write("email;source\na@b.com;web\n")
    (tmp_path / "local.csv").write_text("email,source\nc@d.com,chat\n")
    for url, email in (("memory://exports/leads.csv", "a@b.com"), (f"file://{tmp_path / 'local.csv'}", "c@d.com")):
        assert read_all(url)["email"].tolist() == [email]
    with pytest.raises(LeadFileError, match="cannot read"):
        inspect_lead_file("memory://exports/absent.csv")


def test_read_ahead_keeps_order_and_raises_where_the_input_fails():
    def items():
        yield 1
        yield 2
        raise LeadFileError("broken after row 2")

    seen = []
    with pytest.raises(LeadFileError, match="after row 2"):
        for item in read_ahead(items()):
            seen.append(item)
    assert seen == [1, 2]
    assert list(read_ahead(iter([]))) == []


def test_read_ahead_reads_one_item_ahead_and_stops_when_abandoned():
    pulled = []

    def items():
        for i in range(10):
            pulled.append(i)
            yield i

    ahead = read_ahead(items())
    assert next(ahead) == 0
    ahead.close()
    # The item being handed out plus exactly one read ahead: an abandoned run reads no further.
    assert pulled == [0, 1]


def test_input_size_in_bytes_or_none_when_the_store_cannot_tell(tmp_path):
    import fsspec

    (tmp_path / "leads.csv").write_text("email,source\nc@d.com,chat\n")
    with fsspec.open("memory://sizes/leads.csv", "w") as handle:
        handle.write("email\n")
    assert input_size(str(tmp_path / "leads.csv")) == 26
    assert input_size(f"file://{tmp_path / 'leads.csv'}") == 26
    assert input_size("memory://sizes/leads.csv") == 6
    assert input_size(str(tmp_path / "absent.csv")) is None
    assert input_size("nosuchprotocol://bucket/leads.csv") is None
