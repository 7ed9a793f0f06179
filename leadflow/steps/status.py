"""Status steps: import a sales tool's status export, or set one lead's status, recorded by crm/status."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from leadflow.crm.status import apply_status_changes
from leadflow.crm.store import Store
from leadflow.domain.status import StatusResult, prepare_changes
from leadflow.io.status_files import read_status_file


def import_status_file(store: Store, path: str | Path, now: datetime, by: str | None = None) -> StatusResult:
    """Read a sales-tool status export and record every understandable row; the rest come back as rejects."""
    frame = read_status_file(path)
    good, rejects = prepare_changes(frame, now)
    result = apply_status_changes(store, good, by or f"import:{Path(str(path)).name}", now)
    result.rows = len(frame)
    result.rejected = sorted([*rejects, *result.rejected], key=lambda r: r.row)
    return result


def set_status(store: Store, email: str, status: str, reason: str | None, now: datetime, by: str = "cli"
               ) -> StatusResult:
    """Change one lead's status now (the `leadflow lead status` command)."""
    frame = pd.DataFrame({"row": [1], "email": [email], "status": [status], "reason": [reason],
                          "changed_at": [pd.Timestamp(now).isoformat()]})
    good, rejects = prepare_changes(frame, now)
    result = apply_status_changes(store, good, by, now)
    result.rows = 1
    result.rejected = [*rejects, *result.rejected]
    return result
