"""Read Sales Mailbox: fetch new mail, store inquiries as inbox leads and known leads' mail as touches, then mark it.

The order is what makes a re-run safe: messages are stored (ledger row with its inbox row or touch event, one
transaction) before they are moved or flagged. A run that dies between the two leaves them in the folder; the next
run finds their keys in the ledger, stores nothing and only marks them.

Why the inbox and not intake directly: an inquiry becomes a `lead_inbox` row plus the `leadflow.lead.submitted`
event, exactly like a form post, so the continuous intake deployment takes it within seconds with the same spam
checks, quarantine and dedupe, and the submission's idempotency key (source + Message-ID) guards a second time.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from leadflow.config.settings import Settings, get_settings, secret_value
from leadflow.crm import assignments
from leadflow.crm import mailbox as ledger
from leadflow.crm.store import Store
from leadflow.domain import followup as fu
from leadflow.domain import mailbox as mail
from leadflow.domain import messages
from leadflow.domain import normalize as nz
from leadflow.io import mailbox as imap
from leadflow.io.senders import message_id as outbox_message_id


@dataclass
class MailboxTake:
    """What a run took from the mailbox: counts for the summary, and the UIDs and keys to mark afterwards."""

    fetched: int = 0
    inquiries: int = 0
    touches: int = 0
    replies: int = 0
    sequences_stopped: int = 0
    rep_alerts: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    already_taken: int = 0
    uids: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The counts (no UIDs or keys) for run results and the summary artifact."""
        counts = asdict(self)
        for name in ("uids", "keys"):
            counts.pop(name)
        return counts


def mailbox_config(settings: Settings | None = None) -> imap.MailboxConfig | None:
    """The IMAP settings as a connection config (password read now); None when no mailbox is configured."""
    settings = settings or get_settings()
    if not settings.mailbox_host:
        return None
    if not settings.mailbox_user or settings.mailbox_password is None:
        raise ValueError("LEADFLOW_MAILBOX_HOST is set: LEADFLOW_MAILBOX_USER and LEADFLOW_MAILBOX_PASSWORD are needed")
    context = ssl.create_default_context()
    if settings.mailbox_ca_file:
        context.load_verify_locations(cafile=str(settings.mailbox_ca_file))
    return imap.MailboxConfig(
        host=settings.mailbox_host, port=settings.mailbox_port, security=settings.mailbox_security,
        user=settings.mailbox_user, password=secret_value(settings.mailbox_password) or "",
        folder=settings.mailbox_folder, after=settings.mailbox_after,
        processed_folder=settings.mailbox_processed_folder, timeout=settings.mailbox_timeout_seconds,
        ssl_context=context,
    )


def own_addresses(settings: Settings | None = None) -> frozenset[str]:
    """Addresses whose mail is ours (the sender of prospect email, the mailbox login): never a lead."""
    settings = settings or get_settings()
    found = {settings.sender_email, settings.mailbox_user or ""}
    return frozenset(a.strip().lower() for a in found if "@" in a)


def _parse(fetched: imap.FetchedMessage, own: frozenset[str]) -> mail.MailboxMessage:
    try:
        return mail.parse_message(fetched.raw, fetched.received_at, own)
    except Exception:
        # The email package is lenient, so this is rare; such a message is counted, never silently dropped.
        return mail.MailboxMessage(key=mail.message_key(None, fetched.raw), message_id=None, sender_email=None,
                                   sender_name=None, subject="", text="", submitted_at=fetched.received_at,
                                   skip_reason="unreadable")


def _normalized(emails: Iterable[str | None]) -> list[str | None]:
    values = list(emails)
    series = nz.normalize_email(pd.Series([v or "" for v in values], dtype="string"))
    return [None if pd.isna(e) or not e else str(e) for e in series]


def _replied_to(store: Store, lead_refs: dict[int, set[str]]) -> dict[int, dict[str, str]]:
    """Per lead, our Message-IDs it could answer -> the outbox key they came from (only leads that cite ours)."""
    wanted = {lead_id for lead_id, refs in lead_refs.items() if refs}
    found: dict[int, dict[str, str]] = {}
    if wanted:
        for lead_id, key in ledger.outbox_keys(store, sorted(wanted)):
            found.setdefault(lead_id, {})[outbox_message_id(key)] = key
    return found


def take_messages(store: Store, fetched: list[imap.FetchedMessage], now: datetime,
                  flow_run_id: str | None = None, own: frozenset[str] | None = None) -> MailboxTake:
    """Judge and store fetched messages: new inquiries into lead_inbox, known leads' mail as touches, skips counted."""
    own = own_addresses() if own is None else own
    take = MailboxTake(fetched=len(fetched))
    parsed = [_parse(m, own) for m in fetched]
    take.uids = [m.uid for m in fetched]
    take.keys = [p.key for p in parsed]
    known = ledger.taken_keys(store, take.keys)
    fresh: dict[str, mail.MailboxMessage] = {}
    for message in parsed:
        if message.key in known or message.key in fresh:
            take.already_taken += 1
        else:
            fresh[message.key] = message
    emails = dict(zip(fresh, _normalized(m.sender_email for m in fresh.values()), strict=True))
    leads = ledger.lead_ids_by_email(store, [e for k, e in emails.items() if e and not fresh[k].skip_reason])
    ours = _replied_to(store, {leads[e]: {r for r in fresh[k].references if r.endswith(mail.OUR_MESSAGE_ID_DOMAIN)}
                               for k, e in emails.items() if e in leads and not fresh[k].skip_reason})
    taken = ledger.TakenMessages()
    for key, message in fresh.items():
        email = emails[key]
        if message.skip_reason:
            taken.skipped.append((key, message.skip_reason))
        elif email in leads:
            lead_id = leads[email]
            reply_to = next((ours[lead_id][r] for r in message.references if r in ours.get(lead_id, {})), None)
            take.replies += reply_to is not None
            taken.touches.append((key, lead_id, mail.touch_details(message, reply_to)))
        else:
            taken.inquiries.append((key, mail.inquiry_payload(message)))
    replies, alerts = _touch_effects(store, taken, {k: fresh[k] for k, _, _ in taken.touches}, now)
    stored = ledger.store_taken(store, taken, now, flow_run_id, replies=replies, alerts=alerts)
    take.inquiries, take.touches, take.skipped = stored.inquiries, stored.touches, stored.skipped
    take.sequences_stopped, take.rep_alerts = stored.sequences_stopped, stored.alerts
    take.already_taken += stored.already_taken
    return take


def _touch_effects(store: Store, taken: ledger.TakenMessages, messages_by_key: dict[str, mail.MailboxMessage],
                   now: datetime, policy: fu.CadencePolicy | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What a known lead's mail does besides its event: it counts as the follow-up outcome `replied` (which stops an
    active sequence under the default policy, as sales-engagement tools unenroll on reply), and its owner is told."""
    if not taken.touches:
        return pd.DataFrame(), pd.DataFrame()
    policy = policy or fu.load_cadence_policy()
    stop = fu.outcome_effect("replied", policy) == "stop"
    context = ledger.lead_context(store, [lead_id for _, lead_id, _ in taken.touches]).set_index("lead_id")
    rows = []
    for key, lead_id, details in taken.touches:
        if lead_id not in context.index:  # erased since its address was looked up: its event fails on the key anyway
            continue
        message = messages_by_key[key]
        lead = context.loc[lead_id]
        rows.append({"message_key": key, "lead_id": lead_id, "owner_id": lead["owner_id"],
                     "first_name": lead["first_name"], "last_name": lead["last_name"], "company": lead["company"],
                     "subject": message.subject, "excerpt": mail.excerpt(message),
                     "replied": details["kind"] == "reply", "written_at": message.submitted_at,
                     "sequence_stopped": stop and lead["sequence_state"] == fu.ACTIVE})
    if not rows:
        return pd.DataFrame(), pd.DataFrame()
    frame = pd.DataFrame(rows)
    replies = pd.DataFrame({"message_key": frame["message_key"], "lead_id": frame["lead_id"],
                            "at": pd.to_datetime(frame["written_at"], utc=True), "stop": stop,
                            "details": [{"outcome": "replied", "effect": "stop" if stop else "advance", "by": "mailbox",
                                         "message_key": k} for k in frame["message_key"]]})
    alerts = messages.reply_alerts(frame, assignments.reps_frame(store), now)
    alerts["message_key"] = frame.loc[alerts.index, "message_key"].to_numpy()
    return replies, alerts


def fetch_messages(config: imap.MailboxConfig, limit: int | None = None) -> imap.Fetched:
    """Messages still to take from the mailbox folder, up to the batch size."""
    return imap.fetch_new(config, limit or get_settings().mailbox_batch_size)


def mark_messages(store: Store, config: imap.MailboxConfig, uidvalidity: int, take: MailboxTake,
                  now: datetime) -> int:
    """Move or flag what the run took (every fetched message is in the ledger now), then note it in the ledger."""
    marked = imap.mark_taken(config, uidvalidity, take.uids)
    if marked:
        ledger.mark_handled(store, take.keys, now)
    return marked
