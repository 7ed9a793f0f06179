"""Access and erasure requests for one person: export everything the CRM holds about them, or erase it.

The erasure deletes the person's rows in one transaction, then their .eml files, and keeps one `person_erasures`
row: a keyed hash (HMAC-SHA256 under LEADFLOW_HASH_KEY) of the address, the time, the reason and the counts.
Their lead_events go with the lead, so that row is the audit record of the erasure. Logs never name the address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from leadflow.crm import people
from leadflow.crm.store import Store
from leadflow.domain.normalize import is_valid_email, normalize_email
from leadflow.domain.privacy import keyed_hash
from leadflow.io.senders import eml_path

logger = logging.getLogger(__name__)


class PersonRequestError(ValueError):
    """An export or erasure request that cannot run: a malformed address or no hash key (says which, not who)."""


@dataclass
class ErasureSummary:
    """What an erasure removed (or, in a dry run, would remove) where."""

    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    eml_files: int = 0
    erasure_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready data (no address)."""
        return {"dry_run": self.dry_run, "erasure_id": self.erasure_id, "removed": self.counts,
                "eml_files": self.eml_files}


def person_email(email: str) -> str:
    """The address as the CRM keys people by it (trimmed lower case); a malformed one is refused."""
    normalized = normalize_email(pd.Series([email], dtype="string"))
    if normalized.isna().iloc[0] or not bool(is_valid_email(normalized).iloc[0]):
        raise PersonRequestError("not a valid email address")
    return str(normalized.iloc[0])


def export_person(store: Store, email: str) -> dict[str, Any]:
    """Everything the CRM holds about one person, by table, for an access request."""
    address = person_email(email)
    with store.engine.connect() as conn:
        rows = people.person_rows(conn, address)
    logger.info("person export: %s", {name: len(found) for name, found in rows.items()})
    return {"email": address, "exported_at": datetime.now(UTC).isoformat(), "tables": rows}


def erase_person(store: Store, email: str, *, hash_key: str | None, outbox_dir: Path, reason: str | None = None,
                 dry_run: bool = False, now: datetime | None = None) -> ErasureSummary:
    """Delete one person everywhere in one transaction, then their .eml files; record the erasure by keyed hash.

    A dry run reads the same rows and files and changes nothing. No key, no erasure: a hash under a constant key
    would be as reversible as a bare one.
    """
    if not hash_key:
        raise PersonRequestError("LEADFLOW_HASH_KEY is not set: an erasure record needs a secret key for its hash")
    address = person_email(email)
    summary = ErasureSummary(dry_run=dry_run)
    with store.begin() as conn:
        rows = people.person_rows(conn, address)
        keys = sorted({str(r["idempotency_key"]) for r in rows["outbox"]})
        files = [p for p in (eml_path(outbox_dir, k) for k in keys) if p.exists()]
        summary.eml_files = len(files)
        if dry_run:
            summary.counts = {"capacity_released": sum(bool(r["holds_capacity"]) and r["owner_id"] is not None
                                                    for r in rows["leads"]),
                              **{name: len(found) for name, found in rows.items()}}
            return summary
        summary.counts = people.delete_person_rows(conn, rows)
        summary.erasure_id = people.record_erasure(
            conn, keyed_hash(address, hash_key), now or datetime.now(UTC), reason,
            {**summary.counts, "eml_files": len(files)})
    # After the commit: a rolled-back erasure must not have taken the files with it.
    for path in files:
        path.unlink(missing_ok=True)
    logger.info("person erased: erasure record %s, removed %s, %d .eml files",
                summary.erasure_id, summary.counts, summary.eml_files)
    return summary
