"""Reading lead exports (CSV, JSON lines, Parquet; local paths or fsspec URLs) in bounded chunks."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import fsspec
import pandas as pd
import pyarrow as pa

from leadflow.domain.normalize import DateEvidence, date_evidence
from leadflow.domain.submissions import MALFORMED_COLUMN, ROW_COLUMN

T = TypeVar("T")
SAMPLE_BYTES = 1 << 20
# Bytes pyarrow parses at a time: big enough to keep its per-block costs small, small enough to stream.
CSV_BLOCK_BYTES = 4 << 20
STRING = pd.StringDtype("pyarrow")
DELIMITERS = (",", ";", "\t", "|")
FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
COMPRESSIONS = {".gz", ".bz2", ".xz", ".zst", ".zip"}


class LeadFileError(Exception):
    """An input that cannot be read as a lead export; the message says why in one line."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        # True when reading a remote store failed in a way that may pass (timeouts, dropped connections).
        self.transient = transient


@dataclass(frozen=True)
class LeadFile:
    """What we learned about an input before reading it: format, dialect and headers."""

    url: str
    format: str
    headers: list[str] = field(default_factory=list)
    delimiter: str = ","
    encoding: str = "utf-8"


def _format_of(url: str) -> str:
    suffixes = [s.lower() for s in Path(url.split("?", 1)[0]).suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in FORMATS:
        raise LeadFileError(f"{url}: unknown file type (expected .csv, .tsv, .jsonl, .json or .parquet)")
    return FORMATS[suffixes[-1]]


def _open(url: str, mode: str = "rb"):
    return fsspec.open(url, mode, compression="infer")


def input_size(url: str) -> int | None:
    """The size of an input in bytes (compressed, if it is), or None when the store cannot tell."""
    try:
        fs, path = fsspec.core.url_to_fs(url)
        return int(fs.size(path))
    except Exception:  # a size is a hint for planning: reading the input reports the real errors
        return None


# Checked in this order: the UTF-32 LE mark begins with the UTF-16 LE one. The codecs named consume the mark.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Single-byte code pages of Latin scripts, between which a detector often cannot tell on a short sample.
LATIN_CODEPAGES = frozenset({
    "cp1252", "cp1250", "cp1254", "cp1257", "latin_1", "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_9",
    "iso8859_10", "iso8859_13", "iso8859_14", "iso8859_15", "iso8859_16", "mac_roman", "mac_latin2", "cp437",
    "cp850", "cp852", "cp775", "cp858",
})
# A cp1252 symbol of the upper half between two letters (`W¹sik`, `£ukasz` read from cp1250): not Western text.
_MOJIBAKE = re.compile(r"[^\W\d_][\xa1-\xbf\xd7\xf7][^\W\d_]|\ufffd")


def _detect_encoding(sample: bytes) -> str:
    """The encoding of a file from its first bytes: a byte-order mark, else UTF-8, else a charset detector's pick."""
    for bom, encoding in BOMS:
        if sample.startswith(bom):
            return encoding
    try:
        # Incremental decoding tolerates a multi-byte character cut off at the end of the sample.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8-sig"
    except UnicodeDecodeError:
        pass
    import charset_normalizer

    matches = [match.encoding for match in charset_normalizer.from_bytes(sample)]
    if not matches:
        # Excel on Windows writes cp1252 unless told otherwise; it decodes almost any byte sequence.
        return "cp1252"
    if matches[0] not in LATIN_CODEPAGES:
        return matches[0]
    # Among Latin code pages the detector's order is close to a coin toss on a short sample: Excel's cp1252 wins
    # unless reading the bytes that way garbles words, then the detector's best other Latin code page.
    if not _MOJIBAKE.search(sample.decode("cp1252", errors="replace")):
        return "cp1252"
    return next((m for m in matches if m in LATIN_CODEPAGES and m != "cp1252"), matches[0])


def _detect_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def inspect_lead_file(url: str | Path) -> LeadFile:
    """Check that an input exists and is readable, and detect its format, encoding, delimiter and headers."""
    url = str(url)
    fmt = _format_of(url)
    if "://" not in url:
        path = Path(url)
        if not path.exists():
            raise LeadFileError(f"{url}: no such file")
        if path.is_dir():
            raise LeadFileError(f"{url}: is a folder, not a file")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with _open(url) as handle:
                schema = pq.ParquetFile(handle).schema_arrow
            return LeadFile(url=url, format=fmt, headers=list(schema.names))
        with _open(url) as handle:
            sample = handle.read(SAMPLE_BYTES)
    except LeadFileError:
        raise
    except Exception as exc:
        transient = "://" in url and isinstance(exc, TimeoutError | ConnectionError)
        message = f"{url}: cannot read: {type(exc).__name__}: {exc}".splitlines()[0]
        raise LeadFileError(message, transient=transient) from exc
    if not sample.strip():
        raise LeadFileError(f"{url}: file is empty")
    encoding = _detect_encoding(sample)
    text = sample.decode(encoding, errors="replace")
    if fmt == "jsonl":
        first = next((line for line in text.splitlines() if line.strip()), "")
        try:
            record = json.loads(first)
        except ValueError as exc:
            raise LeadFileError(f"{url}: first line is not JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise LeadFileError(f"{url}: expected one JSON object per line")
        return LeadFile(url=url, format=fmt, headers=list(_flat(record)), encoding=encoding)
    header_line = text.lstrip("\ufeff").splitlines()[0]
    delimiter = _detect_delimiter(header_line)
    try:
        headers = list(pd.read_csv(io.StringIO(text.lstrip("\ufeff")), sep=delimiter, nrows=0, dtype="string").columns)
    except Exception as exc:
        raise LeadFileError(f"{url}: cannot parse the CSV header: {exc}".splitlines()[0]) from exc
    return LeadFile(url=url, format=fmt, headers=headers, delimiter=delimiter, encoding=encoding)


def _number_rows(frame: pd.DataFrame, start: int) -> pd.DataFrame:
    frame.index = pd.RangeIndex(start, start + len(frame))
    frame[ROW_COLUMN] = frame.index + 1
    return frame


def _malformed(lines: list[str]) -> pd.DataFrame:
    """Rows holding only the JSON text of lines that were not rows (their fields, or the line itself)."""
    return pd.DataFrame({MALFORMED_COLUMN: pd.array(lines, dtype="string")})


class _BadLines:
    """The lines pyarrow's CSV parser hands back: blank ones counted, the rest (short or long rows) kept as fields."""

    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter
        self.blank = 0
        self.malformed: list[str] = []

    def __call__(self, row: Any) -> str:
        text = row.text or ""
        if not text.strip(" \t\r\n"):
            self.blank += 1
        else:
            fields = next(csv.reader(io.StringIO(text), delimiter=self.delimiter), [])
            self.malformed.append(json.dumps(fields, ensure_ascii=False))
        return "skip"

    def take(self) -> tuple[int, list[str]]:
        blank, malformed = self.blank, self.malformed
        self.blank, self.malformed = 0, []
        return blank, malformed


def _csv_frame(table: Any, bad: _BadLines) -> pd.DataFrame:
    """A table of string columns as a frame, with the bad lines met so far after its rows.

    A blank line becomes an empty row, which intake counts as blank (not quarantined); a short or long row becomes
    a malformed row (`malformed_row`) that keeps its fields.
    """
    frame = table.to_pandas(types_mapper={pa.string(): STRING, pa.large_string(): STRING}.get)
    blank, malformed = bad.take()
    extra = []
    if malformed:
        extra.append(_malformed(malformed))
    if blank:
        extra.append(pd.DataFrame({MALFORMED_COLUMN: pd.array([pd.NA] * blank, dtype="string")}))
    if extra:
        frame = pd.concat([frame, *extra], ignore_index=True)
        for column in table.column_names:
            frame[column] = frame[column].astype(STRING)
    return frame


def _read_csv(lead_file: LeadFile, chunk_size: int) -> Iterator[pd.DataFrame]:
    """CSV rows in chunks of exactly `chunk_size` (the last one smaller), every value a string, '' missing.

    pyarrow's parser reports each line whose field count differs from the header's (pandas pads a short row with
    empty values, so a missing field and an empty one would look the same); those become malformed rows.
    """
    from pyarrow import csv as pacsv

    bad = _BadLines(lead_file.delimiter)
    encoding = "utf8" if lead_file.encoding in ("utf-8-sig", "utf-8") else lead_file.encoding
    read = pacsv.ReadOptions(column_names=lead_file.headers, skip_rows=1, encoding=encoding,
                             block_size=CSV_BLOCK_BYTES)
    parse = pacsv.ParseOptions(delimiter=lead_file.delimiter, newlines_in_values=True, ignore_empty_lines=False,
                               invalid_row_handler=bad)
    # "NA" is Namibia and "null" can be a surname: only empty cells are missing.
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(lead_file.headers, pa.string()), null_values=[""],
                                   strings_can_be_null=True, quoted_strings_can_be_null=True)
    pending: list[Any] = []
    held = 0
    with _open(lead_file.url) as handle:
        for batch in pacsv.open_csv(handle, read_options=read, parse_options=parse, convert_options=convert):
            pending.append(batch)
            held += batch.num_rows
            while held >= chunk_size:
                table = pa.Table.from_batches(pending)
                yield _csv_frame(table.slice(0, chunk_size), bad)
                rest = table.slice(chunk_size)
                pending, held = rest.to_batches(), rest.num_rows
    if held or bad.blank or bad.malformed:
        empty = pa.schema([(h, pa.string()) for h in lead_file.headers])
        yield _csv_frame(pa.Table.from_batches(pending, schema=empty), bad)


def _flatten(record: dict, prefix: str = "") -> dict:
    """A JSON object with nested objects spread into dotted keys (`{"name": {"given": "Ann"}}` -> `name.given`).

    Lists stay values: intake quarantines a list that lands in a lead field (`nested_value`) and keeps it in the
    raw payload as JSON. An empty object is a missing value.
    """
    out: dict = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if value:
                out.update(_flatten(value, f"{name}."))
            else:
                out[name] = None
        else:
            out[name] = value
    return out


def _flat(record: dict) -> dict:
    return _flatten(record) if any(isinstance(value, dict) for value in record.values()) else record


def _read_jsonl(lead_file: LeadFile, chunk_size: int) -> Iterator[pd.DataFrame]:
    with _open(lead_file.url) as handle:
        records: list[dict] = []
        malformed: list[object] = []
        for raw in io.TextIOWrapper(handle, encoding=lead_file.encoding):
            # A blank line separates nothing in JSON lines (backfill window files split before 2026-12-05 have them).
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(_flat(record))
            else:
                malformed.append(raw.rstrip("\n"))
            if len(records) + len(malformed) >= chunk_size:
                yield _jsonl_frame(records, malformed)
                records, malformed = [], []
        if records or malformed:
            yield _jsonl_frame(records, malformed)


def _jsonl_frame(records: list[dict], malformed: list[object]) -> pd.DataFrame:
    """Records as a frame, then the lines that were no objects (malformed rows keeping the line's text)."""
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    if not malformed:
        return frame
    return pd.concat([frame, _malformed([json.dumps(line) for line in malformed])], ignore_index=True)


def _read_parquet(lead_file: LeadFile, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    with _open(lead_file.url) as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=chunk_size):
            yield batch.to_pandas()


READERS = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}


_END = object()


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """The same items in the same order, each next one read by a helper thread while the caller uses this one.

    pandas' CSV tokenizer and SQLite's statements release the GIL, so the read of chunk N+1 can overlap the writes
    of chunk N. Exactly one item is read ahead, so memory grows by one chunk.
    Errors surface where the failing item would have been.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="leadflow-read-ahead") as pool:
        pending = pool.submit(next, items, _END)
        while (item := pending.result()) is not _END:
            pending = pool.submit(next, items, _END)
            yield item


def iter_lead_chunks(lead_file: LeadFile, chunk_size: int) -> Iterator[pd.DataFrame]:
    """Yield the input as raw frames of at most about `chunk_size` rows, numbered by `_row` (1-based)."""
    start = 0
    try:
        for chunk in READERS[lead_file.format](lead_file, chunk_size):
            if MALFORMED_COLUMN not in chunk.columns:
                chunk[MALFORMED_COLUMN] = pd.Series(pd.NA, index=chunk.index, dtype="string")
            yield _number_rows(chunk, start)
            start += len(chunk)
    except UnicodeDecodeError as exc:
        raise LeadFileError(
            f"{lead_file.url}: not valid {lead_file.encoding} after row {start} ({exc.reason}); re-export as UTF-8"
        ) from exc
    except pa.ArrowInvalid as exc:
        if "utf8" in str(exc).lower():
            raise LeadFileError(f"{lead_file.url}: not valid {lead_file.encoding} after row {start}; re-export as "
                                "UTF-8") from exc
        raise LeadFileError(f"{lead_file.url}: unreadable after row {start}: {exc}".splitlines()[0]) from exc
    except (OSError, ValueError, pd.errors.ParserError, pa.ArrowException) as exc:
        raise LeadFileError(f"{lead_file.url}: unreadable after row {start}: {exc}".splitlines()[0]) from exc


def scan_date_evidence(lead_file: LeadFile, header: str, chunk_size: int = 100_000) -> DateEvidence:
    """What a whole file's date column says about its day/month order: one more pass over the input.

    Only taken when the first chunks leave the order open (no day/month part over 12 yet) and there is more.
    """
    evidence = DateEvidence()
    for chunk in iter_lead_chunks(lead_file, chunk_size):
        if header in chunk.columns:
            evidence = evidence | date_evidence(chunk[header])
        if evidence.day_first and evidence.month_first:
            break
    return evidence
