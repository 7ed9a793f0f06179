"""Reading real-world exports: formats, encodings, delimiters, broken lines, chunking."""

from __future__ import annotations

import codecs
import gzip
import json

import pandas as pd
import pytest
from pandas import NA

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
    assert frame["meta.x"].iloc[0] == 1 and "meta" not in frame.columns


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


# --- encodings ------------------------------------------------------------------------------------------------

TEXT = "email,first_name,company\na@b.com,Zoë,Müller & Söhne\nc@d.io,李雷,Café à la crème\n"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "utf-8"])
def test_unicode_files_with_a_byte_order_mark_are_read(tmp_path, codec):
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE,
           "utf-32-be": codecs.BOM_UTF32_BE, "utf-8": codecs.BOM_UTF8}[codec]
    path = tmp_path / "export.csv"
    path.write_bytes(bom + TEXT.encode(codec))
    info = inspect_lead_file(path)
    assert info.headers == ["email", "first_name", "company"]
    frame = read_all(path)
    assert frame["first_name"].tolist() == ["Zoë", "李雷"]
    assert frame["company"].tolist() == ["Müller & Söhne", "Café à la crème"]


def test_utf16_json_lines_are_read(tmp_path):
    path = tmp_path / "leads.jsonl"
    path.write_bytes(codecs.BOM_UTF16_LE + '{"email": "a@b.com", "first_name": "Zoë"}\n'.encode("utf-16-le"))
    assert inspect_lead_file(path).headers == ["email", "first_name"]
    assert read_all(path)["first_name"].tolist() == ["Zoë"]


@pytest.mark.parametrize(
    ("codec", "names"),
    [
        ("cp1252", ["François Lefèvre", "Zoë Müller", "Ægir Ørsted"]),
        ("latin-1", ["Jürgen Größe", "José Ñúñez", "Åsa Öberg"]),
        ("cp1250", ["Łukasz Wąsik", "Żaneta Śliwa", "Zdeněk Říha"]),
        ("cp1251", ["Иван Петров", "Ольга Смирнова", "Пётр Ильич"]),
    ],
)
def test_legacy_code_pages_are_detected(tmp_path, codec, names):
    path = tmp_path / "excel.csv"
    rows = "".join(f"p{i}@example.com,{name},Zakłady\n".replace("Zakłady", "Acme") for i, name in enumerate(names))
    path.write_bytes(("email,full_name,company\n" + rows * 3).encode(codec))
    assert read_all(path)["full_name"].tolist()[:3] == names


def test_a_file_that_turns_out_not_to_be_utf8_says_so(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"email,first_name\n" + b"a@b.com,Ann\n" * 100_000 + "c@d.com,Zoë\n".encode("cp1252"))
    with pytest.raises(LeadFileError, match="not valid utf-8-sig after row"):
        read_all(path, chunk_size=100_000)


# --- shapes ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 2, 1000])
def test_short_rows_are_malformed_and_blank_lines_are_empty_rows(tmp_path, chunk_size):
    path = tmp_path / "export.csv"
    path.write_text('email,source,company\na@b.com,web,Acme\nc@d.com,web\n\ne@f.com,"chat, live",\n'
                    '"g@h.com",web,"Multi\nline"\n\n  \n')
    frame = read_all(path, chunk_size=chunk_size)
    assert len(frame) == 7
    assert frame[ROW_COLUMN].tolist() == list(range(1, 8))
    good = frame.loc[frame["email"].notna()]
    assert good["email"].tolist() == ["a@b.com", "e@f.com", "g@h.com"]
    # an empty last field is a missing value; a missing last field makes the line malformed
    assert good["company"].tolist() == ["Acme", NA, "Multi\nline"] and good["source"].tolist()[1] == "chat, live"
    assert [json.loads(v) for v in frame[MALFORMED_COLUMN].dropna()] == [["c@d.com", "web"]]
    blank = frame.drop(columns=[ROW_COLUMN]).isna().all(axis=1)
    assert int(blank.sum()) == 3


def test_a_header_only_file_has_no_rows(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("email,source\n")
    assert list(iter_lead_chunks(inspect_lead_file(path), 10)) == []


def test_nested_objects_are_flattened_into_dotted_columns(tmp_path):
    path = tmp_path / "people.jsonl"
    path.write_text('{"email": "a@b.com", "name": {"given": "Ann", "family": {"first": "Lee"}}, "tags": ["x"]}\n'
                    '{"email": "c@d.com", "name": {}, "company": {"name": "Acme"}}\n')
    assert inspect_lead_file(path).headers == ["email", "name.given", "name.family.first", "tags"]
    frame = read_all(path)
    assert frame["name.given"].tolist()[0] == "Ann" and frame["name.family.first"].tolist()[0] == "Lee"
    assert frame["company.name"].tolist()[1] == "Acme" and frame["name"].isna().tolist() == [True, True]
    assert frame["tags"].tolist()[0] == ["x"]
