"""Reading lead exports (CSV, JSON lines, Parquet; local paths or fsspec URLs) in bounded chunks."""

from __future__ import annotations

import codecs
import io
import json
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import fsspec
import pandas as pd

from leadflow.domain.normalize import DateEvidence, date_evidence
from leadflow.domain.submissions import MALFORMED_COLUMN, ROW_COLUMN

T = TypeVar("T")
SAMPLE_BYTES = 1 << 20
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


def _detect_encoding(sample: bytes) -> str:
    try:
        # Incremental decoding tolerates a multi-byte character cut off at the end of the sample.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8-sig"
    except UnicodeDecodeError:
        # Excel on Windows writes cp1252 unless told otherwise; it decodes almost any byte sequence.
        return "cp1252"


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
        return LeadFile(url=url, format=fmt, headers=list(record), encoding=encoding)
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


def _csv_chunks(lead_file: LeadFile, chunk_size: int, skip_rows: int, python_engine: bool) -> Iterator[pd.DataFrame]:
    bad_lines: list[list[str]] = []
    options: dict = {
        "sep": lead_file.delimiter,
        "dtype": "string",
        # "NA" is Namibia and "null" can be a surname: only empty cells are missing.
        "keep_default_na": False,
        "na_values": [""],
        "chunksize": chunk_size,
        "encoding": lead_file.encoding,
        "skipinitialspace": False,
        # Explicit names: a line with extra fields is then a bad line, not silently an implicit index column.
        "names": lead_file.headers,
        "header": 0,
    }
    if skip_rows:
        options["skiprows"] = range(1, skip_rows + 1)
    if python_engine:
        options.update(engine="python", on_bad_lines=lambda fields: bad_lines.append(fields) and None)
    else:
        # The C parser would take extra fields on a first line as an index; with index_col=False it only warns
        # that it truncates them. Either way is lost data, so the warning becomes an error and we fall back.
        options["index_col"] = False
    with _open(lead_file.url) as handle, warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        for chunk in pd.read_csv(handle, **options):
            if bad_lines:
                chunk = pd.concat([chunk, _malformed(bad_lines)], ignore_index=True)
                bad_lines.clear()
            yield chunk
    if bad_lines:
        yield _malformed(bad_lines)


def _malformed(lines: list) -> pd.DataFrame:
    return pd.DataFrame({MALFORMED_COLUMN: pd.array([json.dumps(line) for line in lines], dtype="string")})


def _read_csv(lead_file: LeadFile, chunk_size: int) -> Iterator[pd.DataFrame]:
    done = 0
    try:
        for chunk in _csv_chunks(lead_file, chunk_size, 0, python_engine=False):
            done += len(chunk)
            yield chunk
        return
    except (pd.errors.ParserError, pd.errors.ParserWarning):
        # A line with too many fields stops the fast C parser; resume after the rows already read with the
        # python parser, which hands such lines to us so they are quarantined instead of dropped.
        pass
    yield from _csv_chunks(lead_file, chunk_size, done, python_engine=True)


def _read_jsonl(lead_file: LeadFile, chunk_size: int) -> Iterator[pd.DataFrame]:
    with _open(lead_file.url) as handle:
        records: list[dict] = []
        malformed: list[object] = []
        for raw in io.TextIOWrapper(handle, encoding=lead_file.encoding):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                malformed.append(raw.rstrip("\n"))
            if len(records) + len(malformed) >= chunk_size:
                yield _jsonl_frame(records, malformed)
                records, malformed = [], []
        if records or malformed:
            yield _jsonl_frame(records, malformed)


def _jsonl_frame(records: list[dict], malformed: list[object]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    return pd.concat([frame, _malformed(malformed)], ignore_index=True) if malformed else frame


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
    except (OSError, ValueError, pd.errors.ParserError) as exc:
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
