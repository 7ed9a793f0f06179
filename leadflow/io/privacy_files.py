"""Personal data in files: age out old .eml files and backfill window files, and erase one person from the latter.

Backfill stages each split under `<backfill_dir>/<input key>/<window>-<start>-<end>/` (manifest.json, windows/*.jsonl,
staging/ while splitting; io/backfill_files.py). A whole staging folder goes at once when nothing in it was written
for the retention period: a manifest without its window files would make a resumed backfill read files that are gone,
while without the folder the backfill simply splits its input again (the ledger still skips finished windows).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from leadflow.domain.privacy import payload_carries

MANIFEST = "manifest.json"


@dataclass
class FilePurge:
    """Files a retention pass removed (or would remove) from one folder."""

    files: int = 0
    folders: int = 0


@dataclass
class FileErasure:
    """Rows of one person removed (or that would be) from the backfill window files, and the files they were in."""

    files: int = 0
    rows: int = 0


def _older(path: Path, cutoff: datetime) -> bool:
    return path.stat().st_mtime < cutoff.timestamp()


def purge_eml_files(outbox_dir: Path, cutoff: datetime, *, dry_run: bool = False) -> int:
    """Delete the .eml files of the outbox folder last written before cutoff; returns how many (would) go."""
    folder = Path(outbox_dir)
    if not folder.is_dir():
        return 0
    expired = [p for p in folder.glob("*.eml") if p.is_file() and _older(p, cutoff)]
    if not dry_run:
        for path in expired:
            path.unlink(missing_ok=True)
    return len(expired)


def eml_files_carrying(outbox_dir: Path, email: str) -> list[Path]:
    """The .eml files of the outbox folder that name this normalized address anywhere (headers or body).

    Finds messages whose outbox row is already gone (a purged spam lead's auto-response), which the row keys cannot.
    """
    folder = Path(outbox_dir)
    if not folder.is_dir():
        return []
    needle = email.encode("utf-8")
    found = []
    for path in sorted(folder.glob("*.eml")):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        if needle in data.lower():
            found.append(path)
    return found


def _staging_folders(backfill_dir: Path) -> list[Path]:
    """The staging folders of every backfill split under backfill_dir (`<input key>/<window plan>`)."""
    root = Path(backfill_dir)
    if not root.is_dir():
        return []
    return sorted(p for key in root.iterdir() if key.is_dir() for p in key.iterdir() if p.is_dir())


def purge_backfill_windows(backfill_dir: Path, cutoff: datetime, *, dry_run: bool = False) -> FilePurge:
    """Delete each backfill staging folder with nothing written since cutoff; counts its window files and folders."""
    result = FilePurge()
    for folder in _staging_folders(backfill_dir):
        files = [p for p in folder.rglob("*") if p.is_file()]
        if files and not all(_older(p, cutoff) for p in files):
            continue
        result.folders += 1
        result.files += sum(p.suffix == ".jsonl" for p in files)
        if not dry_run:
            shutil.rmtree(folder, ignore_errors=True)
            if not any(folder.parent.iterdir()):
                folder.parent.rmdir()
    return result


def _line_carries(line: str, email: str, prefilter: bool) -> bool:
    if prefilter and email not in line.lower():
        return False
    try:
        record = json.loads(line)
    except ValueError:
        return email in line.lower()
    return payload_carries(record, email)


def _prefilter(email: str) -> bool:
    # JSON escapes these characters, so a line holding such an address cannot be found by plain substring.
    return not set(email) & {'"', "\\", "/"} and email.isascii()


def backfill_rows_carrying(backfill_dir: Path, email: str) -> list[dict[str, Any]]:
    """The rows of the backfill window files that carry this normalized address, with the file each is in."""
    prefilter, found = _prefilter(email), []
    root = Path(backfill_dir)
    for folder in _staging_folders(root):
        for path in sorted(folder.rglob("*.jsonl")):
            with path.open(encoding="utf-8", errors="surrogateescape") as handle:
                for line in handle:
                    if line.strip() and _line_carries(line, email, prefilter):
                        try:
                            row = json.loads(line)
                        except ValueError:
                            row = {"_unparsed": line.rstrip("\n")}
                        found.append({"file": str(path.relative_to(root)), "row": row})
    return found


def erase_from_backfill_files(backfill_dir: Path, email: str, *, dry_run: bool = False) -> FileErasure:
    """Remove every row carrying this normalized address from the backfill window files; counts rows and files.

    Each changed file is rewritten atomically and its manifest's row count lowered, so a resumed backfill reads the
    remaining rows as before.
    """
    result = FileErasure()
    prefilter = _prefilter(email)
    for folder in _staging_folders(backfill_dir):
        removed: dict[str, int] = {}
        for path in sorted(folder.rglob("*.jsonl")):
            with path.open(encoding="utf-8", errors="surrogateescape") as handle:
                lines = handle.readlines()
            keep = [line for line in lines if not line.strip() or not _line_carries(line, email, prefilter)]
            if len(keep) == len(lines):
                continue
            result.files += 1
            result.rows += len(lines) - len(keep)
            removed[path.stem] = removed.get(path.stem, 0) + len(lines) - len(keep)
            if not dry_run:
                tmp = path.with_name(f".{path.name}.erase.tmp")
                # A file cut short by a kill may end inside a character: its bytes are written back as they were.
                tmp.write_text("".join(keep), encoding="utf-8", errors="surrogateescape")
                os.replace(tmp, path)
        manifest = folder / MANIFEST
        if removed and not dry_run and manifest.is_file():
            data = json.loads(manifest.read_text(encoding="utf-8"))
            windows = data.get("windows", {})
            for window, rows in removed.items():
                if window in windows:
                    windows[window] = max(int(windows[window]) - rows, 0)
            tmp = manifest.with_suffix(".erase.tmp")
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            os.replace(tmp, manifest)
    return result


class RequestFileError(ValueError):
    """An erasure request file that cannot be read (names the file, never a line of it)."""


def read_erasure_requests(path: str | Path) -> list[str]:
    """The addresses of an erasure request file: one per line, or a CSV whose header has an `email` column.

    Blank lines and lines starting with `#` are skipped; addresses are returned as written (checked by the caller).
    """
    import csv

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RequestFileError(f"{file.name}: cannot read the request file ({type(exc).__name__})") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    if "email" in header:
        column = header.index("email")
        return [row[column].strip() if column < len(row) else "" for row in csv.reader(lines[1:])]
    return [line.strip() for line in lines]
