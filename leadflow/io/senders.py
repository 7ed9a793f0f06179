"""Senders: SMTP, .eml files and Apprise behind one `Sender` protocol, chosen by channel for Deliver Outbox.

A sender opens what it needs for a batch, sends one outbox row at a time and closes at the end of the batch. It
raises PermanentDeliveryError for a send that will never succeed (bad recipient, rejected message) and
ChannelUnavailableError when the channel itself is down (connection refused or timed out, SMTP 421): the row is
tried again in a later run, not at once. Any other error may pass and is retried within the run. An idempotent
sender (.eml files, written atomically under the row's key) may send a row again without harm, so its rows need no
"send started" mark and a dead run's claim can simply be requeued.
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import threading
import uuid
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import pandas as pd


class PermanentDeliveryError(Exception):
    """A send that will never succeed (bad recipient, rejected message): the row fails without retries."""


class ChannelUnavailableError(Exception):
    """The channel's server refused or could not be reached: transient, but trying the same message again at once
    will not help (the row waits for a later run; enough of these in a row open the run's circuit breaker)."""


class Sender(Protocol):
    """One delivery channel: open for a batch, send one row, close."""

    #: A resend changes nothing, so a send needs no "started" mark and a dead run's claim is safe to requeue.
    idempotent: bool

    def open(self) -> None:
        """Get ready for a batch (a connection may still be opened lazily by the first send)."""

    def send(self, row: dict[str, Any]) -> None:
        """Send one outbox row; PermanentDeliveryError if it can never succeed, ChannelUnavailableError if the
        channel is down, any other error if it may pass."""

    def close(self) -> None:
        """Release what the batch held (never raises)."""


# --- senders -------------------------------------------------------------------------------------------------


def _file_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key) + ".eml"


def eml_path(directory: Path, key: str) -> Path:
    """Where the .eml file of the message with this key is (or would be) written."""
    return directory / _file_name(key)


def message_id(key: str) -> str:
    """A stable Message-ID per outbox row, so a mail system can tell a resend from a new message."""
    return f"<{uuid.uuid5(uuid.NAMESPACE_URL, key)}@leadflow>"


def build_email(row: dict[str, Any], sender: str) -> EmailMessage:
    """The email for an outbox row (HTML body, stable Message-ID)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = row["recipient"]
    msg["Subject"] = row["subject"]
    msg["Message-ID"] = message_id(row["idempotency_key"])
    msg["Date"] = format_datetime(pd.Timestamp(row.get("created_at") or pd.Timestamp.now("UTC")).to_pydatetime())
    msg["X-Leadflow-Key"] = row["idempotency_key"]
    msg.set_content(row["body"], subtype="html")
    return msg


def _header(value: str) -> str:
    if value.isascii() and "\n" not in value and "\r" not in value:
        return value
    return Header(value.replace("\r", " ").replace("\n", " "), "utf-8").encode()


def eml_bytes(row: dict[str, Any], sender: str) -> bytes:
    """The message as .eml bytes, built directly: the same headers and HTML body as build_email, 50x faster.

    Falls back to the email package for a body line too long for 8bit transfer.
    """
    body = row["body"]
    if any(len(line) > 900 for line in body.splitlines()):
        return bytes(build_email(row, sender))
    created = pd.Timestamp(row.get("created_at") or pd.Timestamp.now("UTC")).to_pydatetime()
    headers = (
        f"From: {_header(sender)}\nTo: {_header(row['recipient'])}\nSubject: {_header(row['subject'])}\n"
        f"Message-ID: {message_id(row['idempotency_key'])}\nDate: {format_datetime(created)}\n"
        f"X-Leadflow-Key: {_header(row['idempotency_key'])}\nMIME-Version: 1.0\n"
        'Content-Type: text/html; charset="utf-8"\nContent-Transfer-Encoding: 8bit\n\n'
    )
    return (headers + body + ("" if body.endswith("\n") else "\n")).encode("utf-8")


def write_eml(row: dict[str, Any], directory: Path, sender: str) -> Path:
    """Write the message as an .eml file named after its key: atomic and idempotent (a rewrite is identical)."""
    path = eml_path(directory, row["idempotency_key"])
    # A key is claimed by one run at a time; the process and thread in the temporary name keep a run whose lease
    # lapsed mid-write from clashing with the run that took the row over (both write the same bytes).
    tmp = directory / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        tmp.write_bytes(eml_bytes(row, sender))
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(eml_bytes(row, sender))
    tmp.replace(path)
    return path


def smtp_connect(url: str, timeout: float) -> smtplib.SMTP:
    """Open an SMTP connection from smtp://[user:pass@]host[:port], smtps://... or smtp+starttls://..."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"smtp", "smtps", "smtp+starttls"}:
        raise PermanentDeliveryError(f"unsupported SMTP URL scheme {scheme!r}")
    host = parts.hostname or "localhost"
    if scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, parts.port or 465, timeout=timeout)
    else:
        client = smtplib.SMTP(host, parts.port or 25, timeout=timeout)
    try:
        if scheme == "smtp+starttls":
            client.starttls()
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
    except BaseException:
        client.close()  # a failed handshake must not leave its socket open
        raise
    return client


def send_smtp(client: smtplib.SMTP, row: dict[str, Any], sender: str) -> None:
    """Send one email; a 5xx rejection is permanent, 421 means the server is unavailable, anything else may pass."""
    try:
        client.send_message(build_email(row, sender))
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentDeliveryError(f"recipient refused: {sorted(exc.recipients.values())[0][0]}") from exc
    except smtplib.SMTPResponseException as exc:
        if 500 <= exc.smtp_code < 600:
            raise PermanentDeliveryError(f"SMTP {exc.smtp_code}") from exc
        if exc.smtp_code == 421:
            raise ChannelUnavailableError("SMTP 421: service not available") from exc
        raise


def _above_debug(record: logging.LogRecord) -> bool:
    return record.levelno > logging.DEBUG


def send_apprise(row: dict[str, Any]) -> None:
    """Notify the row's Apprise URL(s) (Slack, Teams, email, any webhook).

    `recipient` holds the URL(s) Deliver Outbox resolved from the channel the outbox row names (`manager`, `ops`,
    `rep:<id>`); they are secrets, so no error raised here quotes them.
    """
    import apprise

    # Apprise's debug (and trace) lines quote each URL in full ("Loaded JSON URL: ...", "JSON POST URL: ..."): they
    # are dropped, so a debug log level never writes an alert URL. Its info and warning lines mask them.
    logger = logging.getLogger("apprise")
    if _above_debug not in logger.filters:
        logger.addFilter(_above_debug)
    notifier = apprise.Apprise()
    urls = [u.strip() for u in str(row["recipient"]).split(",") if u.strip()]
    if not all("://" in u for u in urls):
        raise PermanentDeliveryError("alert channel not resolved to an Apprise URL")
    if not urls or not notifier.add(urls):
        raise PermanentDeliveryError("no valid Apprise URL")
    if not notifier.notify(body=row["body"], title=row["subject"], body_format=apprise.NotifyFormat.HTML):
        raise RuntimeError("Apprise could not notify every URL")


# --- the three senders ------------------------------------------------------------------------------------------


class EmlFiles:
    """Prospect email written as .eml files into a folder (the embedded default, when no SMTP URL is set)."""

    idempotent = True

    def __init__(self, directory: Path, sender_email: str) -> None:
        self.directory = Path(directory)
        self.sender_email = sender_email

    def open(self) -> None:
        """Nothing to open: each file is written on its own."""

    def send(self, row: dict[str, Any]) -> None:
        """Write the row's .eml file (a rewrite is identical)."""
        write_eml(row, self.directory, self.sender_email)

    def close(self) -> None:
        """Nothing to close."""


class SmtpSender:
    """Prospect email over one SMTP connection per batch, opened by the first send and reopened after an error."""

    idempotent = False

    def __init__(self, url: str, sender_email: str, timeout: float = 30.0) -> None:
        self.url = url
        self.sender_email = sender_email
        self.timeout = timeout
        self.client: smtplib.SMTP | None = None

    def open(self) -> None:
        """Connect lazily: a batch without email never touches the server, and a failed connect is retried."""

    def send(self, row: dict[str, Any]) -> None:
        """Send one email; on a transient error the connection is dropped so the next try starts afresh."""
        if self.client is None:
            try:
                self.client = smtp_connect(self.url, self.timeout)
            except PermanentDeliveryError:
                raise
            except smtplib.SMTPResponseException as exc:
                # Only the code: a server's greeting or login reply is its own text.
                raise ChannelUnavailableError(f"SMTP {exc.smtp_code} on connect") from exc
            except (OSError, smtplib.SMTPException) as exc:
                raise ChannelUnavailableError(f"SMTP server unreachable: {type(exc).__name__}") from exc
        try:
            send_smtp(self.client, row, self.sender_email)
        except PermanentDeliveryError:
            raise
        except Exception:
            self._drop()
            raise

    def _drop(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None

    def close(self) -> None:
        """Say goodbye to the server, if a send connected."""
        if self.client is None:
            return
        try:
            self.client.quit()
        except Exception:  # the server may be gone already; nothing is left to send
            self.client.close()
        finally:
            self.client = None


class AppriseSender:
    """Alerts to reps, managers and ops through the row's Apprise URL(s) (resolved from its alert channel by
    Deliver Outbox): Slack, Teams, email, any webhook."""

    idempotent = False

    def open(self) -> None:
        """Nothing to open: each notification is its own request."""

    def send(self, row: dict[str, Any]) -> None:
        """Notify the row's URLs."""
        send_apprise(row)

    def close(self) -> None:
        """Nothing to close."""


def channel_senders(smtp_url: str | None, outbox_dir: Path, sender_email: str,
                    smtp_timeout: float = 30.0) -> dict[str, Sender]:
    """The sender of each outbox channel: email over SMTP when a URL is set, else as .eml files; alerts by Apprise."""
    email: Sender = (SmtpSender(smtp_url, sender_email, smtp_timeout) if smtp_url
                     else EmlFiles(outbox_dir, sender_email))
    return {"email": email, "apprise": AppriseSender()}
