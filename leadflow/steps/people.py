"""Access and erasure requests for one person: export everything the CRM holds about them, or erase it.

The erasure deletes the person's rows in one transaction (with the tombstone of a spam lead of theirs that was
already purged: the erasure record supersedes it), then their .eml files and their rows in the backfill window files,
and keeps one `person_erasures` row: a keyed hash (HMAC-SHA256 under LEADFLOW_HASH_KEY) of the address, the time, the
reason and the counts. Their lead_events go with the lead, so that row is the audit record of the erasure. Logs never
name the address.
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
from leadflow.io.privacy_files import backfill_rows_carrying, eml_files_carrying, erase_from_backfill_files
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
    backfill_rows: int = 0
    backfill_files: int = 0
    erasure_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready data (no address)."""
        return {"dry_run": self.dry_run, "erasure_id": self.erasure_id, "removed": self.counts,
                "eml_files": self.eml_files, "backfill_rows": self.backfill_rows,
                "backfill_files": self.backfill_files}


def person_email(email: str) -> str:
    """The address as the CRM keys people by it (trimmed lower case); a malformed one is refused."""
    normalized = normalize_email(pd.Series([email], dtype="string"))
    if normalized.isna().iloc[0] or not bool(is_valid_email(normalized).iloc[0]):
        raise PersonRequestError("not a valid email address")
    return str(normalized.iloc[0])


def export_person(store: Store, email: str, hash_key: str | None = None, *, outbox_dir: Path | None = None,
                  backfill_dir: Path | None = None) -> dict[str, Any]:
    """Everything the CRM holds about one person, by table, for an access request.

    With the hash key, rows that only their keyed hash links to them (a purged spam lead's tombstone) come too;
    with the folders, `files` lists their .eml files and their rows in the backfill window files.
    """
    address = person_email(email)
    with store.engine.connect() as conn:
        rows = people.person_rows(conn, address, keyed_hash(address, hash_key) if hash_key else None)
    files: dict[str, list[Any]] = {}
    if outbox_dir is not None:
        keys = {str(r["idempotency_key"]) for r in rows["outbox"]}
        found = {p for p in (eml_path(outbox_dir, k) for k in keys) if p.exists()}
        files["eml_files"] = sorted(p.name for p in found | set(eml_files_carrying(outbox_dir, address)))
    if backfill_dir is not None:
        files["backfill_window_rows"] = backfill_rows_carrying(backfill_dir, address)
    logger.info("person export: %s", {name: len(found) for name, found in {**rows, **files}.items()})
    return {"email": address, "exported_at": datetime.now(UTC).isoformat(), "tables": rows, "files": files}


def erase_person(store: Store, email: str, *, hash_key: str | None, outbox_dir: Path, reason: str | None = None,
                 dry_run: bool = False, now: datetime | None = None,
                 backfill_dir: Path | None = None) -> ErasureSummary:
    """Delete one person everywhere in one transaction, then their .eml files and backfill window rows; record the
    erasure by keyed hash.

    A dry run reads the same rows and files and changes nothing. No key, no erasure: a hash under a constant key
    would be as reversible as a bare one.
    """
    if not hash_key:
        raise PersonRequestError("LEADFLOW_HASH_KEY is not set: an erasure record needs a secret key for its hash")
    address = person_email(email)
    email_hash = keyed_hash(address, hash_key)
    summary = ErasureSummary(dry_run=dry_run)
    with store.begin() as conn:
        rows = people.person_rows(conn, address, email_hash)
        keys = sorted({str(r["idempotency_key"]) for r in rows["outbox"]})
        files = sorted({p for p in (eml_path(outbox_dir, k) for k in keys) if p.exists()}
                       | set(eml_files_carrying(outbox_dir, address)))
        summary.eml_files = len(files)
        if dry_run:
            summary.counts = {"capacity_released": sum(bool(r["holds_capacity"]) and r["owner_id"] is not None
                                                    for r in rows["leads"]),
                              **{name: len(found) for name, found in rows.items()}}
            if backfill_dir is not None:
                found = erase_from_backfill_files(backfill_dir, address, dry_run=True)
                summary.backfill_rows, summary.backfill_files = found.rows, found.files
            return summary
        summary.counts = people.delete_person_rows(conn, rows)
        summary.erasure_id = people.record_erasure(conn, email_hash, now or datetime.now(UTC), reason,
                                                   {**summary.counts, "eml_files": len(files)})
    # After the commit: a rolled-back erasure must not have taken the files with it. Should a file step fail, the
    # erasure record already stands, and erasing again finds the files that are left by their contents.
    for path in files:
        path.unlink(missing_ok=True)
    if backfill_dir is not None:
        done = erase_from_backfill_files(backfill_dir, address)
        summary.backfill_rows, summary.backfill_files = done.rows, done.files
    logger.info("person erased: erasure record %s, removed %s, %d .eml files, %d backfill rows in %d files",
                summary.erasure_id, summary.counts, summary.eml_files, summary.backfill_rows, summary.backfill_files)
    return summary


@dataclass
class BatchErasureSummary:
    """What a batch of erasure requests did, summed over its people; counts only, never an address."""

    dry_run: bool
    requests: int = 0
    erased: int = 0
    not_found: int = 0
    invalid: list[int] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)
    eml_files: int = 0
    backfill_rows: int = 0
    erasure_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts; `invalid` lists the 1-based positions of malformed requests."""
        return {"dry_run": self.dry_run, "requests": self.requests, "erased": self.erased,
                "not_found": self.not_found, "invalid": self.invalid, "removed": self.removed,
                "eml_files": self.eml_files, "backfill_rows": self.backfill_rows, "erasure_ids": self.erasure_ids}


def erase_people(store: Store, emails: list[str], *, hash_key: str | None, outbox_dir: Path,
                 backfill_dir: Path | None, reason: str | None = None, dry_run: bool = False) -> BatchErasureSummary:
    """Erase each requested person (one erasure each, as `erase_person`); a malformed address is counted, not fatal.

    The same person named twice is erased once. A person with nothing stored still gets an erasure record, so
    that their rows in an old export or backfill file are quarantined when imported later.
    """
    if not hash_key:
        raise PersonRequestError("LEADFLOW_HASH_KEY is not set: an erasure record needs a secret key for its hash")
    summary = BatchErasureSummary(dry_run=dry_run, requests=len(emails))
    seen: set[str] = set()
    for position, email in enumerate(emails, start=1):
        try:
            address = person_email(email)
        except PersonRequestError:
            summary.invalid.append(position)
            continue
        if address in seen:
            continue
        seen.add(address)
        one = erase_person(store, address, hash_key=hash_key, outbox_dir=outbox_dir, reason=reason,
                           dry_run=dry_run, backfill_dir=backfill_dir)
        found = sum(v for k, v in one.counts.items() if k != "capacity_released") + one.eml_files + one.backfill_rows
        summary.erased += bool(found)
        summary.not_found += not found
        for name, count in one.counts.items():
            summary.removed[name] = summary.removed.get(name, 0) + count
        summary.eml_files += one.eml_files
        summary.backfill_rows += one.backfill_rows
        if one.erasure_id is not None:
            summary.erasure_ids.append(one.erasure_id)
    logger.info("erasure batch: %d requests, %d erased, %d with nothing stored, %d invalid", summary.requests,
                summary.erased, summary.not_found, len(summary.invalid))
    return summary
