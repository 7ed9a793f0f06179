"""Pure inbox logic: what `leadflow submit` refuses at once, and inbox rows as the raw chunks intake reads."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

import pandas as pd

from leadflow.domain import normalize as nz
from leadflow.domain.contract import resolve_columns
from leadflow.domain.spam import mask_email
from leadflow.domain.submissions import MALFORMED_COLUMN, ROW_COLUMN

# The origin an inbox batch records instead of a file path.
INBOX_ORIGIN = "lead_inbox"

class InboxError(ValueError):
    """A lead that cannot be posted to the inbox; the message says why in one line."""


def _utc(value: Any) -> datetime:
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()


def check_lead(payload: Any) -> None:
    """Refuse at once what intake could only quarantine: no object, or no valid email (for `leadflow submit`)."""
    if not isinstance(payload, dict) or not payload:
        raise InboxError("a lead must be a non-empty JSON object of field -> value")
    field_name = next((h for h, c in resolve_columns([str(k) for k in payload]).items() if c == "email"), None)
    if field_name is None or payload[field_name] in (None, ""):
        raise InboxError("the lead has no email")
    # One value: the scalar twins of normalize_email / is_valid_email (milliseconds of pandas per lead saved).
    if not nz.is_valid_email_one(nz.normalize_email_one(str(payload[field_name]))):
        raise InboxError(f"the lead's email {mask_email(str(payload[field_name]))} is not a valid address")


def inbox_frame(rows: list[Any], *, replay: bool = False) -> pd.DataFrame:
    """Inbox rows (id, payload, received_at) in the raw chunk shape intake reads from files.

    `_row` is the inbox id, so a quarantine record names the inbox row it came from. A row without a submission
    time gets the time it was received, as the data contract says for live posts; in replay mode it does not, so
    the row is quarantined as `missing_submitted_at` instead of being dated to the replay.
    """
    if not rows:
        return pd.DataFrame({ROW_COLUMN: pd.Series(dtype="int64"), MALFORMED_COLUMN: pd.Series(dtype="string")})
    records: list[dict[str, Any]] = []
    malformed: list[Any] = []
    for _id, payload, _received in rows:
        if isinstance(payload, str):
            with contextlib.suppress(ValueError):
                payload = json.loads(payload)
        if isinstance(payload, dict):
            records.append(payload)
            malformed.append(pd.NA)
        else:
            records.append({})
            malformed.append(json.dumps(payload, default=str, ensure_ascii=False))
    frame = pd.DataFrame.from_records(records, index=pd.RangeIndex(len(rows)))
    frame[MALFORMED_COLUMN] = pd.array(malformed, dtype="string")
    if not replay:
        target = next((h for h, c in resolve_columns([str(c) for c in frame.columns]).items()
                       if c == "submitted_at"), "submitted_at")
        received = pd.Series([_utc(r[2]).isoformat() for r in rows], index=frame.index, dtype="string")
        current = frame[target].astype("string") if target in frame.columns else pd.Series(
            pd.NA, index=frame.index, dtype="string")
        blank = current.isna() | (current.str.strip() == "")
        has_payload = frame[MALFORMED_COLUMN].isna()
        frame[target] = current.where(~(blank & has_payload), received)
    frame[ROW_COLUMN] = [int(r[0]) for r in rows]
    return frame


def canonical_frame(raw: pd.DataFrame, column_map: dict[str, str] | None) -> pd.DataFrame:
    """Rename the fields a chunk's senders used (aliases, a column map) to canonical columns; others stay."""
    headers = [str(c) for c in raw.columns if c not in (ROW_COLUMN, MALFORMED_COLUMN)]
    frame = raw
    # Each header on its own: two spellings of one field (from different senders) both map to it.
    targets = {h: c for h in headers for c in resolve_columns([h], column_map).values()}
    for header, column in targets.items():
        if header == column:
            continue
        if column in frame.columns:
            # Senders in one chunk may spell a field differently: each row keeps the value it gave.
            frame = frame.assign(**{column: frame[column].where(frame[column].notna(), frame[header])})
            frame = frame.drop(columns=[header])
        else:
            frame = frame.rename(columns={header: column})
    return frame
