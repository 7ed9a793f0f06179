"""The sales mailbox over IMAP4rev1 (stdlib imaplib): fetch new messages whole, then move or flag those taken.

Messages are read with BODY.PEEK[] (reading never marks them \\Seen) and addressed by UID. A fetch remembers the
folder's UIDVALIDITY; marking under another UIDVALIDITY (the folder was rebuilt) marks nothing, and the next run
finds the messages again, recognizes them as taken and marks them then. With `move`, the folder holds only what is
still to take; with `flag`, taken messages carry the $LeadflowTaken keyword, which the search leaves out.
"""

from __future__ import annotations

import imaplib
import re
import ssl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

TAKEN_KEYWORD = "$LeadflowTaken"
_UID = re.compile(rb"UID (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')


class MailboxError(RuntimeError):
    """The mailbox cannot be read or changed; the message names the step and the server's status, no content.

    `transient` says whether trying again may help: a dropped connection may, a refused login or a missing folder
    will not (and retried logins can lock the account).
    """

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class MailboxConfig:
    """Where the sales mailbox is and what to do with a taken message (the password resolved at use)."""

    host: str
    user: str
    password: str
    port: int | None = None
    security: Literal["tls", "starttls", "none"] = "tls"
    folder: str = "INBOX"
    after: Literal["move", "flag"] = "move"
    processed_folder: str = "Leadflow"
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None

    def address(self) -> tuple[str, int]:
        """Host and port, the port defaulting by security (993 for IMAPS, else 143)."""
        return self.host, self.port or (993 if self.security == "tls" else 143)


@dataclass(frozen=True)
class FetchedMessage:
    """One message as the server holds it: its UID in the folder, raw bytes and the time the server received it."""

    uid: int
    raw: bytes
    received_at: datetime


@dataclass(frozen=True)
class Fetched:
    """A fetch of the folder: its UIDVALIDITY and the messages still to take, oldest first."""

    uidvalidity: int
    messages: list[FetchedMessage]


def _quote(name: str) -> str:
    """A folder name as an IMAP quoted string (ASCII names; imaplib sends it as given)."""
    if not name.isascii():
        raise MailboxError("IMAP folder names must be ASCII here (use the server's modified UTF-7 name)",
                           transient=False)
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(step: str, result: tuple[str, list], *, transient: bool = True) -> list:
    status, data = result
    if status != "OK":
        raise MailboxError(f"IMAP {step} failed: {status}", transient=transient)
    return data


@contextmanager
def connect(config: MailboxConfig) -> Iterator[imaplib.IMAP4]:
    """A logged-in IMAP session (IMAPS, STARTTLS or plain), logged out at the end."""
    host, port = config.address()
    context = config.ssl_context or ssl.create_default_context()
    try:
        if config.security == "tls":
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=config.timeout)
        else:
            client = imaplib.IMAP4(host, port, timeout=config.timeout)
            if config.security == "starttls":
                client.starttls(ssl_context=context)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"cannot connect to the IMAP server {host}:{port} ({type(exc).__name__})") from None
    try:
        try:
            client.login(config.user, config.password)
        except imaplib.IMAP4.error:
            # The server's words may echo the login: say only that it was refused.
            raise MailboxError(f"the IMAP server {host}:{port} refused the login", transient=False) from None
        yield client
    finally:
        with suppress(OSError, imaplib.IMAP4.error):
            client.logout()


def _select(client: imaplib.IMAP4, folder: str, readonly: bool = False) -> int:
    """Select a folder and return its UIDVALIDITY (from the SELECT's OK [UIDVALIDITY n] response)."""
    _check(f"SELECT of folder {folder!r}", client.select(_quote(folder), readonly=readonly), transient=False)
    _, values = client.response("UIDVALIDITY")
    value = next((v for v in values or [] if v), None)
    if value is None:
        raise MailboxError(f"the IMAP server gave no UIDVALIDITY for folder {folder!r}", transient=False)
    return int(value)


def _internaldate(meta: bytes) -> datetime:
    """The server's receipt time of a message (imaplib gives it as local time), else now."""
    found = _INTERNALDATE.search(meta)
    parsed = imaplib.Internaldate2tuple(b'INTERNALDATE "' + found.group(1) + b'"') if found else None
    return datetime.fromtimestamp(time.mktime(parsed), UTC) if parsed is not None else datetime.now(UTC)


def fetched_messages(items: list) -> list[FetchedMessage]:
    """The messages in imaplib's answer to UID FETCH (UID INTERNALDATE BODY.PEEK[]), whatever the item order.

    Each message is a (head, literal) tuple, followed by the bytes that close it; some servers (Gmail among them)
    send UID or INTERNALDATE there, after the literal, instead of in the head.
    """
    messages = []
    for index, item in enumerate(items):
        if not isinstance(item, tuple) or len(item) < 2:
            continue  # the closing part of a response
        after = items[index + 1] if index + 1 < len(items) else b""
        meta = item[0] + (after if isinstance(after, bytes) else b"")
        uid = _UID.search(meta)
        if uid is not None:
            messages.append(FetchedMessage(uid=int(uid.group(1)), raw=bytes(item[1]), received_at=_internaldate(meta)))
    return messages


def fetch_new(config: MailboxConfig, limit: int) -> Fetched:
    """Up to `limit` messages still to take from the folder (oldest UIDs first), whole, without marking them seen."""
    with connect(config) as client:
        uidvalidity = _select(client, config.folder, readonly=True)
        criteria = "ALL" if config.after == "move" else f"UNKEYWORD {TAKEN_KEYWORD}"
        data = _check("SEARCH", client.uid("SEARCH", criteria))
        uids = sorted(int(u) for u in (data[0] or b"").split())[:limit]
        messages: list[FetchedMessage] = []
        for start in range(0, len(uids), 50):
            part = ",".join(str(u) for u in uids[start:start + 50])
            items = _check("FETCH", client.uid("FETCH", part, "(UID INTERNALDATE BODY.PEEK[])"))
            messages.extend(fetched_messages(items))
    return Fetched(uidvalidity=uidvalidity, messages=sorted(messages, key=lambda m: m.uid))


def _ensure_folder(client: imaplib.IMAP4, folder: str) -> None:
    status, data = client.list('""', _quote(folder))
    if status == "OK" and any(entry for entry in data if entry):
        return
    # A failed CREATE is left to the MOVE: another run may have made the folder meanwhile, else MOVE says so.
    client.create(_quote(folder))


def mark_taken(config: MailboxConfig, uidvalidity: int, uids: Sequence[int]) -> int:
    """Move (or flag) the taken messages; returns how many were marked (0 when the folder's UIDVALIDITY changed)."""
    if not uids:
        return 0
    with connect(config) as client:
        if _select(client, config.folder) != uidvalidity:
            return 0
        if config.after == "move":
            _ensure_folder(client, config.processed_folder)
        capabilities = {c.upper() for c in client.capabilities}
        for start in range(0, len(uids), 200):
            part = ",".join(str(u) for u in uids[start:start + 200])
            if config.after == "flag":
                _check("STORE", client.uid("STORE", part, "+FLAGS", f"(\\Seen {TAKEN_KEYWORD})"))
            elif "MOVE" in capabilities:
                _check("MOVE", client.uid("MOVE", part, _quote(config.processed_folder)))
            else:
                _check("COPY", client.uid("COPY", part, _quote(config.processed_folder)))
                _check("STORE", client.uid("STORE", part, "+FLAGS", "(\\Deleted)"))
                # UID EXPUNGE (UIDPLUS) removes only these; a plain EXPUNGE would also take others' \Deleted mail.
                if "UIDPLUS" in capabilities:
                    _check("UID EXPUNGE", client.uid("EXPUNGE", part))
                else:
                    _check("EXPUNGE", client.expunge())
    return len(uids)
