"""Infrastructure settings for leadflow, read from `LEADFLOW_*` environment variables."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where leadflow keeps its data and how it talks to the outside world.

    Secret settings (smtp_url, manager/ops alert URLs, enrichment_api_key, hash_key, webhook_*_secret,
    mailbox_password) may be `prefect-secret://<block>` instead of the value: `secret_value()` reads that Prefect
    Secret block when the value is used.
    """

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_", env_file=".env", extra="ignore")

    database_url: SecretStr = Field(
        default=SecretStr("sqlite:///leadflow.db"),
        description="SQLAlchemy URL of the CRM database: a SQLite file (default) or postgresql://...",
    )
    chunk_size: int = Field(
        default=50_000, ge=100, le=1_000_000,
        description="Rows read per intake chunk: memory follows this, not the file size.",
    )
    check_worker: bool = Field(
        default=True,
        description="Check and normalize the chunks of a multi-chunk input in a helper process, on a second core "
                    "(false: a worker thread).",
    )
    check_worker_min_bytes: int = Field(
        default=8 << 20, ge=0,
        description="A file at least this big starts the helper process with the run, so that it checks the first "
                    "chunk while the flow normalizes it; a smaller file starts it when a second chunk turns up.",
    )
    overlap_chunks: bool = Field(
        default=True,
        description="On PostgreSQL, write chunk N+1's leads and submissions while chunk N's spam check, details, "
                    "scores and qualification run (one more chunk in memory); false: one chunk after another.",
    )
    inline_delivery_max_leads: int = Field(
        default=5_000, ge=0,
        description="Lead-intake sends a chunk's messages itself up to this many qualified leads (live posts reach "
                    "reps at once); a bigger import leaves them in the outbox for the outbox-delivery deployment or "
                    "`leadflow outbox deliver`.",
    )
    future_tolerance_minutes: int = Field(
        default=10, ge=0, description="Clock skew allowed before a submitted_at counts as in the future."
    )
    default_country: str | None = Field(
        default=None,
        description="Country (ISO code or name) whose national phone numbers a lead without a country has, e.g. US; "
                    "unset, such a number must carry its own + prefix (intake/backfill --default-country).",
    )
    date_order: Literal["mdy", "dmy"] = Field(
        default="mdy",
        description="Day/month order of a date column whose values do not decide it (no part over 12): mdy reads "
                    "07/05/19 as 5 July, dmy as 7 May (intake/backfill --date-order).",
    )

    timezone: str = Field(
        default="UTC", description="IANA time zone for business hours, SLA clocks and the nightly/monthly schedules."
    )
    # Retrieve Lead Details.
    enrichment_provider: Literal["reference", "http", "none"] = Field(
        default="reference",
        description="Where firmographics come from: the `firmographics` table, an HTTP API, or nowhere.",
    )
    enrichment_url: str | None = Field(default=None, description="Base URL of the HTTP enrichment API.")
    enrichment_api_key: SecretStr | None = Field(default=None, description="Bearer token for the enrichment API.")
    enrichment_batch_size: int = Field(default=100, ge=1, le=1000, description="Domains per enrichment API call.")
    enrichment_timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one enrichment call.")
    enrichment_max_attempts: int = Field(default=5, ge=1, le=20, description="Tries per enrichment call.")
    enrichment_rate_per_second: float = Field(default=10.0, gt=0, description="Enrichment API calls per second.")
    enrichment_backoff_seconds: float = Field(
        default=1.0, ge=0, le=60,
        description="First retry delay of a failed enrichment call; doubles per retry, plus up to 50% jitter.",
    )
    enrichment_max_concurrency: int = Field(default=4, ge=1, le=64, description="Enrichment calls in flight.")
    scoring_policy: str = Field(
        default="scoring", description="Scoring policy: a name in leadflow/config/policies/ or a path to a JSON file."
    )
    channel_map: str | None = Field(
        default=None,
        description="A channel map file (JSON or YAML) laid over the built-in channel vocabulary "
                    "(leadflow/config/policies/channels.json): extra channels, spellings and UTM synonyms.",
    )
    spam_policy: str = Field(
        default="spam", description="Spam policy: a name in leadflow/config/policies/ or a path to a JSON file."
    )
    # Outbox delivery: prospect email over SMTP, rep/manager/ops alerts through Apprise URLs.
    smtp_url: SecretStr | None = Field(
        default=None,
        description="smtp://, smtps:// or smtp+starttls://user:password@host:port for prospect email; unset writes "
                    ".eml files into the outbox folder.",
    )
    outbox_dir: Path | None = Field(
        default=None,
        description="Where .eml files go without SMTP (unset: `<output_dir>/<crm_name>/outbox`).",
    )
    sender_email: str = Field(default="sales@leadflow.example", description="From address of prospect email.")
    delivery_breaker_after: int = Field(
        default=5, ge=1, le=1000,
        description="Consecutive transient failures of a delivery channel (SMTP, Apprise) after which a delivery run "
                    "stops trying it, leaves its messages pending and ends Failed.",
    )
    # The sales mailbox (lead-mailbox flow): inquiries mailed to it become leads, replies of known leads touches.
    mailbox_host: str | None = Field(
        default=None, description="IMAP server of the sales mailbox; unset, lead-mailbox runs end idle at once.")
    mailbox_port: int | None = Field(
        default=None, ge=1, le=65535, description="IMAP port (unset: 993 with tls, 143 with starttls or none).")
    mailbox_security: Literal["tls", "starttls", "none"] = Field(
        default="tls",
        description="How the IMAP connection is protected: tls (IMAPS), starttls (upgrade on 143) or none "
                    "(loopback tests only: the password crosses in clear).",
    )
    mailbox_ca_file: Path | None = Field(
        default=None,
        description="CA certificate (PEM) to trust for the IMAP server besides the system's, e.g. a company CA.")
    mailbox_user: str | None = Field(default=None, description="IMAP login of the sales mailbox.")
    mailbox_password: SecretStr | None = Field(
        default=None, description="IMAP password (or app password) of the sales mailbox; may be prefect-secret://.")
    mailbox_folder: str = Field(
        default="INBOX", description="The folder lead-mailbox reads new messages from (its ASCII IMAP name).")
    mailbox_after: Literal["move", "flag"] = Field(
        default="move",
        description="What becomes of a message once stored: move it to mailbox_processed_folder (MOVE, else "
                    "COPY+EXPUNGE), or flag it \\Seen and $LeadflowTaken where it is.",
    )
    mailbox_processed_folder: str = Field(
        default="Leadflow",
        description="Where taken messages are moved (created when missing), with mailbox_after=move.")
    mailbox_batch_size: int = Field(default=200, ge=1, le=5000, description="Most messages one lead-mailbox run takes.")
    mailbox_timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of one IMAP connection or command.")
    manager_alert_urls: SecretStr | None = Field(
        default=None, description="Apprise URL(s), comma-separated, for sales-manager notices."
    )
    ops_alert_urls: SecretStr | None = Field(
        default=None, description="Apprise URL(s), comma-separated, for flow-failure alerts to ops."
    )
    ops_alert_repeat_minutes: int = Field(
        default=60, ge=0,
        description="A flow's failure with the same reason as an alert already sent or pending within this many "
                    "minutes is recorded but not sent again (0: every failed run alerts).",
    )
    report_dir: Path | None = Field(
        default=None, description="Where report files are written (unset: `<output_dir>/<crm_name>/reports`)."
    )
    backfill_dir: Path | None = Field(
        default=None,
        description="Where backfills stage their per-window inputs (unset: `<output_dir>/<crm_name>/backfill`).",
    )
    output_dir: Path = Field(
        default=Path("leadflow-output"),
        description="Parent of the per-CRM output folders: reports, outbox and backfill files of a CRM live in "
                    "`<output_dir>/<crm_name>/`, so two databases never overwrite each other's files.",
    )
    crm_name: str | None = Field(
        default=None,
        description="Name of the CRM's output folder (default: the SQLite file's stem or the PostgreSQL database's "
                    "name, e.g. `leadflow` for sqlite:///leadflow.db).",
    )
    # Retention (days; 0 keeps forever), applied by the nightly spam-cleanup run and `leadflow retention run`.
    retention_raw_payload_days: int = Field(
        default=365, ge=0,
        description="Days after receipt before a submission's raw payload is stripped to {} (0: kept forever).")
    retention_quarantine_days: int = Field(
        default=90, ge=0,
        description="Days before a quarantined input row (and its raw payload) is deleted (0: kept forever).")
    retention_inbox_days: int = Field(
        default=30, ge=0, description="Days after processing before a lead_inbox row is deleted (0: kept forever).")
    retention_eml_days: int = Field(
        default=30, ge=0, description="Days before an .eml file in outbox_dir is deleted (0: kept forever).")
    retention_backfill_days: int = Field(
        default=30, ge=0,
        description="Days after its last write before a backfill's staged window files go (0: kept forever).")
    retention_webhook_days: int = Field(
        default=90, ge=0,
        description="Days webhook_deliveries rows (vendor delivery ids, the redelivery guard) are kept (0: forever).")
    retention_mailbox_days: int = Field(
        default=90, ge=0,
        description="Days mailbox_messages rows (Message-ID hashes, the re-take guard) are kept once the message was "
                    "moved or flagged (0: forever).")
    # Signed webhooks (deployments/api_webhooks.py): a vendor without its secret answers 503, never accepts unsigned.
    webhook_typeform_secret: SecretStr | None = Field(
        default=None, description="Secret of the Typeform webhook (its Typeform-Signature is checked against it).")
    webhook_meta_secret: SecretStr | None = Field(
        default=None, description="App secret of the Meta app whose lead-ads webhook posts here (X-Hub-Signature-256).")
    webhook_meta_verify_token: SecretStr | None = Field(
        default=None,
        description="Verify token typed into the Meta app's Webhooks settings (the GET subscription check).")
    webhook_calendly_secret: SecretStr | None = Field(
        default=None, description="Signing key of the Calendly webhook subscription (Calendly-Webhook-Signature).")
    webhook_hubspot_secret: SecretStr | None = Field(
        default=None,
        description="Client secret of the HubSpot app that signs the workflow webhook (X-HubSpot-Signature-v3).")
    webhook_tolerance_seconds: int = Field(
        default=300, ge=30, le=3600,
        description="Calendly and HubSpot signatures made longer ago (or ahead) than this are refused as replays.")
    webhook_public_url: str | None = Field(
        default=None,
        description="The public base URL the vendors post to (e.g. https://leads.example.com) when leadflow api runs "
                    "behind a reverse proxy: HubSpot signs the full URL it called.")
    hash_key: SecretStr | None = Field(
        default=None,
        description="Secret key of the HMAC-SHA256 email hashes (spam tombstones, exemptions, erasure records). "
                    "Unset on SQLite: a "
                    "random key is generated once into `<database file>.hash-key` beside the database; required "
                    "with PostgreSQL, whose workers share no folder. Changing it makes every stored hash unmatchable.",
    )
    # `leadflow api`, the HTTP front door for web forms and integrations.
    api_max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 << 20,
        description="Largest request body `leadflow api` accepts; a bigger one is answered 413 unread.")
    api_key_rate_per_minute: int = Field(
        default=600, ge=0,
        description="Lead POSTs per minute one API key may send (a key's own --rate-per-minute wins; 0: no limit); "
                    "a token bucket per API process that lets ten seconds' worth through at once.")
    api_address_rate_per_minute: int = Field(
        default=60, ge=0,
        description="Lead POSTs per minute from one client address (0: no limit); behind a reverse proxy the "
                    "address comes from X-Forwarded-For of the proxies in api_forwarded_allow_ips.")
    api_forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For / "
                    "X-Forwarded-Proto headers `leadflow api` believes (`*`: any; only behind a proxy that sets them).")
    api_emit_events: bool = Field(
        default=True,
        description="Emit leadflow.lead.submitted for each stored lead (the continuous-intake trigger), when a "
                    "Prefect API (PREFECT_API_URL) is configured; without one, the deployment's schedule takes them.")

    @model_validator(mode="after")
    def _per_crm_folders(self) -> Settings:
        """Fill the report, outbox and backfill folders left unset from the CRM's own output folder."""
        folder = self.crm_dir()
        for name in ("report_dir", "outbox_dir", "backfill_dir"):
            if getattr(self, name) is None:
                # object.__setattr__ skips validate_assignment re-running this validator.
                object.__setattr__(self, name, folder / FOLDER_NAMES[name])
        return self

    def crm_dir(self) -> Path:
        """The CRM's output folder: `<output_dir>/<crm_name>`, its name derived from the database unless set."""
        return self.output_dir / (safe_folder_name(self.crm_name) if self.crm_name
                                  else crm_name_of(self.database_url_plain()))

    def database_url_plain(self) -> str:
        """The database URL as a string, for the engine factory only (never log it)."""
        return self.database_url.get_secret_value()


FOLDER_NAMES = {"report_dir": "reports", "outbox_dir": "outbox", "backfill_dir": "backfill"}


def safe_folder_name(name: str) -> str:
    """A name usable as one folder on every OS: letters, digits, `.`, `_` and `-` only, never `.`/`..` or empty."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._")
    return cleaned[:100] or "crm"


def crm_name_of(url: str) -> str:
    """The default output folder name of a CRM: its SQLite file's stem, else its database's name."""
    path = _sqlite_file(url)
    if path is not None:
        return safe_folder_name(path.stem)
    from urllib.parse import unquote, urlsplit

    try:
        database = unquote(urlsplit(url).path.lstrip("/"))
    except ValueError:  # an unparseable URL fails where the engine is built, with its own message
        database = ""
    return safe_folder_name(Path(database).stem if database else "memory")


HASH_KEY_SUFFIX = ".hash-key"

# A setting (or a rep's alert_url) of this form names a Prefect Secret block instead of holding the secret.
SECRET_REFERENCE = "prefect-secret://"
_secret_loaders: list[Callable[[str], str]] = []


class SecretReferenceError(ValueError):
    """A `prefect-secret://` reference that cannot be resolved (names the block, never a value)."""


def register_secret_loader(loader: Callable[[str], str]) -> None:
    """Install the function that reads a secret block by name (the task layer installs Prefect's Secret blocks)."""
    _secret_loaders[:] = [loader]


def is_secret_reference(value: str | None) -> bool:
    """Whether a value names a Prefect Secret block instead of holding the secret itself."""
    return isinstance(value, str) and value.strip().startswith(SECRET_REFERENCE)


def secret_value(value: SecretStr | str | None) -> str | None:
    """The plain value of a secret at use time: a `prefect-secret://<block>` reference is read from that block.

    Resolved on every use, never cached in settings or stored anywhere, so a rotated secret applies at once.
    """
    if value is None:
        return None
    text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    if not is_secret_reference(text):
        return text
    name = text.strip()[len(SECRET_REFERENCE):].strip("/")
    if not name:
        raise SecretReferenceError("a prefect-secret:// reference names no block")
    if not _secret_loaders:
        raise SecretReferenceError(f"cannot read Secret block {name!r}: no Prefect secret loader is installed "
                                   "(import tasks.common first)")
    try:
        loaded = _secret_loaders[0](name)
    except Exception as exc:  # the block store's own errors may quote anything: name the block only
        raise SecretReferenceError(f"cannot read Secret block {name!r} ({type(exc).__name__})") from None
    return str(loaded)


def email_hash_key(settings: Settings | None = None, database_url: str | None = None) -> bytes:
    """The HMAC key of email hashes: LEADFLOW_HASH_KEY, else the key file beside the SQLite database (made once).

    database_url names the database whose key file to use (default: the settings' database).
    """
    settings = settings or get_settings()
    key = secret_value(settings.hash_key)
    if key:
        return key.encode()
    url = database_url or settings.database_url_plain()
    path = _sqlite_file(url)
    if path is None:
        # Workers of a server database run on several machines: a key file on each would silently disagree.
        raise ValueError("LEADFLOW_HASH_KEY must be set for a database other than a SQLite file")
    return _key_file(str(Path(str(path) + HASH_KEY_SUFFIX).resolve()))


def _sqlite_file(url: str) -> Path | None:
    """The file of a sqlite:///path URL (None for other databases and in-memory SQLite)."""
    scheme, _, rest = url.partition("://")
    if scheme.split("+")[0] != "sqlite" or not rest.startswith("/"):
        return None
    path = rest[1:].split("?")[0]
    return None if path in ("", ":memory:") else Path(path)


@lru_cache(maxsize=8)
def _key_file(path: str) -> bytes:
    """The key kept in path, written there first (owner-only, atomically) when there is none."""
    target = Path(path)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            # link() fails when another process made the file first: then both use that one.
            os.link(tmp, target)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = target.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise ValueError(f"the hash key file {target.name} is damaged (too short); restore it or set LEADFLOW_HASH_KEY")
    return key.encode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
