"""Outbox steps: Deliver Outbox (claim, send, record), and queueing the ops alert and the monthly notice.

Deliver Outbox sends exactly once, as far as the outside world allows:

* A message is decided by inserting its outbox row (unique idempotency key) in the deciding transaction, so a
  crash before sending leaves it `pending` and the next delivery run sends it.
* A run claims rows `pending -> sending` with its own claim token in one statement (FOR UPDATE SKIP LOCKED on
  PostgreSQL; SQLite serializes writers), so two runs never claim the same row.
* Right before a non-idempotent send (SMTP, Apprise) one conditional UPDATE confirms that this run's claim still
  owns the row and commits its `send_started_at` (the fencing check); after the send, `sent`. A row whose claim
  was taken over is skipped and counted (`lost_claims`). Rows of an idempotent channel are confirmed by the lease
  renewal below, which returns the rows the claim still holds.
* A live run renews its batch's lease whenever half of it has passed, so only a claim that outlived its lease
  (its run dead, or stuck longer than the lease) is ever taken over.
* Rows stuck in `sending` longer than the lease belong to a dead run. If their send never began, or the channel
  is idempotent (an .eml file is written under its key, atomically, so writing it again changes nothing), they go
  back to `pending`. If the send had begun, nobody knows whether it arrived: the row becomes `failed` with
  last_error "outcome unknown" and is never resent automatically (resending could send twice); it stays visible
  for a human (`leadflow outbox deliver` reports it). If the owner was only slow, its own outcome still counts.
* A circuit breaker per channel: after `breaker_after` consecutive transient failures (tries, not messages) the run
  stops using that channel and leaves its remaining rows `pending` (no attempt counted) for a later run. A refused
  or unreachable server (ChannelUnavailableError) is not retried within the run, so an outage costs a few quick
  tries, not seconds per message.
* Apprise rows name an alert channel (`manager`, `ops`, `rep:<id>`), never its URL: the URLs are secrets, resolved
  here right before the send (AlertChannels) from the settings or the rep's alert_url, and handed to the sender
  only, never written back. A recipient with "://" is a URL queued before channels were named and is sent as is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from leadflow.config.settings import SecretReferenceError, get_settings, secret_value
from leadflow.crm import assignments, outbox
from leadflow.crm.store import Store, get_store
from leadflow.domain import messages
from leadflow.domain.reports import MonthlyReport
from leadflow.io.senders import ChannelUnavailableError, PermanentDeliveryError, Sender, channel_senders


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
    breaker_after: int = 5


@dataclass
class DeliveryResult:
    """What one delivery run did."""

    claimed: int = 0
    sent: int = 0
    retry_later: int = 0
    failed: int = 0
    requeued_stale: int = 0
    unknown_outcome: int = 0
    lost_claims: int = 0
    left_pending: int = 0
    breaker_open: list[str] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for summaries."""
        return {**self.__dict__, "breaker_open": list(self.breaker_open), "by_kind": dict(self.by_kind)}


class DeliveryFailing(RuntimeError):
    """A delivery run's circuit breaker opened: a channel is down and its messages wait in the outbox."""


@dataclass
class _Breaker:
    """Consecutive transient failures per channel in this run; a channel at the limit is not tried again."""

    after: int
    failures: dict[str, int] = field(default_factory=dict)
    open: list[str] = field(default_factory=list)

    def success(self, channel: str) -> None:
        self.failures[channel] = 0

    def failure(self, channel: str) -> None:
        self.failures[channel] = self.failures.get(channel, 0) + 1
        if self.failures[channel] >= self.after and channel not in self.open:
            self.open.append(channel)


def delivery_config(lease_minutes: float | None = None, **overrides: Any) -> DeliveryConfig:
    """Delivery settings from LEADFLOW_* (SMTP URL, outbox folder, sender), with optional overrides."""
    settings = get_settings()
    smtp = secret_value(settings.smtp_url)
    defaults: dict[str, Any] = {"smtp_url": smtp, "outbox_dir": settings.outbox_dir,
                                "sender_email": settings.sender_email,
                                "breaker_after": settings.delivery_breaker_after}
    config = DeliveryConfig(**{**defaults, **overrides})
    if lease_minutes is not None:
        config = replace(config, lease=timedelta(minutes=lease_minutes))
    return config


class AlertChannels:
    """The URLs behind the alert channels an outbox row may name, looked up at send time and never stored.

    `manager` and `ops` are the settings' manager_alert_urls and ops_alert_urls; `rep:<id>` is that rep's
    alert_url, read once per instance (one per delivery batch), so a changed URL applies from the next batch.
    """

    def __init__(self, store: Store, manager: SecretStr | None, ops: SecretStr | None) -> None:
        self._store = store
        self._urls = {messages.MANAGER_CHANNEL: manager, messages.OPS_CHANNEL: ops}
        self._reps: dict[int, SecretStr | None] | None = None

    @classmethod
    def from_settings(cls, store: Store) -> AlertChannels:
        """The channels of the LEADFLOW_* settings, with reps read from `store`."""
        settings = get_settings()
        return cls(store, settings.manager_alert_urls, settings.ops_alert_urls)

    def _rep_url(self, rep_id: int) -> SecretStr | None:
        if self._reps is None:
            reps = assignments.reps_frame(self._store)
            self._reps = {int(i): SecretStr(url) if isinstance(url, str) else None
                          for i, url in zip(reps["id"], reps["alert_url"], strict=True)}
        return self._reps.get(rep_id)

    def url(self, recipient: str) -> str:
        """The Apprise URL(s) of a row's recipient; PermanentDeliveryError (naming the channel only) if it has none."""
        if "://" in recipient:
            return recipient  # queued before channels were named: the row carries its URL itself
        if recipient in self._urls:
            secret = self._urls[recipient]
            where = f"LEADFLOW_{recipient.upper()}_ALERT_URLS"
        elif (rep := recipient.removeprefix(messages.REP_CHANNEL_PREFIX)) != recipient and rep.isdigit():
            secret = self._rep_url(int(rep))
            where = "the rep's alert_url"
        else:
            raise PermanentDeliveryError(f"unknown alert channel {recipient[:40]!r}")
        # A `prefect-secret://<block>` value (setting or rep alert_url) is read from its Secret block only now.
        value = (secret_value(secret) or "").strip()
        if not value:
            raise PermanentDeliveryError(f"alert channel {recipient!r} has no URL ({where} is not set)")
        return value

    def resolve(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row as its sender gets it: an Apprise row's channel name replaced by its URL(s); other rows as is."""
        if row["channel"] != "apprise":
            return row
        return {**row, "recipient": self.url(str(row["recipient"] or ""))}


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _retry_at(attempts: int, permanent: bool, config: DeliveryConfig, now: datetime) -> datetime | None:
    """When a failed row is due again (exponential backoff), or None when it has failed for good."""
    if permanent or attempts >= config.max_attempts:
        return None
    return now + config.retry_after * (2 ** min(attempts - 1, 6))


def _send_with_retries(sender: Sender | None, row: dict[str, Any], config: DeliveryConfig,
                       sleep: Callable[[float], None], breaker: _Breaker) -> tuple[int, BaseException | None, bool]:
    """Send one row, retrying transient errors within the run; returns (tries, last error or None, permanent).

    Every transient failure counts towards the channel's breaker; once it opens, or the server refused outright,
    the row is not tried again in this run.
    """
    error: BaseException | None = None
    channel = row["channel"]
    for attempt in range(config.tries_per_run):
        try:
            if sender is None:
                raise PermanentDeliveryError(f"unknown channel {channel!r}")
            sender.send(row)
            breaker.success(channel)
            return attempt + 1, None, False
        except PermanentDeliveryError as exc:
            # The server answered: the channel works, only this message never will.
            breaker.success(channel)
            return attempt + 1, exc, True
        except Exception as exc:  # network errors of every kind are retried, then recorded
            error = exc
            breaker.failure(channel)
            if isinstance(exc, ChannelUnavailableError) or channel in breaker.open:
                return attempt + 1, error, False
            if attempt + 1 < config.tries_per_run:
                sleep(config.retry_delays[min(attempt, len(config.retry_delays) - 1)])
    return config.tries_per_run, error, False


def _deliver_batch(store: Store, token: str, claimed_at: datetime, rows: list[dict[str, Any]],
                   senders: dict[str, Sender], config: DeliveryConfig, now: Callable[[], datetime],
                   sleep: Callable[[float], None], breaker: _Breaker, result: DeliveryResult,
                   channels: AlertChannels) -> None:
    """Send each claimed row with its channel's sender (alert channels resolved to their URLs) and record the
    outcome."""
    sent: list[int] = []
    tries: dict[int, int] = {}
    held = {row["id"] for row in rows}
    renewed = claimed_at
    unsent: list[int] = []
    for row in rows:
        if row["channel"] in breaker.open:
            unsent.append(row["id"])
            continue
        stamp = now()
        if stamp - renewed >= config.lease / 2:
            held, renewed = outbox.extend_lease(store, token, stamp), stamp
        sender = senders.get(row["channel"])
        idempotent = sender is not None and sender.idempotent
        # The fencing check: a row another run took over after our lease lapsed is not ours to send.
        owned = row["id"] in held if idempotent else outbox.confirm_claim(store, row["id"], token, stamp)
        if not owned:
            result.lost_claims += 1
            continue
        try:
            outgoing = channels.resolve(row)
        except PermanentDeliveryError as exc:
            # No URL for the channel: one try, failed for good (the error names the channel, not a URL).
            tries[row["id"]], error, permanent = 1, exc, True
        except SecretReferenceError as exc:
            # The Secret block could not be read now (API down, block missing): tried again later, naming the block.
            tries[row["id"]], error, permanent = 1, exc, False
        else:
            tries[row["id"]], error, permanent = _send_with_retries(sender, outgoing, config, sleep, breaker)
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
    # Rows of a channel whose breaker opened were never tried: pending again, no attempt counted.
    result.left_pending += outbox.release_claims(store, unsent, token)
    done = set(sent)
    for row in rows:
        if row["id"] in done:
            result.by_kind[row["kind"]] = result.by_kind.get(row["kind"], 0) + 1


def deliver_outbox(store: Store, config: DeliveryConfig, *, now: Callable[[], datetime], limit: int | None = None,
                   sleep: Callable[[float], None] = time.sleep,
                   senders: dict[str, Sender] | None = None,
                   channels: Callable[[], AlertChannels] | None = None) -> DeliveryResult:
    """Send every due pending message (up to `limit`), batch by batch, retrying transient failures in the run.

    Before each batch, claims that outlived their lease are settled (recover_stale), so a run also finishes what
    a dead run left. A channel whose breaker opens is left alone for the rest of the run (`breaker_open`).
    `channels` gives each batch its alert channel URLs (default: AlertChannels.from_settings).
    """
    result = DeliveryResult()
    senders = senders if senders is not None else channel_senders(config.smtp_url, config.outbox_dir,
                                                                   config.sender_email, config.smtp_timeout)
    idempotent = [channel for channel, sender in senders.items() if sender.idempotent]
    breaker = _Breaker(config.breaker_after)
    while limit is None or result.claimed < limit:
        requeued, unknown = outbox.recover_stale(store, now(), config.lease, idempotent)
        result.requeued_stale += requeued
        result.unknown_outcome += unknown
        size = config.batch_size if limit is None else min(config.batch_size, limit - result.claimed)
        claimed_at = now()
        token, rows = outbox.claim_batch(store, claimed_at, size, exclude_channels=breaker.open)
        if not rows:
            break
        result.claimed += len(rows)
        opened: list[Sender] = []
        try:
            for sender in senders.values():
                sender.open()
                opened.append(sender)
            alert_channels = channels() if channels is not None else AlertChannels.from_settings(store)
            _deliver_batch(store, token, claimed_at, rows, senders, config, now, sleep, breaker, result,
                           alert_channels)
        finally:
            for sender in opened:
                sender.close()
    result.breaker_open = list(breaker.open)
    return result


def queue_ops_alert(flow_name: str, run_name: str, run_id: str, state_name: str, message: str | None,
                    store: Store | None = None) -> dict:
    """Queue the ops alert of a failed flow run (once per run) to the `ops` channel; returns the row, for the log
    line. The row names the channel; its URLs (ops_alert_urls) are resolved when it is sent."""
    settings = get_settings()
    urls = settings.ops_alert_urls
    configured = urls is not None and bool(urls.get_secret_value().strip())
    now = datetime.now(UTC)
    store = store or get_store()
    row = messages.ops_alert(flow_name, run_name, run_id, state_name, message,
                             messages.OPS_CHANNEL if configured else None, now)
    if configured and settings.ops_alert_repeat_minutes:
        # An outage fails an every-minute flow sixty times an hour: ops hear of it once per interval, and every
        # run still leaves its row (withdrawn, with the reason), so nothing is lost from the record.
        from leadflow.domain.privacy import mask_addresses

        reason = messages.ops_reason(message, mask_addresses)
        since = now - timedelta(minutes=settings.ops_alert_repeat_minutes)
        told = outbox.recent_bodies(store, "ops_alert", since, ("pending", "sending", "sent"))
        if any(messages.is_repeat(body, flow_name, reason) for body in told):
            row = {**row, "status": "withdrawn",
                   "last_error": f"repeat within ops_alert_repeat_minutes={settings.ops_alert_repeat_minutes}"}
    outbox.queue_row(store, row)
    return row


def queue_monthly_report_notice(store: Store, report: MonthlyReport, files: dict[str, list[str]]) -> str:
    """Queue the manager's notice of a month's report (one per month; a re-run refreshes it only while unsent).

    The row names the `manager` channel (its URLs are resolved when it is sent), or "unconfigured" without them.
    """
    urls = get_settings().manager_alert_urls
    configured = urls is not None and bool(urls.get_secret_value().strip())
    recipient = messages.MANAGER_CHANNEL if configured else "unconfigured"
    links = [Path(p).resolve().as_uri() for fmt in ("html", "md") for p in files.get(fmt, [])]
    row = messages.monthly_report_notice(report.month, report.headline(), report.sla, links, recipient)
    outbox.queue_or_refresh(store, row)
    return row["idempotency_key"]
