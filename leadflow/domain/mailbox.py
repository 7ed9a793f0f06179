"""Mail to the sales mailbox, judged and mapped: skip reasons, the sender, the inquiry text, the intake payload.

Pure functions over the stdlib `email` package (policy.default's rules): no IMAP, no database. A message is skipped for
the first rule that matches, in this order: a bounce (a delivery-status report, or from MAILER-DAEMON/postmaster),
an auto-reply (RFC 3834 Auto-Submitted, X-Autoreply, X-Autorespond, Precedence auto_reply/bulk/junk), a null
Return-Path (another message of the mail system itself), mailing-list mail (RFC 2369/2919 List-Id,
List-Unsubscribe, Precedence list), our own address (a loop), and a sender without a usable address.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

# The channel of the data contract's vocabulary for "the person wrote to a sales or info address".
MAILBOX_SOURCE = "email_inquiry"
# Skip reasons, in the order the rules are tried (the summary artifact counts each).
SKIP_REASONS = ("bounce", "auto_reply", "null_return_path", "mailing_list", "own_address", "no_sender",
                "unreadable")
MAX_MESSAGE_CHARS = 10_000
EXCERPT_CHARS = 500  # what a rep's reply alert quotes of the mail; the whole text stays in the mailbox
# The Message-ID domain of the mail leadflow sends (leadflow/io/senders.py message_id).
OUR_MESSAGE_ID_DOMAIN = "@leadflow>"

class _MimePolicy(policy.EmailPolicy):
    """policy.default, with the MIME headers it re-parses on every read (a dozen times a message) parsed once.

    Only structural headers are cached (their values are content types and encodings, nobody's data).
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if name.lower() in _MIME_HEADERS and isinstance(value, str):
            return _parsed_mime_header(self, name, value)
        return super().header_fetch_parse(name, value)


_MIME_HEADERS = frozenset({"content-type", "content-transfer-encoding", "content-disposition", "mime-version"})


@functools.lru_cache(maxsize=1024)
def _parsed_mime_header(mime_policy: _MimePolicy, name: str, value: str) -> Any:
    return policy.EmailPolicy.header_fetch_parse(mime_policy, name, value)


_PARSER = BytesParser(policy=_MimePolicy())
_SYSTEM_SENDERS = {"mailer-daemon", "postmaster"}
_AUTO_PRECEDENCE = {"auto_reply", "bulk", "junk"}
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
# Where a reply's quoted original starts: "On <date>, <someone> wrote:", Outlook's separator and header block.
_QUOTE_STARTS = (
    re.compile(r"^\s*On\b.{0,300}\bwrote:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Am\b.{0,300}\bschrieb\b.{0,100}:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Le\b.{0,300}\ba écrit\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*-{2,}\s*(Original Message|Ursprüngliche Nachricht|Message d'origine)\s*-{2,}\s*$",
               re.IGNORECASE),
    re.compile(r"^\s*_{10,}\s*$"),
    re.compile(r"^\s*From:\s.+$"),
)


@dataclass(frozen=True)
class MailboxMessage:
    """One fetched message as the mailbox flow needs it; text fields are personal data (never logged)."""

    key: str  # sha256 of the Message-ID (else of the raw bytes): the idempotency key
    message_id: str | None
    sender_email: str | None
    sender_name: str | None
    subject: str
    text: str
    submitted_at: datetime
    references: tuple[str, ...] = field(default_factory=tuple)
    skip_reason: str | None = None

    def is_reply_to_us(self) -> bool:
        """Whether In-Reply-To or References names a message leadflow sent."""
        return any(ref.endswith(OUR_MESSAGE_ID_DOMAIN) for ref in self.references)


def message_key(message_id: str | None, raw: bytes) -> str:
    """The idempotency key of a message: its Message-ID hashed, or its bytes hashed when it has none."""
    basis = f"mid:{message_id}".encode() if message_id else b"raw:" + raw
    return hashlib.sha256(basis).hexdigest()


def _header(msg: EmailMessage, name: str) -> str | None:
    """A header's value as text, None when absent or unparseable."""
    try:
        value = msg.get(name)
    except (ValueError, IndexError, TypeError):  # a malformed header that the policy cannot parse
        return None
    return None if value is None else str(value).strip()


def raw_headers(msg: EmailMessage) -> dict[str, str]:
    """The first value of each header by lower-case name, unfolded but not parsed.

    The default policy parses a header on every read (Content-Type alone took a third of the time): the headers
    the rules only compare are read raw, once; From, Sender and Subject are decoded by the policy.
    """
    found: dict[str, str] = {}
    for name, value in msg.raw_items():
        found.setdefault(name.lower(), re.sub(r"\r?\n[ \t]*", " ", str(value)).strip())
    return found


def _message_ids(value: str | None) -> tuple[str, ...]:
    return tuple(_MESSAGE_ID.findall(value or ""))


def _sender(msg: EmailMessage) -> tuple[str | None, str | None]:
    """(address, display name) of From (else Sender); address None when there is none usable."""
    for name in ("From", "Sender"):
        try:
            header = msg.get(name)
            addresses = list(getattr(header, "addresses", ()) or ())
        except (ValueError, IndexError, TypeError):
            addresses = []
        if not addresses and header is not None:
            # The structured parse failed: fall back to the tolerant utility parse of the raw value.
            pairs = [p for p in getaddresses([str(header)]) if "@" in p[1]]
            addresses = [Address(display_name=p[0], addr_spec=p[1]) for p in pairs[:1]]
        for address in addresses:
            spec = (address.addr_spec or "").strip()
            if "@" in spec and address.username:
                return spec, (address.display_name or "").strip() or None
    return None, None


def skip_reason(msg: EmailMessage, sender: str | None, own_addresses: frozenset[str] = frozenset(),
                headers: dict[str, str] | None = None) -> str | None:
    """Why a message is not an inquiry (one of SKIP_REASONS), None when it is one."""
    headers = raw_headers(msg) if headers is None else headers
    local = sender.rsplit("@", 1)[0].lower() if sender else ""
    if (msg.get_content_type() == "multipart/report"
            and (msg.get_param("report-type") or "").lower() == "delivery-status") or local in _SYSTEM_SENDERS:
        return "bounce"
    auto_submitted = headers.get("auto-submitted", "").split(";")[0].strip().lower()
    precedence = headers.get("precedence", "").strip().lower()
    if (auto_submitted and auto_submitted != "no") or "x-autoreply" in headers or "x-autorespond" in headers \
            or precedence in _AUTO_PRECEDENCE:
        return "auto_reply"
    if headers.get("return-path", "").replace(" ", "") == "<>":
        return "null_return_path"
    if "list-id" in headers or "list-unsubscribe" in headers or precedence == "list":
        return "mailing_list"
    if sender and sender.lower() in own_addresses:
        return "own_address"
    if not sender:
        return "no_sender"
    return None


class _TextOfHtml(HTMLParser):
    """Visible text of an HTML body: scripts and styles dropped, block elements as line breaks."""

    _BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "hr"})
    _HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag == "blockquote":
            # A quoted original in HTML replies: marked so that trimming drops it like "> " lines.
            self.parts.append("\n\x00QUOTE\n")
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The visible text of an HTML body, its quoted originals (blockquote) cut."""
    parser = _TextOfHtml()
    parser.feed(markup)
    parser.close()
    text = html.unescape("".join(parser.parts))
    text = text.split("\x00QUOTE", 1)[0]
    return "\n".join(re.sub(r"[ \t\xa0]+", " ", line).strip() for line in text.splitlines())


def trim_quoted(text: str) -> str:
    """The new part of a reply: lines quoted with `>`, the quoted original and the signature are cut."""
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.rstrip() == "--" or any(p.match(line) for p in _QUOTE_STARTS):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    joined = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    # A message that is all quote (or opens with a From: line) keeps its text rather than becoming empty.
    return joined or text.strip()


def _part_text(part: EmailMessage) -> str:
    """A text part decoded by its declared charset; an unknown or wrong charset decodes leniently."""
    try:
        return str(part.get_content())
    except (LookupError, UnicodeError, AssertionError):
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, errors="replace")
        except LookupError:
            return payload.decode("latin-1")


def body_text(msg: EmailMessage) -> str:
    """The inquiry's text: text/plain preferred, else HTML stripped; quoted replies trimmed."""
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except (KeyError, ValueError):
        part = None
    if part is None:
        return ""
    text = _part_text(part)  # type: ignore[arg-type]
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
    return trim_quoted(text)


def _when(headers: dict[str, str], received_at: datetime) -> datetime:
    """The Date header as UTC, else the time the mailbox received the message."""
    value = headers.get("date")
    if value:
        try:
            stamp = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            stamp = None
        if stamp is not None:
            return (stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp).astimezone(UTC)
    return received_at if received_at.tzinfo else received_at.replace(tzinfo=UTC)


def parse_message(raw: bytes, received_at: datetime, own_addresses: frozenset[str] = frozenset()) -> MailboxMessage:
    """One raw message (RFC 5322 bytes) parsed, judged and reduced to what becomes a lead or a touch."""
    msg = _PARSER.parsebytes(raw)
    headers = raw_headers(msg)
    ids = _message_ids(headers.get("message-id"))
    message_id = ids[0] if ids else None
    sender, name = _sender(msg)
    reason = skip_reason(msg, sender, frozenset(a.lower() for a in own_addresses), headers)
    references = _message_ids(headers.get("in-reply-to")) + _message_ids(headers.get("references"))
    subject = re.sub(r"\s+", " ", _header(msg, "Subject") or "").strip()
    return MailboxMessage(
        key=message_key(message_id, raw), message_id=message_id, sender_email=sender, sender_name=name,
        subject=subject, text="" if reason else body_text(msg), submitted_at=_when(headers, received_at),
        references=tuple(dict.fromkeys(references)), skip_reason=reason,
    )


def inquiry_text(message: MailboxMessage) -> str:
    """Subject and body as the lead's message, cut to a bounded length."""
    text = "\n\n".join(part for part in (message.subject, message.text) if part)
    return text[:MAX_MESSAGE_CHARS]


def excerpt(message: MailboxMessage, limit: int = EXCERPT_CHARS) -> str:
    """The start of a message's text (quotes and signature already trimmed), on one line, for a rep's alert."""
    text = " ".join(message.text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "\u2026"


def inquiry_payload(message: MailboxMessage) -> dict[str, Any]:
    """The lead_inbox payload of an inquiry: the intake contract's columns (intake splits the full name)."""
    payload: dict[str, Any] = {
        "email": message.sender_email,
        "source": MAILBOX_SOURCE,
        "submitted_at": message.submitted_at.isoformat(),
        "message": inquiry_text(message),
    }
    if message.message_id:
        payload["external_id"] = message.message_id[:200]
    if message.sender_name and message.sender_name.lower() != (message.sender_email or "").lower():
        payload["full_name"] = message.sender_name
    return payload


def touch_details(message: MailboxMessage, reply_to: str | None) -> dict[str, Any]:
    """The audit-log details of a known lead's email: which message (by key) and whether it answers ours."""
    return {"channel": MAILBOX_SOURCE, "message_key": message.key, "kind": "reply" if reply_to else "message",
            "reply_to": reply_to, "written_at": message.submitted_at.isoformat()}
