"""Outbox steps: Deliver Outbox (claim, send, record), and queueing the ops alert and the monthly notice.

Deliver Outbox sends exactly once, as far as the outside world allows:

* A message is decided by inserting its outbox row (unique idempotency key) in the deciding transaction, so a
  crash before sending leaves it `pending` and the next delivery run sends it.
* A run claims rows `pending -> sending` with its own claim token in one statement (FOR UPDATE SKIP LOCKED on
  PostgreSQL; SQLite serializes writers), so two runs never claim the same row.
* Before a non-idempotent send (SMTP, Apprise) the row's `send_started_at` is committed; after it, `sent`.
* Rows stuck in `sending` longer than the lease belong to a dead run. If their send never began, or the channel
  is idempotent (an .eml file is written under its key, atomically, so writing it again changes nothing), they go
  back to `pending`. If the send had begun, nobody knows whether it arrived: the row becomes `failed` with
  last_error "outcome unknown" and is never resent automatically (resending could send twice); it stays visible
  for a human (`leadflow outbox deliver` reports it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leadflow.config.settings import get_settings
from leadflow.crm import outbox
from leadflow.crm.store import Store, get_store
from leadflow.domain import messages
from leadflow.domain.reports import MonthlyReport
from leadflow.io.senders import PermanentDeliveryError, Sender, channel_senders


@dataclass(frozen=True)
class DeliveryConfig:
    """Where messages go and how hard to try."""

    smtp_url: str | None = None
    outbox_dir: Path = Path("leadflow-output/outbox")
    sender_email: str = "sales@leadflow.example"
    batch_size: int = 200
    tries_per_run: int = 3
    retry_delays: tuple[float, ...] = (0.5, 2.0)
    max_attempts: int = 8
    retry_after: timedelta = timedelta(minutes=5)
    lease: timedelta = timedelta(minutes=10)
    smtp_timeout: float = 30.0


@dataclass
class DeliveryResult:
    """What one delivery run did."""

    claimed: int = 0
    sent: int = 0
    retry_later: int = 0
    failed: int = 0
    requeued_stale: int = 0
    unknown_outcome: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for summaries."""
        return dict(self.__dict__)


def delivery_config(lease_minutes: float | None = None, **overrides: Any) -> DeliveryConfig:
    """Delivery settings from LEADFLOW_* (SMTP URL, outbox folder, sender), with optional overrides."""
    settings = get_settings()
    smtp = settings.smtp_url.get_secret_value() if settings.smtp_url else None
    config = DeliveryConfig(smtp_url=smtp, outbox_dir=settings.outbox_dir, sender_email=settings.sender_email,
                            **overrides)
    if lease_minutes is not None:
        config = replace(config, lease=timedelta(minutes=lease_minutes))
    return config


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _retry_at(attempts: int, permanent: bool, config: DeliveryConfig, now: datetime) -> datetime | None:
    """When a failed row is due again (exponential backoff), or None when it has failed for good."""
    if permanent or attempts >= config.max_attempts:
        return None
    return now + config.retry_after * (2 ** min(attempts - 1, 6))


def _send_with_retries(sender: Sender | None, row: dict[str, Any], config: DeliveryConfig,
                       sleep: Callable[[float], None]) -> tuple[int, BaseException | None, bool]:
    """Send one row, retrying transient errors within the run; returns (tries, last error or None, permanent)."""
    error: BaseException | None = None
    for attempt in range(config.tries_per_run):
        try:
            if sender is None:
                raise PermanentDeliveryError(f"unknown channel {row['channel']!r}")
            sender.send(row)
            return attempt + 1, None, False
        except PermanentDeliveryError as exc:
            return attempt + 1, exc, True
        except Exception as exc:  # network errors of every kind are retried, then recorded
            error = exc
            if attempt + 1 < config.tries_per_run:
                sleep(config.retry_delays[min(attempt, len(config.retry_delays) - 1)])
    return config.tries_per_run, error, False


def _deliver_batch(store: Store, token: str, rows: list[dict[str, Any]], senders: dict[str, Sender],
                   config: DeliveryConfig, now: Callable[[], datetime], sleep: Callable[[float], None],
                   result: DeliveryResult) -> None:
    """Send each claimed row with its channel's sender and record the outcome."""
    sent: list[int] = []
    tries: dict[int, int] = {}
    for row in rows:
        sender = senders.get(row["channel"])
        idempotent = sender is not None and sender.idempotent
        if not idempotent:
            outbox.mark_started(store, row["id"], token, now())
        tries[row["id"]], error, permanent = _send_with_retries(sender, row, config, sleep)
        if error is None:
            if idempotent:
                # Idempotent sends are recorded together at the end of the batch: a crash before that resends
                # them harmlessly.
                sent.append(row["id"])
            else:
                outbox.mark_sent(store, [row["id"]], tries, token, now())
                result.sent += 1
                result.by_kind[row["kind"]] = result.by_kind.get(row["kind"], 0) + 1
        else:
            attempts = int(row["attempts"] or 0) + tries[row["id"]]
            stamp = now()
            retry_at = _retry_at(attempts, permanent, config, stamp)
            outbox.mark_failed(store, row["id"], token, attempts, _one_line(error), retry_at)
            if retry_at is None:
                result.failed += 1
            else:
                result.retry_later += 1
    outbox.mark_sent(store, sent, tries, token, now())
    result.sent += len(sent)
    done = set(sent)
    for row in rows:
        if row["id"] in done:
            result.by_kind[row["kind"]] = result.by_kind.get(row["kind"], 0) + 1


def deliver_outbox(store: Store, config: DeliveryConfig, *, now: Callable[[], datetime], limit: int | None = None,
                   sleep: Callable[[float], None] = time.sleep,
                   senders: dict[str, Sender] | None = None) -> DeliveryResult:
    """Send every due pending message (up to `limit`), batch by batch, retrying transient failures in the run."""
    result = DeliveryResult()
    senders = senders if senders is not None else channel_senders(config.smtp_url, config.outbox_dir,
                                                                   config.sender_email, config.smtp_timeout)
    idempotent = [channel for channel, sender in senders.items() if sender.idempotent]
    result.requeued_stale, result.unknown_outcome = outbox.recover_stale(store, now(), config.lease, idempotent)
    while limit is None or result.claimed < limit:
        size = config.batch_size if limit is None else min(config.batch_size, limit - result.claimed)
        token, rows = outbox.claim_batch(store, now(), size)
        if not rows:
            break
        result.claimed += len(rows)
        opened: list[Sender] = []
        try:
            for sender in senders.values():
                sender.open()
                opened.append(sender)
            _deliver_batch(store, token, rows, senders, config, now, sleep, result)
        finally:
            for sender in opened:
                sender.close()
    return result


def queue_ops_alert(flow_name: str, run_name: str, run_id: str, state_name: str, message: str | None,
                    store: Store | None = None) -> dict:
    """Queue the ops alert of a failed flow run (once per run); returns the row, for the log line."""
    urls = get_settings().ops_alert_urls
    row = messages.ops_alert(flow_name, run_name, run_id, state_name, message,
                             urls.get_secret_value() if urls else None, datetime.now(UTC))
    outbox.queue_row(store or get_store(), row)
    return row


def queue_monthly_report_notice(store: Store, report: MonthlyReport, files: dict[str, list[str]]) -> str:
    """Queue the manager's notice of a month's report (one per month; a re-run refreshes it only while unsent)."""
    settings = get_settings()
    recipient = settings.manager_alert_urls.get_secret_value() if settings.manager_alert_urls else "unconfigured"
    links = [Path(p).resolve().as_uri() for fmt in ("html", "md") for p in files.get(fmt, [])]
    row = messages.monthly_report_notice(report.month, report.headline(), report.sla, links, recipient)
    outbox.queue_or_refresh(store, row)
    return row["idempotency_key"]
