"""Status exports: reading a sales tool's CSV of lead status changes into the columns status updates need."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from leadflow.domain.status import StatusFileError, resolve_headers


def read_status_file(path: str | Path) -> pd.DataFrame:
    """Read a status CSV export into row, email, status, reason, changed_at text columns."""
    try:
        raw = pd.read_csv(path, dtype="string", keep_default_na=False, skip_blank_lines=True,
                          encoding="utf-8-sig", on_bad_lines="error")
    except FileNotFoundError as exc:
        raise StatusFileError(f"no such file: {path}") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise StatusFileError(f"cannot read {path} as CSV: {str(exc).splitlines()[0]}") from exc
    mapping = resolve_headers(list(raw.columns))
    frame = raw[list(mapping)].rename(columns=mapping)
    if "reason" not in frame.columns:
        frame["reason"] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame.insert(0, "row", range(1, len(frame) + 1))
    return frame[["row", "email", "status", "reason", "changed_at"]]
