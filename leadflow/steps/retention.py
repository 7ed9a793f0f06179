"""Retention: personal data is kept no longer than needed (GDPR art. 5(1)(e)).

Past their retention periods (LEADFLOW_RETENTION_*_DAYS; 0 keeps forever) submissions' raw payloads are stripped,
quarantine rows and processed inbox rows deleted, and .eml files and backfill window files removed. The nightly
spam-cleanup run applies it; `leadflow retention run [--dry-run]` does by hand. A dry run counts and changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from leadflow.config.settings import Settings, get_settings
from leadflow.crm import retention as sql
from leadflow.crm.store import Store
from leadflow.io import privacy_files

logger = logging.getLogger(__name__)

# The stores retention works on, in the order it runs, with the setting that sets each one's period.
STORES: dict[str, str] = {
    "raw_payloads": "retention_raw_payload_days",
    "quarantine": "retention_quarantine_days",
    "lead_inbox": "retention_inbox_days",
    "eml_files": "retention_eml_days",
    "backfill_window_files": "retention_backfill_days",
    "webhook_deliveries": "retention_webhook_days",
    "mailbox_messages": "retention_mailbox_days",
}


# The stores that are table rows, by what retention does to them past their period.
ROW_STORES = {"raw_payloads": sql.strip_raw_payloads, "quarantine": sql.purge_quarantine,
              "lead_inbox": sql.purge_inbox, "webhook_deliveries": sql.purge_webhook_deliveries,
              "mailbox_messages": sql.purge_mailbox_messages}


@dataclass(frozen=True)
class RetentionPeriods:
    """Days each store keeps personal data (0: forever)."""

    raw_payloads: int = 365
    quarantine: int = 90
    lead_inbox: int = 30
    eml_files: int = 30
    backfill_window_files: int = 30
    webhook_deliveries: int = 90
    mailbox_messages: int = 90

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RetentionPeriods:
        """The periods of the LEADFLOW_RETENTION_*_DAYS settings."""
        settings = settings or get_settings()
        return cls(**{store: int(getattr(settings, name)) for store, name in STORES.items()})


@dataclass
class RetentionSummary:
    """What one retention pass removed (or would remove) per store; never a value, only counts."""

    dry_run: bool
    run_at: str
    days: dict[str, int] = field(default_factory=dict)
    cutoffs: dict[str, str | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    backfill_folders: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts per store."""
        return asdict(self)

    @property
    def total(self) -> int:
        """Rows and files touched in all stores."""
        return sum(self.counts.values())


def apply_retention(store: Store, periods: RetentionPeriods, *, now: datetime, outbox_dir: Path, backfill_dir: Path,
                    dry_run: bool = False, batch_size: int = 5_000) -> RetentionSummary:
    """Strip or delete what each store holds past its period; returns counts per store (a store kept forever: 0)."""
    summary = RetentionSummary(dry_run=dry_run, run_at=now.isoformat(), days=asdict(periods))
    for name, days in asdict(periods).items():
        cutoff = now - timedelta(days=days) if days > 0 else None
        summary.cutoffs[name] = cutoff.isoformat() if cutoff else None
        if cutoff is None:
            summary.counts[name] = 0
            continue
        if name in ROW_STORES:
            summary.counts[name] = ROW_STORES[name](store, cutoff, batch_size=batch_size, dry_run=dry_run)
        elif name == "eml_files":
            summary.counts[name] = privacy_files.purge_eml_files(outbox_dir, cutoff, dry_run=dry_run)
        else:
            purged = privacy_files.purge_backfill_windows(backfill_dir, cutoff, dry_run=dry_run)
            summary.counts[name], summary.backfill_folders = purged.files, purged.folders
    logger.info("retention%s: %s", " (dry run)" if dry_run else "", summary.counts)
    return summary


def run_retention(store: Store, *, now: datetime, dry_run: bool = False,
                  settings: Settings | None = None) -> RetentionSummary:
    """Apply the configured retention periods to the configured CRM, outbox folder and backfill folder."""
    settings = settings or get_settings()
    return apply_retention(store, RetentionPeriods.from_settings(settings), now=now, outbox_dir=settings.outbox_dir,
                           backfill_dir=settings.backfill_dir, dry_run=dry_run)
